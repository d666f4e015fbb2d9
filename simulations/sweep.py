"""`fediqad simulate --sweep`: a grid of independent simulations, one after another.

Each grid point is an ordinary `fediqad simulate` run in OUT/<point name> (its own
settings, checkpoints, metrics and report). Run again, the sweep skips the runs that
finished and resumes the ones that had started (`--resume` of that run, under the
rules of `shared.resume`), so a Ctrl-C costs at most the round in progress. With a
Ray address every run attaches to that cluster; without, each run starts and stops
its own local Ray, as `fediqad simulate` does. After every run the summary
(OUT/sweep-summary.md and .json) is rewritten from the run folders' metrics.json.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from shared.errors import UserError
from simulations.launch import SimulationRequest
from simulations.sweep_file import GridPoint, Sweep

SUMMARY = "sweep-summary"
# (column, key of the last round's site-weighted "global" metrics)
FINAL_METRICS = (("AUC", "auc"), ("ACC", "acc"), ("kappa", "kappa"), ("HQ AUC", "auc_hq"))
FINAL_METRICS += (("LQ AUC", "auc_lq"), ("Q-ACC", "quality_acc"))
GRID_OWNS = {"strategy", "seed"}  # set per run by the grid, not in [simulate]


@dataclass
class RunOutcome:
    """One grid point as its folder shows it now."""

    name: str
    strategy: str
    partition: str | None
    seed: int
    run_dir: str
    status: str  # finished | skipped (finished before) | partial | failed: ... | not run
    rounds: int = 0
    metrics: dict[str, float | None] = field(default_factory=dict)
    server_auc: float | None = None


def request_for(sweep: Sweep, point: GridPoint, out: Path, *, resume: bool) -> SimulationRequest:
    """The `fediqad simulate` request of one grid point."""
    s = sweep.settings
    return SimulationRequest(
        data_root=s.data_root,
        dataset=s.dataset,
        sites=s.sites,
        partition=point.partition,
        name=point.name,
        out=out,
        config=s.config,
        set_items=list(s.set) or None,
        run_flags={
            "method": s.method,
            "model.backbone": s.backbone,
            "image_size": s.image_size,
            "optim.batch_size": s.batch_size,
            "seed": point.seed,
        },
        fed_flags={
            **{k.replace("-", "_"): v for k, v in s.fed_set.items()},
            "num_rounds": s.rounds,
            "local_epochs": s.local_epochs,
            "strategy": point.strategy,
        },
        images_per_site=s.images_per_site,
        server_eval=s.server_eval,
        cpus_per_site=s.cpus_per_site,
        gpus_per_site=s.gpus_per_site,
        max_parallel=s.max_parallel,
        resume=resume,
        backend=s.backend,
        ray_startup_timeout=s.ray_startup_timeout,
        ray_address=s.ray_address or None,  # every run attaches to the same cluster
    )


def check_sweep(sweep: Sweep) -> None:
    """Build every point's settings now (no files, no torch): a bad method, --set item or
    fed_set value stops the sweep before its first run, naming the file."""
    from server.config import FLAGS, FederationConfig, validated
    from shared.config import build_config
    from simulations import scenarios

    s, where = sweep.settings, str(sweep.path)
    clash = GRID_OWNS & {k.replace("-", "_") for k in s.fed_set}
    clash |= {item.split("=")[0].strip() for item in s.set} & GRID_OWNS
    if clash:
        raise UserError(f"{where}: {', '.join(sorted(clash))} is a grid axis; set it in [grid]")
    names = {f: f"{where}: simulate.fed_set.{f}" for f in FederationConfig.model_fields}
    names.update(
        {f: f"{where}: simulate.{flag[2:].replace('-', '_')}" for f, flag in FLAGS.items()}
    )
    names["strategy"] = f"{where}: grid.strategy"
    synthetic = s.data_root is None and s.dataset is None and s.config is None
    for point in sweep.points():
        req = request_for(sweep, point, Path("."), resume=False)
        try:
            run = build_config(
                s.dataset,
                s.config,
                req.run_flags,
                req.set_items,
                base=scenarios.default_run_config() if synthetic else None,
            )
            fed = {k: v for k, v in req.fed_flags.items() if v is not None}
            validated(flags=names, run=run, run_dir=Path(point.name), **fed)
        except UserError as err:
            text = str(err)
            if not text.startswith(where):  # "--method: ..." -> "FILE: simulate.method: ..."
                text = f"{where}: " + re.sub(r"^--([a-z][a-z-]*)", _key_of_flag, text)
            raise UserError(text) from None


def _key_of_flag(match: re.Match[str]) -> str:
    flag = match[1]
    return "grid.seed" if flag == "seed" else "simulate." + flag.replace("-", "_")


def run_state(run_dir: Path, rounds: int | None) -> str:
    """`finished`, `partial` (a committed round to resume from) or `new`."""
    from server.settings import committed_round

    try:
        doc = json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        doc = {}
    if doc.get("finished") and (rounds is None or len(doc.get("rounds", [])) >= rounds):
        return "finished"
    return "partial" if committed_round(run_dir) is not None else "new"


def outcome(point: GridPoint, run_dir: Path, status: str) -> RunOutcome:
    """What the run folder holds: rounds done and the last round's global metrics."""
    out = RunOutcome(point.name, point.strategy, point.partition, point.seed, str(run_dir), status)
    try:
        doc = json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return out
    rounds = doc.get("rounds") or []
    out.rounds = len(rounds)
    if rounds:
        final = rounds[-1].get("global") or {}
        out.metrics = {key: final.get(key) for _, key in FINAL_METRICS}
        out.server_auc = (rounds[-1].get("server_eval") or {}).get("auc")
    return out


