"""`fediqad bench scale`: every column measured, from the server's own round records."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.errors import UserError
from simulations.scale_bench import _run_child, bench_scale, parse_sites

pytestmark = pytest.mark.timeout(900)  # a hang guard; nothing here depends on speed


def check_point(point: dict, sites: int, rounds: int, run_dir: Path) -> None:
    assert point["error"] is None and point["sites"] == sites
    assert point["rounds"] == rounds == len(point["round_times_s"])
    records = json.loads((run_dir / "metrics.json").read_text())["rounds"]
    assert point["round_times_s"] == [r["timing"]["round_s"] for r in records]
    assert point["aggregate_times_s"] == [r["timing"]["aggregate_s"] for r in records]
    for round_s, aggregate_s in zip(
        point["round_times_s"], point["aggregate_times_s"], strict=True
    ):
        assert 0 < aggregate_s <= round_s
    assert point["first_round_s"] == point["round_times_s"][0]
    assert point["round_s"] == pytest.approx(sum(point["round_times_s"][1:]) / (rounds - 1))
    assert point["driver_peak_mb"] > 100  # torch and Flower are loaded in the driver
    assert 0 < point["site_mb"] <= point["site_max_mb"]
    assert point["total_pss_mb"] > 0 and point["site_memory"]


def test_in_process_bench_measures_every_column_at_3_and_5_sites(tmp_path):
    out = tmp_path / "scale.json"
    proc = subprocess.run(
        [sys.executable, "-m", "fediqad", "bench", "scale", "--sites", "3,5", "--rounds", "2",
         "--backend", "in-process", "--images-per-site", "8", "--json", str(out),
         "--keep", str(tmp_path / "keep")],
        capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"}, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    for head in ("round s", "aggregate s", "driver peak MB", "per-site MB", "all procs PSS MB"):
        assert head in proc.stdout
    doc = json.loads(out.read_text())
    assert [p["sites"] for p in doc["points"]] == [3, 5]
    for point in doc["points"]:
        n = point["sites"]
        check_point(point, n, 2, tmp_path / "keep" / f"sites-{n}" / f"sites-{n}")
        assert point["backend"] == "in-process" and point["site_workers"] == 0
    assert doc["load_before"] and doc["cpus"] >= 1


@pytest.mark.ray
def test_ray_bench_measures_the_actor_processes(tmp_path):
    bench = bench_scale([2], rounds=2, backend="ray", images_per_site=8, keep=tmp_path)
    point = bench.to_json()["points"][0]
    check_point(point, 2, 2, tmp_path / "sites-2" / "sites-2")
    assert point["site_workers"] >= 1 and "actor" in point["site_memory"]


def test_a_failed_site_count_is_recorded_with_its_reason(tmp_path):
    settings = {"rounds": 1, "backend": "no-such-backend", "images_per_site": 8}
    point = _run_child(2, settings, tmp_path)
    assert point.error is not None and point.error.startswith("exit 1")
    assert point.rounds == 0


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: parse_sites("10,x"), "--sites must be positive whole numbers"),
        (lambda: parse_sites("0"), "--sites must be positive whole numbers"),
        (lambda: bench_scale([2], backend="auto"), "--backend must be one of ray, in-process"),
        (
            lambda: bench_scale([2], backend="in-process", ray_address="h:6379"),
            "--ray-address needs --backend ray",
        ),
    ],
)
def test_bad_options_are_one_line(call, message):
    with pytest.raises(UserError, match=message):
        call()
