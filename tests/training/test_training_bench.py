"""`shared.training_bench` at a tiny size: every kind of step really runs, and the numbers
it prints are in the units it claims (seconds, images/s, MB, FLOPs, MFU). No speed is
asserted."""

from __future__ import annotations

import math
import os
from collections import Counter

import pytest

from shared import training_bench as bench
from shared.training import LocalTrainer

TINY = {"image_size": 32, "batch": 4, "threads": 1, "backbone": "vgg16_bn_slim", "device": "cpu"}
SLIM_COMCL = {"comcl_backbone": "vgg16_bn_slim", "patch_px": 32}
STEPS = {  # row name -> the LocalTrainer step it must time
    "vanilla": "_supervised_step",
    "stage I": "stage_one_step",
    "stage II (second order)": "stage_two_step",
    "stage II (first order)": "stage_two_step",
    "fused (second order)": "_fused_step",
}


def _physical_memory_mb() -> float:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20


def _sane_seconds(value: float) -> bool:
    return math.isfinite(value) and 0 < value < 60


def test_train_step_bench_times_every_step_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: Counter[str] = Counter()
    for attr in set(STEPS.values()):
        original = getattr(LocalTrainer, attr)

        def counted(self, batch, _original=original, _attr=attr):
            calls[_attr] += 1
            return _original(self, batch)

        monkeypatch.setattr(LocalTrainer, attr, counted)
    settings = bench.BenchSettings(**TINY, precision="fp32")
    rows = bench.run_bench(settings, repeats=2, warmup=1, steps=list(STEPS))
    assert [r.step for r in rows] == list(STEPS)
    expected = Counter()
    for attr in STEPS.values():
        expected[attr] += 4  # the counted step, one warm-up and two timed repeats each
    assert calls == expected
    for row in rows:
        assert _sane_seconds(row.seconds_per_batch), row
        assert row.images_per_second == pytest.approx(TINY["batch"] / row.seconds_per_batch)
        # the whole process' peak resident memory, in MB: torch alone takes tens of MB
        assert 20 < row.peak_memory_mb < _physical_memory_mb(), row
    table = bench.bench_table(rows, "tiny")
    assert table.row_count == len(STEPS)
    only = bench.run_bench(settings, repeats=1, warmup=0, steps=["stage I"])
    assert [r.step for r in only] == ["stage I"]


def test_dp_step_bench_reports_each_step_and_its_ratio() -> None:
    rows = bench.run_dp_bench(**TINY, repeats=1, warmup=0)
    assert [r.step for r in rows] == [
        "Task Net (stage I)",
        "Meta Learner (stage II, second order)",
        "baseline (vanilla)",
    ]
    for row in rows:
        seconds = (row.plain_seconds, row.dp_seconds, row.batchnorm_seconds)
        assert all(_sane_seconds(s) for s in seconds), row
        assert row.ratio == pytest.approx(row.dp_seconds / row.plain_seconds)
    assert bench.dp_bench_table(rows, "tiny").row_count == len(rows)


def test_every_row_runs_with_flops_and_mfu_from_a_given_peak() -> None:
    """All seven rows (DP stage I and CoMCL included) at 32 px; MFU is the achieved
    FLOP/s over --peak-tflops, computed from the row's own numbers."""
    settings = bench.BenchSettings(**TINY, precision="fp32", peak_tflops=0.5, **SLIM_COMCL)
    rows = bench.run_bench(settings, repeats=1, warmup=0)
    assert [r.step for r in rows] == [*STEPS, "DP stage I", "CoMCL"]
    for row in rows:
        assert row.flops_per_image > 0, row
        achieved = row.flops_per_image * row.images_per_second
        assert row.mfu == pytest.approx(achieved / 0.5e12), row
        assert (row.image_px, row.images_per_batch) == (32, 4)
    by = {r.step: r for r in rows}
    # the meta step differentiates through the pseudo-update: far more work than stage I
    assert by["stage II (second order)"].flops_per_image > 2 * by["stage I"].flops_per_image
    # Opacus' per-sample gradients are extra matmuls on top of the same stage I
    assert by["DP stage I"].flops_per_image > by["stage I"].flops_per_image
    text = _render(bench.bench_table(rows, "tiny"))
    assert "GFLOP / image" in text and "%" in text and "—" not in text


def test_mfu_is_a_dash_on_cpu_without_a_peak() -> None:
    settings = bench.BenchSettings(**TINY, precision="fp32")
    rows = bench.run_bench(settings, repeats=1, warmup=0, steps=["vanilla"])
    assert rows[0].mfu is None
    assert "—" in _render(bench.bench_table(rows, "tiny"))


def test_fp16_times_what_it_can_and_names_the_refused_steps() -> None:
    """fp16 cannot run the meta step or sample-level DP (shared/training/precision_rules):
    those rows say why; the first-order rows are still timed, in fp16."""
    settings = bench.BenchSettings(**TINY, precision="fp16")
    steps = ["vanilla", "stage II (second order)", "DP stage I"]
    rows = {r.step: r for r in bench.run_bench(settings, repeats=1, warmup=0, steps=steps)}
    assert rows["vanilla"].refused is None and _sane_seconds(rows["vanilla"].seconds_per_batch)
    assert "meta step" in rows["stage II (second order)"].refused
    assert rows["DP stage I"].refused  # mkcnet with sample-level DP: refused either way
    text = _render(bench.bench_table(list(rows.values()), "fp16"))
    assert "cannot run mkcnet's meta step" in text


def _render(table: object) -> str:
    from rich.console import Console

    console = Console(width=200, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(table)
    return console.export_text()
