"""Starting a central training run, fresh or resumed: the config it trains with and its
output folder (what `fediqad train` does before the first epoch)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared.config import RunConfig, build_config
from shared.errors import UserError
from shared.resume import resumed_config

if TYPE_CHECKING:
    from shared.training.central import TrainRun

# torch (shared.training.central, shared.checkpoint) is imported only once the settings
# are valid, so a user's mistake is reported fast.

# What a resumed central run may change; every other setting is the stored one.
CHANGEABLE_ON_RESUME = ("optim.epochs", "device", "threads")


def default_out(cfg: RunConfig) -> Path:
    return Path("runs") / f"{cfg.dataset.name}-{cfg.method}"


def training_config(
    *,
    dataset: str | None = None,
    config_file: Path | None = None,
    flags: dict[str, Any] | None = None,
    set_items: list[str] | None = None,
    out: Path | None = None,
    resume: bool = False,
    force: bool = False,
) -> tuple[RunConfig, Path]:
    """(config, output folder): built from preset / file / flags, or on `resume` the one
    OUT/last.ckpt stored (see `shared.resume`). Refuses to overwrite an earlier run."""
    if resume:
        if out is None:
            raise UserError("--resume needs --out, the folder of the run to continue")
        from shared.checkpoint import read_payload
        from shared.training.central import LAST, check_out_dir

        check_out_dir(out, force=force, resume=True)
        cfg = resumed_config(
            read_payload(out / LAST)["config"],
            flags=flags,
            changeable=CHANGEABLE_ON_RESUME,
            dataset=dataset,
            config_file=config_file,
            set_items=set_items,
        )
        return cfg, out
    cfg = build_config(dataset, config_file, flags, set_items)
    out = out or default_out(cfg)
    if cfg.model.pretrained_weights is not None:  # refuse an encoder of another backbone now
        from shared.contrastive.transfer import check_encoder

        check_encoder(Path(cfg.model.pretrained_weights), cfg)
    from shared.training.central import check_out_dir

    check_out_dir(out, force=force, resume=False)
    return cfg, out


def start_training(data_root: Path, **settings: Any) -> TrainRun:
    """A `TrainRun` ready to `run()`; `settings` are those of `training_config`."""
    cfg, out = training_config(**settings)
    from shared.training.central import TrainRun

    return TrainRun(cfg, data_root, out, resume=bool(settings.get("resume")))
