"""Starting a central training run, fresh or resumed: the config it trains with and its
output folder (what `fediqad train` does before the first epoch)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared.config import RunConfig, build_config
from shared.errors import UserError
from shared.resume import resumed_config
from shared.training.precision_rules import refuse_unsupported_precision

if TYPE_CHECKING:
    from shared.training.central import TrainRun

# torch (shared.training.central, shared.checkpoint) is imported only once the settings
# are valid, so a user's mistake is reported fast.

# What a resumed central run may change; every other setting is the stored one.
# (precision and memory layout change how a step computes, not what it computes)
CHANGEABLE_ON_RESUME = ("optim.epochs", "device", "threads", "precision", "channels_last")


def default_out(cfg: RunConfig) -> Path:
    return Path("runs") / f"{cfg.dataset.name}-{cfg.method}"


def start_training(
    data_root: Path,
    *,
    dataset: str | None = None,
    config_file: Path | None = None,
    flags: dict[str, Any] | None = None,
    set_items: list[str] | None = None,
    out: Path | None = None,
    resume: bool = False,
    force: bool = False,
) -> TrainRun:
    """A `TrainRun` on DATA_ROOT/NAME, ready to `run()`; refuses to overwrite an earlier run.

    The config: dataset preset, `config_file`, `flags` (dotted keys such as
    "optim.epochs" -> value; None = not given), `set_items` ("section.field=value").
    On `resume`, the config OUT/last.ckpt stored, as `shared.resume` allows."""
    if resume:
        if out is None:
            raise UserError("--resume needs --out, the folder of the run to continue")
        from shared.checkpoint import read_payload
        from shared.training.central import LAST, TrainRun, check_out_dir

        check_out_dir(out, force=force, resume=True)
        cfg = resumed_config(
            read_payload(out / LAST)["config"],
            flags=flags,
            changeable=CHANGEABLE_ON_RESUME,
            dataset=dataset,
            config_file=config_file,
            set_items=set_items,
        )
        refuse_unsupported_precision(cfg)
        return TrainRun(cfg, data_root, out, resume=True)
    cfg = build_config(dataset, config_file, flags, set_items)
    refuse_unsupported_precision(cfg)
    out = out or default_out(cfg)
    if cfg.model.pretrained_weights is not None:  # refuse an encoder of another backbone now
        from shared.contrastive.transfer import check_encoder

        check_encoder(Path(cfg.model.pretrained_weights), cfg)
    from shared.training.central import TrainRun, check_out_dir

    check_out_dir(out, force=force, resume=False)
    return TrainRun(cfg, data_root, out)
