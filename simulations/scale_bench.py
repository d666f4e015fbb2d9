"""`fediqad bench scale`: what a simulation of many sites costs, to size a Ray cluster.

For each site count, one simulation of synthetic 32 px sites on the smallest model
(slim VGG16-BN at width 1/8, as `deploy_bench.SMALL_MODEL_ARGS`) runs a few rounds in a
fresh interpreter (`python -m simulations.scale_bench`), so every count starts from
the same empty driver. Measured there:

- round time and aggregation time per round: the server's own round records
  (`timing.round_s` = train + aggregate + evaluate phases, `timing.aggregate_s`);
- driver memory: peak RSS of the driver process (ServerApp, and in-process the sites);
- per-site memory: with Ray, the peak RSS of each `ClientAppActor` process (sampled
  from /proc every 0.2 s; Ray runs the sites in a pool of actors, one per concurrent
  site, not one per site); in-process, the sites share the driver, so it is the
  driver's growth while they trained;
- all processes: peak PSS summed over the driver and everything it started (Ray too).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from shared.errors import UserError

DEFAULT_SITES = (10, 50, 100)
BENCH_BACKENDS = ("ray", "in-process")
ACTOR_TITLE = b"ClientAppActor"  # Flower's Ray actor that runs the ClientApp
MB = 1e6
# The deployment benchmark's model (`deploy_bench.SMALL_MODEL_ARGS`) as request fields.
SMALL_MODEL_FLAGS = {
    "model.backbone": "vgg16_bn_slim",
    "image_size": 32,
    "optim.batch_size": 8,
    "seed": 0,
}
SMALL_MODEL_SET = ("model.width=0.125", "device=cpu", "threads=1")


@dataclass
class ScalePoint:
    """One site count's measurements (`error` set and the rest 0 where it failed)."""

    sites: int
    backend: str
    rounds: int = 0
    round_s: float = 0.0  # mean over the rounds after the first (round 1 if only one)
    first_round_s: float = 0.0  # round 1: Ray's actors start here
    aggregate_s: float = 0.0  # mean server aggregation time per round
    aggregate_max_s: float = 0.0
    driver_peak_mb: float = 0.0
    site_mb: float = 0.0  # see `site_memory`
    site_max_mb: float = 0.0
    site_memory: str = ""  # how site_mb was measured
    site_workers: int = 0  # Ray actor processes seen on this machine
    total_pss_mb: float = 0.0
    wall_s: float = 0.0
    round_times_s: list[float] = field(default_factory=list)  # each round, from its record
    aggregate_times_s: list[float] = field(default_factory=list)
    error: str | None = None


@dataclass
class ScaleBench:
    points: list[ScalePoint]
    settings: dict[str, Any]
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    cpus: int = field(default_factory=lambda: os.cpu_count() or 1)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def parse_sites(text: str) -> list[int]:
    """`--sites 10,50,100` -> [10, 50, 100]."""
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise UserError(f"--sites must be positive whole numbers like 10,50,100, got {text!r}")
    return counts


def bench_scale(
    sites: Sequence[int] = DEFAULT_SITES,
    *,
    rounds: int = 3,
    backend: str = "ray",
    images_per_site: int = 16,
    ray_address: str | None = None,
    keep: Path | None = None,
    on_point: Callable[[ScalePoint], None] = lambda point: None,
) -> ScaleBench:
    """Run one simulation per site count, one after another; a failed count is recorded
    with its reason and the next one still runs."""
    if backend not in BENCH_BACKENDS:
        raise UserError(f"--backend must be one of {', '.join(BENCH_BACKENDS)}, got {backend!r}")
    if rounds < 1 or images_per_site < 4:
        raise UserError("--rounds must be at least 1 and --images-per-site at least 4")
    if ray_address and backend != "ray":
        raise UserError("--ray-address needs --backend ray")
    settings = {
        "rounds": rounds,
        "backend": backend,
        "images_per_site": images_per_site,
        "ray_address": ray_address,
        "model": "vgg16_bn_slim width 1/8, 32 px, batch 8, 1 local epoch, mkcnet",
    }
    bench = ScaleBench([], settings, os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="fediqad-scale-") as tmp:
        work = keep or Path(tmp)
        for n in sites:
            point = _run_child(n, settings, work / f"sites-{n}")
            bench.points.append(point)
            on_point(point)
    bench.load_after = os.getloadavg()
    return bench


