"""Read a run folder into one shape, whether `fediqad train` or a federation wrote it.

Centralised runs (`metrics.json` with `epochs`) have one evaluation per epoch;
federated runs (`metrics.json` with `rounds`) have per round a site-weighted global
evaluation, an optional server held-out evaluation and one per site, plus bytes on
the wire. Whatever is missing becomes a sentence in `problems`, never an exception,
so the report can still draw the rest.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.errors import UserError

METRICS_FILE = "metrics.json"
CHECKPOINT_NAMES = ("best.ckpt", "global.pt", "last.ckpt")
GLOBAL_SCOPE = "global (site-weighted)"
SERVER_SCOPE = "server held-out"

Series = list[tuple[int, dict[str, float]]]


@dataclass
class RunData:
    """Everything a report shows about one run; numbers are those of `metrics.json`."""

    path: Path
    kind: str  # "centralised", "federated" or "unknown"
    step_label: str = "Epoch"
    config: dict[str, Any] | None = None
    settings: list[tuple[str, str]] = field(default_factory=list)
    evals: dict[str, Series] = field(default_factory=dict)
    train: dict[str, Series] = field(default_factory=dict)
    results: list[tuple[str, dict[str, float]]] = field(default_factory=list)
    site_results: list[tuple[str, dict[str, float]]] = field(default_factory=list)
    headline: tuple[str, dict[str, float]] | None = None
    rounds: list[dict[str, Any]] = field(default_factory=list)
    epsilon: dict[str, Series] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)
    checkpoint: Path | None = None
    eval_data: Path | None = None
    eval_split: str | None = None
    problems: list[str] = field(default_factory=list)
    synthetic: list[Path] = field(default_factory=list)  # synthetic data folders it used

    @property
    def dataset(self) -> str | None:
        return ((self.config or {}).get("dataset") or {}).get("name")

    @property
    def diagnosis_names(self) -> list[str]:
        return list(((self.config or {}).get("dataset") or {}).get("diagnosis_names") or [])

    @property
    def quality_names(self) -> list[str]:
        return list(((self.config or {}).get("dataset") or {}).get("quality_names") or [])

    @property
    def final_sets(self) -> list[tuple[str, dict[str, float]]]:
        """Every evaluated set of the final epoch / round (overall results, then sites)."""
        return self.results + self.site_results


SYNTH_MARKER = "synth.json"  # written by `fediqad data synth` beside the images


def synthetic_folders(roots: list[Path], dataset: str | None) -> list[Path]:
    """The data folders among `roots` that `fediqad data synth` made."""
    found = []
    for root in roots:
        for folder in (root, root / (dataset or "")):
            if (folder / SYNTH_MARKER).is_file() and folder not in found:
                found.append(folder)
    return found


def plain(metrics: Any) -> dict[str, float]:
    """A metrics mapping as floats: null (undefined, e.g. AUC on one class) -> NaN,
    anything that is not a number is dropped."""
    if not isinstance(metrics, dict):
        return {}
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if value is None:
            out[str(key)] = math.nan
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[str(key)] = float(value)
    return out


def _read_json(path: Path, run: RunData) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        run.problems.append(
            f"{path.name} cannot be read ({str(err).splitlines()[0]}); "
            "curves and metric tables are left out"
        )
        return None
    if not isinstance(doc, dict):
        run.problems.append(f"{path.name} is not a JSON object; curves and tables are left out")
        return None
    return doc


def _find_checkpoint(folder: Path) -> Path | None:
    for name in CHECKPOINT_NAMES:
        if (folder / name).is_file():
            return folder / name
    rounds = sorted((folder / "checkpoints").glob("round_*.pt"))
    return rounds[-1] if rounds else None


def load_run(path: Path) -> RunData:
    """The run in `path`; UserError only if it is neither a run folder nor readable."""
    path = Path(path)
    if not path.is_dir():
        raise UserError("run folder not found", path=path)
    checkpoint = _find_checkpoint(path)
    metrics = path / METRICS_FILE
    if not metrics.is_file() and checkpoint is None:
        raise UserError(
            "not a run folder: no metrics.json and no checkpoint "
            "(best.ckpt, last.ckpt, global.pt, checkpoints/round_*.pt)",
            path=path,
        )
    run = RunData(path=path, kind="unknown", checkpoint=checkpoint)
    doc = _read_json(metrics, run) if metrics.is_file() else None
    if not metrics.is_file():
        run.problems.append(
            "no metrics.json in the run folder: per-epoch / per-round curves "
            "and metric tables cannot be drawn"
        )
    if doc is not None and "rounds" in doc:
        _federated(run, doc)
    elif doc is not None and "epochs" in doc:
        _centralised(run, doc)
    elif doc is not None:
        run.problems.append(
            "metrics.json has neither 'epochs' (fediqad train) nor 'rounds' "
            "(federation); curves and tables are left out"
        )
    if run.config is None and checkpoint is not None:
        run.config = _checkpoint_config(checkpoint, run)
    if run.config is not None:
        run.settings = model_settings(run.config) + run.settings
    run.synthetic = synthetic_folders(_data_roots(doc or {}, run), run.dataset)
    return run


def _data_roots(doc: dict[str, Any], run: RunData) -> list[Path]:
    """Data folders the run names: its data root, the server's held-out set, site folders."""
    fed = doc.get("federation") if isinstance(doc.get("federation"), dict) else {}
    named = [doc.get("data_root"), fed.get("server_eval_data"), *(fed.get("site_data") or [])]
    roots = [Path(p) for p in named if isinstance(p, str) and p]
    return roots + ([run.eval_data] if run.eval_data is not None else [])


