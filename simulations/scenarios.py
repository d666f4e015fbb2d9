"""The sites a simulation runs on: the built-in synthetic default, or a partition of real data.

Default (`fediqad simulate` with no arguments): three EYEQ-like hospitals whose image
quality differs - mostly high quality, mixed, and mostly low quality - plus a
held-out set the server evaluates on; a slim VGG16-BN at 64 px trained with MKCNet's
second-order meta-auxiliary learning, 5 rounds of 3 local epochs at learning rate 0.1.
The learning rate and epochs are the demo's own (EYEQ's preset trains 100 epochs at
0.01): with them the global model reaches AUC ~0.77 on the sites and ~0.82 on the
held-out set in 5 rounds, where the preset's values stay near chance (docs/federation.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from shared.config import RunConfig, preset
from shared.data.synth.recipe import SynthRecipe

if TYPE_CHECKING:  # client.site loads torch: the settings are checked before that
    from client.site import Site

DEFAULT_SITES: tuple[tuple[str, float], ...] = (
    ("hospital-a", 0.15),  # mostly high quality
    ("hospital-b", 0.40),
    ("hospital-c", 0.85),  # mostly low quality
)
DEFAULT_IMAGES_PER_SITE = 400
DEFAULT_IMAGE_SIZE = 64
DEFAULT_LOCAL_EPOCHS = 3
DEFAULT_LR = 0.1


def default_run_config() -> RunConfig:
    cfg = preset("EYEQ")
    cfg.image_size = DEFAULT_IMAGE_SIZE
    cfg.model.backbone = "vgg16_bn_slim"
    cfg.method = "mkcnet"
    cfg.optim.batch_size = 8
    cfg.optim.lr = DEFAULT_LR
    cfg.contrastive.patch_size = 16  # CoMCL's 128 px of a ~1000 px photograph, at 64 px
    return cfg


def _synthetic(root: Path, n: int, size: int, seed: int, lq: float) -> Path:
    """OUT/EYEQ synthesized once; regenerated only when its parameters changed."""
    return SynthRecipe("EYEQ", n, size, seed, lq).build(root)


def default_sites(
    data_dir: Path,
    *,
    images_per_site: int = DEFAULT_IMAGES_PER_SITE,
    image_size: int = DEFAULT_IMAGE_SIZE,
    seed: int = 0,
    n_sites: int | None = None,
    on_nodes: bool = False,
) -> tuple[list[Site], Path]:
    """The synthetic hospitals and the server's held-out set, under `data_dir`.

    `on_nodes` (a Ray cluster): the sites are recipes, built by the node that runs each
    one (`client.site.Site.local_path`); only the held-out set is built here."""
    from client.site import Site

    specs = list(DEFAULT_SITES)
    n_sites = n_sites or len(specs)
    while len(specs) < n_sites:  # more sites: cycle through the quality mixes
        name, lq = DEFAULT_SITES[len(specs) % len(DEFAULT_SITES)]
        specs.append((f"{name.split('-')[0]}-{len(specs) + 1:02d}", lq))
    sites = []
    for i, (name, lq) in enumerate(specs[:n_sites]):
        recipe = SynthRecipe("EYEQ", images_per_site, image_size, seed + i, lq)
        if on_nodes:
            sites.append(Site(name, Path(name) / recipe.key, recipe))
        else:
            sites.append(Site(name, recipe.build(data_dir / name)))
    held_out = _synthetic(
        data_dir / "server-heldout", max(images_per_site // 2, 20), image_size, seed + 1000, 0.5
    )
    return sites, held_out


def partitioned_sites(
    data_root: Path, dataset: str, n_sites: int, scheme: str | None, out: Path, seed: int
) -> list[Site]:
    """Real data split into `n_sites` site folders (OUT/site_k/NAME) by the data package's
    partitioner; an existing partition in OUT (a resumed run) is reused as it is."""
    from client.site import Site
    from simulations.site_partition import partition

    existing = sorted(out.glob("site_*"), key=lambda p: int(p.name.split("_")[-1]))
    if (out / "partition.json").is_file() and len(existing) == n_sites:
        paths = [next(p for p in site.iterdir() if p.is_dir()) for site in existing]
    else:
        paths = partition(data_root, dataset, n_sites, scheme or "iid", out=out, seed=seed)
    return [Site(Path(p).parent.name, Path(p)) for p in paths]
