"""Which hospital this node is and where its data lives (node config, never messages).

Deployment: `flower-supernode --node-config 'data-path="DIR" site-name="NAME"'`.
Simulation: each virtual node's `partition-id` indexes the site list given to
`make_client_app`. A data problem is a `SiteError`: the ClientApp's reply to the
server carries its message, and `fediqad client` exits non-zero on it.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from flwr.app import Context

from client.worker_process import STATUS_ENV, report_fatal
from shared.config import RunConfig
from shared.data.dataset import IQADDataset, open_split, resolve_dataset_dir
from shared.data.layout import present_splits
from shared.data.synth.recipe import SynthRecipe, node_data_dir
from shared.errors import UserError

__all__ = [
    "DEVICE_KEY",
    "STATUS_ENV",
    "Site",
    "SiteError",
    "report_fatal",
    "resolve_site",
    "site_device",
    "site_split",
]

DEVICE_KEY = "device"  # node config: the device this site trains on (`fediqad client --device`)

EVAL_PREFERENCE = ("test", "val", "train")


class SiteError(UserError):
    """The site cannot take part as configured (missing data, wrong layout)."""


@dataclass(frozen=True)
class Site:
    """A site; with a `recipe`, its synthetic data is built on first use on the node
    that runs it, in `data_path` under that node's data folder (`node_data_dir`)."""

    name: str
    data_path: Path
    recipe: SynthRecipe | None = None

    def local_path(self) -> Path:
        if self.recipe is None:
            return self.data_path
        return self.recipe.build(node_data_dir() / self.data_path)


def where_this_runs() -> dict[str, str]:
    """Under Ray (simulation): the host, process and Ray node handling this message, so
    the round record shows where each site ran; {} elsewhere (deployed sites keep their
    host names to themselves)."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return {}
    return {
        "host": f"{socket.gethostname()}:{os.getpid()}",
        "ray-node": ray.get_runtime_context().get_node_id(),
    }


def resolve_site(context: Context, sites: Sequence[Site] | None = None) -> Site:
    node = context.node_config
    if "data-path" in node:
        path = Path(str(node["data-path"])).expanduser()
        name = str(node.get("site-name") or path.name)
    elif sites is not None and "partition-id" in node:
        site = sites[int(node["partition-id"])]
        path, name = site.local_path(), site.name
    else:
        raise SiteError(
            "this SuperNode has no node config 'data-path'; start it with "
            '--node-config \'data-path="DIR" site-name="NAME"\''
        )
    if not path.is_dir():
        raise SiteError(f"site '{name}': data path {path} does not exist")
    return Site(name, path)


_DATASETS: dict[tuple[str, str, str], IQADDataset] = {}


def site_split(site: Site, cfg: RunConfig, split: str, *, augment: bool = False) -> IQADDataset:
    """One split of the site's data, cached per process (simulation actors reuse it)."""
    key = (
        str(site.data_path),
        split,
        cfg.dataset.model_dump_json() + str(cfg.image_size) + str(augment),
    )
    if key not in _DATASETS:
        if len(_DATASETS) > 64:
            _DATASETS.clear()
        try:
            _DATASETS[key] = open_split(site.data_path, cfg, split, augment=augment)
        except UserError as err:
            raise SiteError(f"site '{site.name}': {err}") from None
    return _DATASETS[key]


def eval_split_name(site: Site, cfg: RunConfig, requested: str) -> str:
    if requested != "auto":
        return requested
    try:
        present = present_splits(resolve_dataset_dir(site.data_path, cfg.dataset.name))
    except UserError as err:
        raise SiteError(f"site '{site.name}': {err}") from None
    for split in EVAL_PREFERENCE:
        if split in present:
            return split
    raise SiteError(f"site '{site.name}': no split file to evaluate on")


def site_device(context: Context, cfg: RunConfig) -> str:
    """The device this site trains on: its node config `device` (the hospital knows its
    hardware; `fediqad client --device`), else the run's `device` ("auto": a GPU if the
    site has one). Also written into `cfg`, so the data loader pins memory for it."""
    import torch

    from shared.training import resolve_device

    own = context.node_config.get(DEVICE_KEY)
    name = str(own or cfg.device)
    device = resolve_device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        source = f"node config {DEVICE_KEY}" if own else "the run's device"
        raise SiteError(f"{source} is {name!r}, but CUDA is not available on this site")
    cfg.device = str(device)
    return cfg.device