def _checkpoint_config(checkpoint: Path, run: RunData) -> dict[str, Any] | None:
    from shared.checkpoint import read_payload

    try:
        return read_payload(checkpoint).get("config")
    except UserError as err:
        run.problems.append(f"checkpoint unreadable: {err}")
        return None


def model_settings(cfg: dict[str, Any]) -> list[tuple[str, str]]:
    """The configuration rows every report starts with."""
    ds, model, optim = cfg.get("dataset", {}), cfg.get("model", {}), cfg.get("optim", {})
    return [
        ("dataset", f"{ds.get('name')} ({ds.get('modality')}, {ds.get('channels')} channel(s))"),
        ("diagnosis classes", ", ".join(ds.get("diagnosis_names", []))),
        ("quality classes", ", ".join(ds.get("quality_names", []))),
        ("method", f"{cfg.get('method')} (schedule {cfg.get('schedule')})"),
        (
            "backbone",
            f"{model.get('backbone')} (width x{model.get('width')}, "
            f"GAB {model.get('gab')}, meta length {model.get('meta_length')})",
        ),
        ("image size", f"{cfg.get('image_size')} px"),
        (
            "optimiser",
            f"SGD lr {optim.get('lr')}, meta lr {optim.get('meta_lr')}, weight decay "
            f"{optim.get('weight_decay')}, batch {optim.get('batch_size')}",
        ),
        ("seed", str(cfg.get("seed"))),
    ]


# ------------------------------------------------------------------ centralised
def _centralised(run: RunData, doc: dict[str, Any]) -> None:
    run.kind, run.step_label = "centralised", "Epoch"
    run.config = doc.get("config") if isinstance(doc.get("config"), dict) else None
    split = str(doc.get("eval_split") or "eval")
    epochs = [e for e in doc.get("epochs", []) if isinstance(e, dict) and "epoch" in e]
    run.evals = {split: [(int(e["epoch"]), plain(e.get("eval"))) for e in epochs]}
    run.train = {"training": [(int(e["epoch"]), plain(e.get("train"))) for e in epochs]}
    best_epoch = doc.get("best_epoch")
    run.settings = [
        ("epochs run", str(len(epochs))),
        ("model selection", f"{doc.get('selection')} (selected epoch {best_epoch})"),
    ]
    if doc.get("best"):
        run.results.append((f"{split} (epoch {best_epoch}, selected)", plain(doc["best"])))
    if doc.get("test"):
        run.results.append(("test", plain(doc["test"])))
        run.headline = ("test", plain(doc["test"]))
        run.eval_split = "test"
    elif doc.get("best"):
        run.headline = (f"{split} (epoch {best_epoch})", plain(doc["best"]))
        run.eval_split = split if split != "eval" else None
    if not epochs:
        run.problems.append("metrics.json lists no epochs yet: no curves to draw")
    recorded = doc.get("data_root")
    run.eval_data = Path(recorded) if recorded else None
    for name in ("best.ckpt", "last.ckpt"):
        if (run.path / name).is_file():
            run.checkpoint = run.path / name
            break