def _run_child(n: int, settings: dict[str, Any], work: Path) -> ScalePoint:
    work.mkdir(parents=True, exist_ok=True)
    result = work / "point.json"
    result.unlink(missing_ok=True)
    spec = json.dumps({"sites": n, "work": str(work), **settings})
    with open(work / "bench.log", "wb") as log:
        proc = subprocess.run(
            [sys.executable, "-m", "simulations.scale_bench", spec, str(result)],
            stdout=log,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if result.is_file():
        return ScalePoint(**json.loads(result.read_text()))
    tail = (work / "bench.log").read_text(errors="replace").strip().splitlines()[-1:] or [""]
    reason = f"exit {proc.returncode}" + (f": {tail[0][:200]}" if tail[0] else "")
    return ScalePoint(n, settings["backend"], error=reason)


class _Sampler:
    """Peak RSS of this process and of each local Ray actor process, peak tree PSS."""

    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval
        self.driver = 0
        self.actors: dict[int, int] = {}
        self.total_pss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from simulations.resources import process_tree, rss_bytes, tree_memory

        me = os.getpid()
        while not self._stop.is_set():
            self.driver = max(self.driver, rss_bytes(me))
            for pid in process_tree(me):
                try:
                    title = Path(f"/proc/{pid}/cmdline").read_bytes()
                except OSError:
                    continue
                if ACTOR_TITLE in title:
                    self.actors[pid] = max(self.actors.get(pid, 0), rss_bytes(pid))
            self.total_pss = max(self.total_pss, tree_memory(me)[1])
            self._stop.wait(self.interval)

    def __enter__(self) -> _Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def measure(spec: dict[str, Any]) -> ScalePoint:
    """One site count, in this (fresh) process: run the simulation, read its records."""
    import time

    from simulations import scenarios
    from simulations.launch import SimulationRequest, simulate
    from simulations.resources import rss_bytes

    n, work, backend = spec["sites"], Path(spec["work"]), spec["backend"]
    import client.client_app  # noqa: F401 - torch and Flower loaded before the baseline

    name = f"sites-{n}"
    scenarios.default_sites(  # synthesized before the baseline; the run reuses them
        work / name / "data",
        images_per_site=spec["images_per_site"],
        image_size=32,
        seed=0,
        n_sites=n,
    )
    request = SimulationRequest(
        sites=n,
        name=name,
        out=work,
        set_items=list(SMALL_MODEL_SET),
        run_flags=dict(SMALL_MODEL_FLAGS),
        fed_flags={"num_rounds": spec["rounds"], "local_epochs": 1, "round_timeout": 3600},
        images_per_site=spec["images_per_site"],
        server_eval=False,
        backend=backend,
        ray_address=spec.get("ray_address") or None,
    )
    baseline = rss_bytes(os.getpid())
    start = time.perf_counter()
    with _Sampler() as sampler:
        result = simulate(request, say=print)
    wall = time.perf_counter() - start
    doc = json.loads((result.run_dir / "metrics.json").read_text())
    timings = [r["timing"] for r in doc["rounds"]]
    later = timings[1:] or timings
    aggregate = [t["aggregate_s"] for t in timings]
    if backend == "ray":
        actors = sorted(sampler.actors.values())
        site_mb = statistics.median(actors) / MB if actors else 0.0
        site_max = actors[-1] / MB if actors else 0.0
        how = "median peak RSS of the Ray actor processes on this machine"
    else:
        actors, site_mb = [], max(0, sampler.driver - baseline) / MB
        site_max = site_mb
        how = "driver RSS growth while the sites trained (sites share the driver)"
    return ScalePoint(
        sites=n,
        backend=backend,
        rounds=len(timings),
        round_s=statistics.mean(t["round_s"] for t in later),
        first_round_s=timings[0]["round_s"],
        aggregate_s=statistics.mean(aggregate),
        aggregate_max_s=max(aggregate),
        driver_peak_mb=sampler.driver / MB,
        site_mb=site_mb,
        site_max_mb=site_max,
        site_memory=how,
        site_workers=len(actors),
        total_pss_mb=sampler.total_pss / MB,
        wall_s=wall,
        round_times_s=[t["round_s"] for t in timings],
        aggregate_times_s=aggregate,
    )


if __name__ == "__main__":  # one site count: python -m simulations.scale_bench SPEC OUT
    point = measure(json.loads(sys.argv[1]))
    Path(sys.argv[2]).write_text(json.dumps(asdict(point), indent=2))
