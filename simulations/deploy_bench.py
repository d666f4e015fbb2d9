"""`fediqad bench deploy-round`: what a deployed round costs beyond the sites' work.

Runs the real deployment on 127.0.0.1 at the deployment test's settings (`fediqad
server --insecure` + two `fediqad client`, synthetic 32 px EYEQ sites, slim VGG at
width 1/8, one thread each) and reads the server's round records: round time, the
slowest site's handler time (train + evaluate) and the rest, outside the handlers
(Flower's message passing, the relay, aggregation, checkpoints). It also times a cold
`import client.client_app` (what Flower pays per message) against a cold `import flwr`.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from shared.errors import UserError
from shared.process_group import free_port, start_process_group

# The smallest model a deployment round can train: shared by the benchmark and the
# deployment tests so both measure the same thing.
SMALL_MODEL_ARGS = [
    "--image-size",
    "32",
    "--backbone",
    "vgg16_bn_slim",
    "--batch-size",
    "8",
    "--set",
    "model.width=0.125",
    "--set",
    "device=cpu",
    "--set",
    "threads=1",
]


@dataclass
class RoundCost:
    round: int
    round_s: float
    handler_s: float  # the slowest site's train + evaluate handlers
    exchange_s: float = 0.0  # the server's train + evaluate exchanges, send to last reply
    relay_s: float = 0.0  # the slowest site's relay / task hand-over, train + evaluate

    @property
    def outside_s(self) -> float:
        return self.round_s - self.handler_s

    @property
    def server_s(self) -> float:
        """The server's own work in the round (sampling, aggregation), outside exchanges."""
        return max(0.0, self.round_s - self.exchange_s)

    @property
    def flower_s(self) -> float:
        """Flower's message passing: the exchanges less the sites' handlers and relays."""
        return max(0.0, self.exchange_s - self.handler_s - self.relay_s)

    @property
    def outside_pct(self) -> float:
        return 100.0 * self.outside_s / self.round_s if self.round_s > 0 else 0.0


# Each of fediqad's levers against Flower's fixed per-message costs, switched off on its
# own, then all together (= Flower as shipped with the relay ClientApp).
_OFF_WAITS = {"FEDIQAD_SUPERNODE_POLL": "off"}  # client.supernode_launcher.POLL_ENV
_OFF_PACK = {"FEDIQAD_WIRE_PACK": "off"}  # server.messaging.PACK_ENV
_OFF_WORKER = {"FEDIQAD_ISOLATION": "subprocess"}  # client.runtime.ISOLATION_ENV
VARIANTS: dict[str, dict[str, str]] = {
    "fediqad": {},
    "Flower's SuperNode waits": _OFF_WAITS,
    "one object per tensor": _OFF_PACK,
    "ClientApp process per message": _OFF_WORKER,
    "all three (Flower as shipped)": {**_OFF_WAITS, **_OFF_PACK, **_OFF_WORKER},
}


@dataclass
class DeployBench:
    rounds: list[RoundCost]
    import_flwr_s: float
    import_clientapp_s: float
    load: tuple[float, float, float] = field(default_factory=os.getloadavg)  # at start
    variants: dict[str, list[RoundCost]] = field(default_factory=dict)  # --compare
    loads: dict[str, tuple[float, float, float]] = field(default_factory=dict)

    @property
    def import_ratio(self) -> float:
        return self.import_clientapp_s / self.import_flwr_s


def cold_import_seconds(module: str, repeats: int = 5) -> float:
    """Median time to import `module` in a fresh interpreter."""
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    times = []
    for _ in range(repeats):
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        times.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(times)


def _fediqad(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    with open(log, "wb") as out:
        return start_process_group([sys.executable, "-m", "fediqad", *args], out, env)


def run_deploy_rounds(
    work: Path, rounds: int = 3, images: int = 40, settings: dict[str, str] | None = None
) -> list[RoundCost]:
    """Two sites and a server on 127.0.0.1 until the run ends; each round's cost.
    `settings`: environment for all three processes (see VARIANTS)."""
    from shared.data.synth import synthesize
    from shared.process_group import stop_process_group

    sites = []
    for i, lq in enumerate((0.2, 0.4)):
        synthesize("EYEQ", images, 32, work / "sites" / f"site{i}", seed=i, lq_ratio=lq)
        sites.append(work / "sites" / f"site{i}")
    port, run_dir = free_port(), work / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(settings or {})}
    server_args = ["server", "--insecure", "--host", "127.0.0.1", "--port", str(port)]
    server_args += ["--run-dir", str(run_dir), "--rounds", str(rounds), "--min-nodes", "2"]
    procs = [_fediqad(server_args + SMALL_MODEL_ARGS, work / "server.log", env)]
    try:
        for i, data in enumerate(sites):
            client = ["client", "--server", f"127.0.0.1:{port}", "--insecure"]
            client += ["--data-path", str(data), "--site-name", f"site{i}"]
            client += ["--flwr-home", str(work / f"node{i}"), "--max-wait", "600"]
            procs.append(_fediqad(client, work / f"site{i}.log", env))
        while procs[0].poll() is None:
            if any(p.poll() is not None for p in procs[1:]):
                raise UserError(f"a site stopped; see {work}")
            time.sleep(0.5)
        if procs[0].returncode != 0:
            raise UserError(f"the server failed; see {work / 'server.log'}")
    finally:
        for proc in procs:
            stop_process_group(proc)
    doc = json.loads((run_dir / "metrics.json").read_text())
    return [round_cost(r) for r in doc["rounds"]]


def round_cost(record: dict) -> RoundCost:
    """A round record's timing split (server/round_record.py) as the benchmark shows it."""
    timing = record["timing"]

    def slowest_relay(phase: str) -> float:
        values = [
            float(s.get(phase, {}).get("relay_seconds", 0.0)) for s in record["sites"].values()
        ]
        return max(values, default=0.0)

    return RoundCost(
        record["round"],
        timing["round_s"],
        timing["slowest_handler_s"],
        timing.get("train_phase_s", 0.0) + timing.get("eval_phase_s", 0.0),
        slowest_relay("train") + slowest_relay("eval"),
    )


def bench_deploy_round(
    rounds: int = 3, keep: Path | None = None, compare: bool = False
) -> DeployBench:
    """The deployment's round costs and the ClientApp's import cost, measured now;
    `compare` also runs each VARIANTS entry, one after the other."""
    load = os.getloadavg()
    import_flwr = cold_import_seconds("flwr")
    import_app = cold_import_seconds("client.client_app")
    result = DeployBench([], import_flwr, import_app, load)
    names = list(VARIANTS) if compare else ["fediqad"]
    with tempfile.TemporaryDirectory(prefix="fediqad-bench-") as tmp:
        root = keep if keep is not None else Path(tmp)
        for i, name in enumerate(names):
            work = root / f"variant{i}" if compare else root
            work.mkdir(parents=True, exist_ok=True)
            result.loads[name] = os.getloadavg()
            result.variants[name] = run_deploy_rounds(work, rounds, settings=VARIANTS[name])
    result.rounds = result.variants["fediqad"]
    return result