# -------------------------------------------------------------------- federated
def _federated(run: RunData, doc: dict[str, Any]) -> None:
    run.kind, run.step_label = "federated", "Round"
    fed = doc.get("federation") if isinstance(doc.get("federation"), dict) else {}
    run.config = fed.get("run") if isinstance(fed.get("run"), dict) else None
    rounds = [r for r in doc.get("rounds", []) if isinstance(r, dict) and "round" in r]
    run.rounds = rounds
    run.settings = _federation_settings(fed, rounds)
    _federated_series(run, doc, rounds)
    final = next(
        (r for r in reversed(rounds) if r.get("global") or r.get("server_eval")),
        rounds[-1] if rounds else None,
    )
    if final is not None:
        label = f"round {final['round']}"
        if final.get("global"):
            run.results.append((f"{GLOBAL_SCOPE}, {label}", plain(final["global"])))
        if final.get("server_eval"):
            run.results.append((f"{SERVER_SCOPE}, {label}", plain(final["server_eval"])))
        for name, site in sorted((final.get("sites") or {}).items()):
            if isinstance(site, dict) and site.get("eval"):
                run.site_results.append((f"{name}, {label}", plain(site["eval"])))
        if final.get("server_eval"):
            run.headline = (f"{SERVER_SCOPE}, {label}", plain(final["server_eval"]))
        elif final.get("global"):
            run.headline = (f"{GLOBAL_SCOPE}, {label}", plain(final["global"]))
    else:
        run.problems.append("metrics.json lists no completed round yet: no curves to draw")
    if fed.get("server_eval_data"):
        run.eval_data = Path(fed["server_eval_data"])
        run.eval_split = str(fed.get("server_eval_split") or "test")
    for r in rounds:
        for item in list(r.get("failures") or []) + list(r.get("rejected") or []):
            run.events.append(
                f"round {r['round']}: {item.get('kind')} at {item.get('site')}: "
                f"{item.get('reason')}"
            )
        if str(r.get("status", "ok")) != "ok":
            run.events.append(f"round {r['round']}: {r.get('status')}")


def _federation_settings(
    fed: dict[str, Any], rounds: list[dict[str, Any]]
) -> list[tuple[str, str]]:
    sites = sorted({name for r in rounds for name in (r.get("sites") or {})})
    strategy = str(fed.get("strategy"))
    if strategy == "fedprox":
        strategy += f" (mu {fed.get('proximal_mu')})"
    return [
        ("strategy", strategy),
        (
            "rounds",
            f"{len(rounds)} completed of {fed.get('num_rounds')}, "
            f"{fed.get('local_epochs')} local epoch(s) each",
        ),
        ("sites", ", ".join(sites) or "-"),
        (
            "participation",
            f"train fraction {fed.get('fraction_train')}, evaluate fraction "
            f"{fed.get('fraction_evaluate')}, min replies {fed.get('min_replies')}",
        ),
        ("transport", f"{fed.get('transport_dtype')} arrays"),
        ("server held-out data", str(fed.get("server_eval_data") or "none")),
    ]


def _federated_series(run: RunData, doc: dict[str, Any], rounds: list[dict[str, Any]]) -> None:
    evals: dict[str, Series] = {GLOBAL_SCOPE: [], SERVER_SCOPE: []}
    train: dict[str, Series] = {"aggregated": []}
    if isinstance(doc.get("initial"), dict):
        evals[SERVER_SCOPE].append((0, plain(doc["initial"])))
    for r in rounds:
        rnd = int(r["round"])
        if r.get("global"):
            evals[GLOBAL_SCOPE].append((rnd, plain(r["global"])))
        if r.get("server_eval"):
            evals[SERVER_SCOPE].append((rnd, plain(r["server_eval"])))
        if r.get("train"):
            train["aggregated"].append((rnd, plain(r["train"])))
        for name, site in sorted((r.get("sites") or {}).items()):
            if not isinstance(site, dict):
                continue
            if site.get("eval"):
                evals.setdefault(name, []).append((rnd, plain(site["eval"])))
            if site.get("train"):
                train.setdefault(name, []).append((rnd, plain(site["train"])))
            eps = _epsilon(site.get("train")) or _epsilon(site)
            if eps is not None:
                run.epsilon.setdefault(name, []).append((rnd, {"epsilon": eps}))
        eps = _epsilon(r)
        if eps is not None:
            run.epsilon.setdefault("run", []).append((rnd, {"epsilon": eps}))
    run.evals = {k: v for k, v in evals.items() if v}
    run.train = {k: v for k, v in train.items() if v}


def _epsilon(record: Any) -> float | None:
    """The privacy budget spent, under any key naming epsilon (e.g. `epsilon`, `dp_epsilon`)."""
    if not isinstance(record, dict):
        return None
    for key, value in record.items():
        if "epsilon" in str(key).lower() and isinstance(value, int | float):
            return float(value)
    return None