def run_sweep(
    sweep: Sweep,
    out: Path,
    *,
    say: Callable[[str], None] = print,
) -> list[RunOutcome]:
    """Every grid point in order; finished ones are skipped, started ones resumed.

    A run that fails (no round completed, a setting its stored run refuses) is marked
    failed and the sweep goes on; Ctrl-C stops it (KeyboardInterrupt) with the summary
    of what is done written."""
    from simulations.launch import run_dir_of, simulate

    check_sweep(sweep)
    points = sweep.points()
    out.mkdir(parents=True, exist_ok=True)
    rows = [
        outcome(p, run_dir_of(request_for(sweep, p, out, resume=False)), "not run") for p in points
    ]
    for i, point in enumerate(points):
        run_dir = Path(rows[i].run_dir)
        state = run_state(run_dir, sweep.settings.rounds)
        if state == "finished":
            say(f"[{i + 1}/{len(points)}] {point.name}: finished before, skipped")
            rows[i] = outcome(point, run_dir, "skipped (finished before)")
            continue
        verb = "resuming" if state == "partial" else "running"
        say(f"[{i + 1}/{len(points)}] {point.name}: {verb} -> {run_dir}")
        try:
            simulate(request_for(sweep, point, out, resume=state == "partial"), say=say)
            rows[i] = outcome(point, run_dir, "finished")
        except UserError as err:
            say(f"{point.name} failed: {err}")
            rows[i] = outcome(point, run_dir, f"failed: {err}")
        except BaseException:  # Ctrl-C: what is done is summarised, then the sweep stops
            rows[i] = outcome(point, run_dir, "interrupted")
            write_summary(sweep, out, rows)
            raise
        write_summary(sweep, out, rows)  # after every run: an interrupted sweep has one too
    write_summary(sweep, out, rows)
    return rows


def summary_markdown(rows: list[RunOutcome]) -> str:
    heads = ["run", "status", "rounds", *(h for h, _ in FINAL_METRICS), "server AUC"]
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for row in rows:
        values = [row.metrics.get(key) for _, key in FINAL_METRICS] + [row.server_auc]
        cells = [row.name, row.status, str(row.rounds)]
        cells += ["-" if v is None else f"{v:.3f}" for v in values]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_summary(sweep: Sweep, out: Path, rows: list[RunOutcome]) -> tuple[Path, Path]:
    """OUT/sweep-summary.md and .json (atomic: a reader never sees half a file)."""
    from shared.atomic_write import write_text_atomic
    from shared.strict_json import write_json

    doc: dict[str, Any] = {"sweep": str(sweep.path), "runs": [asdict(r) for r in rows]}
    md = f"# Sweep {sweep.path.name}\n\nFinal round, site-weighted global metrics.\n\n"
    paths = out / f"{SUMMARY}.md", out / f"{SUMMARY}.json"
    write_text_atomic(paths[0], md + summary_markdown(rows))
    write_json(paths[1], doc, indent=2)
    return paths
