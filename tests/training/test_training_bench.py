"""`shared.training_bench` at a tiny size: every kind of step really runs, and the numbers
it prints are in the units it claims (seconds, images/s, MB). No speed is asserted."""

from __future__ import annotations

import math
import os
from collections import Counter

import pytest

from shared import training_bench as bench
from shared.training import LocalTrainer

TINY = {"image_size": 32, "batch": 4, "threads": 1, "backbone": "vgg16_bn_slim", "device": "cpu"}
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
    rows = bench.run_bench(**TINY, repeats=2, warmup=1)
    assert [r.step for r in rows] == list(STEPS)
    expected = Counter()
    for attr in STEPS.values():
        expected[attr] += 3  # one warm-up and two timed repeats each
    assert calls == expected
    for row in rows:
        assert _sane_seconds(row.seconds_per_batch), row
        assert row.images_per_second == pytest.approx(TINY["batch"] / row.seconds_per_batch)
        # the whole process' peak resident memory, in MB: torch alone takes tens of MB
        assert 20 < row.peak_memory_mb < _physical_memory_mb(), row
    table = bench.bench_table(rows, "tiny")
    assert table.row_count == len(STEPS)
    only = bench.run_bench(**TINY, repeats=1, warmup=0, steps=["stage I"])
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
