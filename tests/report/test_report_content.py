"""What the report says, on hand-written metrics.json files whose numbers are known:
literal cells, the synthetic-data banner, degenerate-model alarms, referable
sensitivity / specificity, per-set figures, integer round axes and the 80-column table."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from matplotlib import pyplot as plt
from rich.console import Console

from server.report import print_round
from shared.config import preset
from shared.metrics import compute_metrics
from shared.report.build import write_run_report
from shared.report.curves import integer_steps
from shared.report.format import interval, number
from shared.strict_json import write_json
from tests.report.conftest import png_size
from tests.report.test_report_cli import table_rows

DR = ["NoDR", "NPDR", "PDR"]
QUALITY = ["HQ", "LQ-U", "LQ-P"]


def _useless(n: int = 19, seed: int = 0) -> dict[str, float]:
    """A model that says NoDR and HQ for every image, on a mostly-NoDR set."""
    rng = np.random.default_rng(seed)
    y = np.array([0] * (n - 4) + [1, 1, 2, 1])
    q = rng.integers(0, 3, n)
    p = np.tile([0.6, 0.3, 0.1], (n, 1))
    return compute_metrics(y, p, q, np.tile([0.8, 0.1, 0.1], (n, 1)))


def _useful(n: int = 40, seed: int = 1) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    y = rng.choice(3, n, p=[0.5, 0.35, 0.15])
    p = rng.dirichlet(np.ones(3), n)
    p[np.arange(n), y] += 0.7
    q = rng.integers(0, 3, n)
    return compute_metrics(y, p / p.sum(1, keepdims=True), q, np.eye(3)[q] * 0.7 + 0.1)


def _round(sites: dict[str, dict[str, float]], server: dict[str, float] | None) -> dict:
    return {
        "round": 1,
        "status": "ok",
        "replies": {"sampled": len(sites), "train_ok": len(sites)},
        "sites": {
            name: {
                "eval": m,
                "train": {"train_seconds": 2.5},
                "bytes_down": 1_500_000,
                "bytes_up": 1_500_000,
                "status": "ok",
            }
            for name, m in sites.items()
        },
        "global": {"auc": 0.61, "acc": 0.69, "kappa": 0.3, "n": 59.0},
        "server_eval": server,
        "timing": {
            "round_s": 9.0,
            "slowest_compute_s": 2.5,
            "overhead_s": 0.5,
            "overhead_pct": 5.6,
            "checkpoint_s": 0.1,
        },
        "bytes_down": 3_000_000,
        "bytes_up": 3_000_000,
    }


def _federated_run(
    folder: Path, sites: dict[str, dict[str, float]], synthetic: bool = False
) -> Path:
    held_out = folder / "held-out"
    if synthetic:
        (held_out / "EYEQ").mkdir(parents=True)
        (held_out / "EYEQ" / "synth.json").write_text("{}")
    doc = {
        "federation": {
            "run": preset("EYEQ").model_dump(mode="json"),
            "num_rounds": 1,
            "local_epochs": 1,
            "strategy": "fedavg",
            "server_eval_data": str(held_out) if synthetic else None,
        },
        "initial": None,
        "rounds": [_round(sites, None)],
    }
    write_json(folder / "metrics.json", doc)
    return folder


def test_the_one_formatter_writes_literal_text():
    assert number(0.61234) == "0.612" and number(62.0, "n") == "62"
    assert number(float("nan")) == number(None) == number(math.inf) == "-"
    assert interval(0.612, 0.4801, 0.7404) == "0.612 [0.480, 0.740]"
    assert interval(0.612, None, 0.74) == "0.612"


def test_a_useless_site_is_called_out_and_a_useful_one_is_not(tmp_path: Path):
    run = _federated_run(tmp_path, {"hospital-a": _useful(), "hospital-b": _useless()})
    report = write_run_report(run)
    md = report.markdown.read_text()
    assert report.alarms == [
        "hospital-b, round 1: the diagnosis head predicts NoDR for 100 % of 19 images; its "
        "AUC and accuracy say nothing about finding disease.",
        "hospital-b, round 1: quadratic-weighted kappa 0.000, no better than chance agreement.",
        "hospital-b, round 1: the quality head says HQ for 100 % of images; it does not tell "
        "high- from low-quality images.",
    ]
    for text in report.alarms:
        assert f"> **WARNING - degenerate model:** {text}" in md
    # the alarms come before any table
    assert md.index("WARNING - degenerate model") < md.index("| evaluated on |")
    assert "SYNTHETIC" not in md
    # hospital-b's row, literally: AUC 0.5 from constant probabilities, kappa 0
    rows = table_rows(md.split("### By site", 1)[1], "evaluated on")
    assert rows[3][:4] == ["hospital-b, round 1", "all", "19", "0.500 [0.500, 0.500]"]
    assert rows[3][6] == "0.000 [0.000, 0.000]"
    clinical = table_rows(md, "evaluated on | n | referable")
    assert clinical[1][:5] == ["hospital-b, round 1", "19", "4", "0.000", "1.000"]
    assert "*referable = NPDR or PDR (any diagnosis other than NoDR); called referable" in md


def test_no_alarm_for_useful_sites(tmp_path: Path):
    report = write_run_report(_federated_run(tmp_path, {"a": _useful(), "b": _useful(seed=2)}))
    assert report.alarms == []
    assert "WARNING" not in report.markdown.read_text()


def test_synthetic_data_is_said_first(tmp_path: Path):
    report = write_run_report(_federated_run(tmp_path, {"a": _useful()}, synthetic=True))
    md = report.markdown.read_text()
    first = md.split("\n\n")[1]
    assert first.startswith("> **SYNTHETIC DATA:** These results come from SYNTHETIC images (")
    assert str(tmp_path / "held-out" / "EYEQ") in first
    assert 'class="banner"' in report.html.read_text()


def test_per_set_figures_include_every_site_and_the_quality_head(tmp_path: Path):
    report = write_run_report(_federated_run(tmp_path, {"a": _useful(), "b": _useless()}))
    names = {p.name for p in report.figures}
    assert {"confusion_per_set.png", "roc_per_set.png", "reliability_per_set.png"} <= names
    # two sites x (diagnosis, quality) confusion panels, four in one row
    assert png_size(tmp_path / "figures" / "confusion_per_set.png") == (1320, 320)
    assert png_size(tmp_path / "figures" / "roc_per_set.png") == (720, 360)


def test_round_axis_ticks_are_whole_rounds():
    fig, ax = plt.subplots()
    ax.plot([1], [0.6], "o")
    integer_steps(ax, [1])
    assert list(ax.get_xticks()) == [1.0] and ax.get_xlim() == (0.5, 1.5)
    integer_steps(ax, range(1, 41))
    fig.canvas.draw()
    ticks = [t for t in ax.get_xticks() if 1 <= t <= 40]
    assert ticks and all(float(t).is_integer() for t in ticks)
    plt.close(fig)


def test_round_table_reads_at_80_columns():
    sites = {"hospital-mostly-lq": _useless(), "hospital-a": _useful()}
    record = _round(sites, _useful(62, seed=5))
    console = Console(width=80, record=True, color_system=None)
    print_round(record, console, preset("EYEQ").dataset)
    text = console.export_text()
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "…" not in text
    row = next(line for line in lines if line.startswith(" hospital-mostly-lq"))
    assert row.split() == ["hospital-mostly-lq", "19", "0.500", "0.789", "0.000"] + row.split()[5:]
    assert "WARNING hospital-mostly-lq: the diagnosis head predicts NoDR" in " ".join(lines)
    assert "hospital-a: trained 2.5 s, 1.50 MB down, 1.50 MB up" in text


@pytest.mark.parametrize("name", ["metrics.json"])
def test_metrics_log_is_strict_json(tmp_path: Path, name: str):
    from server.report import MetricsLog

    log = MetricsLog(tmp_path)
    log.add({"round": 1, "global": {"auc_lq": float("nan"), "auc": 0.5}})
    log.write()
    text = (tmp_path / name).read_text()
    doc = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in {name}"))
    assert doc["rounds"][0]["global"] == {"auc_lq": None, "auc": 0.5}


def test_train_and_evaluate_tables_warn_under_a_useless_model():
    from fediqad.reporting import metrics_table

    dataset = preset("EYEQ").dataset
    console = Console(width=100, record=True, color_system=None)
    console.print(metrics_table([("test", _useless())], "EYEQ mkcnet", dataset))
    text = " ".join(console.export_text().split())  # the caption wraps at the table's width
    assert "WARNING test: the diagnosis head predicts NoDR for 100 % of 19 images" in text
    assert "WARNING test: the quality head says HQ for 100 %" in text
    console = Console(width=100, record=True, color_system=None)
    console.print(metrics_table([("test", _useful())], "EYEQ mkcnet", dataset))
    assert "WARNING" not in console.export_text()


def test_the_strict_metrics_check_finds_nan_literals(tmp_path: Path):
    from tests.conftest import non_strict_metrics_files

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "c").mkdir()
    (tmp_path / "a" / "metrics.json").write_text('{"auc": NaN}')
    (tmp_path / "b" / "metrics.json").write_text('{"auc": null}')
    (tmp_path / "c" / "metrics.json").write_text("{ damaged on purpose")
    try:
        assert non_strict_metrics_files(tmp_path) == [tmp_path / "a" / "metrics.json"]
    finally:
        (tmp_path / "a" / "metrics.json").unlink()  # the session-wide check would flag it
