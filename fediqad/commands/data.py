"""`fediqad data ...`: prepare public releases, synthesise datasets, partition sites,
build LQ test sets, check and count datasets, and benchmark loading.

Thin wiring over `shared.data` and `simulations.site_partition`; every user mistake is a
`UserError` (one line, exit 2; see `fediqad.cli`). `check` exits 1 when it finds problems.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from shared.errors import UserError

console = Console()

OutOpt = Annotated[Path, typer.Option("--out", help="Output folder (ROOT).")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Replace existing output.")]


def _count_table(title: str, counts: np.ndarray, d_names: list[str], q_names: list[str]) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("diagnosis \\ quality")
    for q in q_names:
        table.add_column(q, justify="right")
    table.add_column("total", justify="right", style="bold")
    for i, d in enumerate(d_names):
        table.add_row(d, *[str(int(c)) for c in counts[i]], str(int(counts[i].sum())))
    table.add_row(
        "total", *[str(int(c)) for c in counts.sum(0)], str(int(counts.sum())), style="bold"
    )
    return table


def prepare_cmd(
    source: Annotated[Path, typer.Argument(help="Folder where you unpacked the release(s).")],
    kind: Annotated[
        str, typer.Option("--from", help="eyeq, deepdr, drac, covid-ct+sars or kermany+cxr14.")
    ],
    out: OutOpt,
    seed: SeedOpt = 0,
    copy: Annotated[
        bool, typer.Option("--copy", help="Copy images instead of symlinking.")
    ] = False,
    force: ForceOpt = False,
    allow_missing: Annotated[
        bool, typer.Option("--allow-missing", help="Skip labelled images absent from the source.")
    ] = False,
    splits_from: Annotated[
        Path | None,
        typer.Option(
            "--splits-from",
            help="Use the authors' split files in this folder (membership and "
            "names) instead of a random split.",
        ),
    ] = None,
    sars_per_class: Annotated[
        int, typer.Option(help="covid-ct+sars: SARS-CoV-2 images per class (0: all).")
    ] = 800,
    cxr14_normal: Annotated[int, typer.Option(help="kermany+cxr14: 'No Finding' adults.")] = 1000,
    min_adult_age: Annotated[
        int, typer.Option(help="kermany+cxr14: youngest CXR14 patient kept (0: all, as the paper).")
    ] = 0,
    downsample: Annotated[
        int, typer.Option(help="kermany+cxr14: low-dose down-sampling factor.")
    ] = 4,
    drac_match: Annotated[
        str,
        typer.Option(help="drac: match quality labels to grading images by 'content' or 'name'."),
    ] = "content",
    drac_hq_min: Annotated[
        int,
        typer.Option(help="drac: lowest quality level counted HQ (0 poor, 1 good, 2 excellent)."),
    ] = 1,
) -> None:
    """Turn a public release you downloaded into ROOT/NAME (the authors' layout)."""
    from shared.data.prepare import Options, prepare

    if drac_match not in ("content", "name"):
        raise UserError(f"--drac-match must be 'content' or 'name', got {drac_match!r}")
    opts = Options(
        seed=seed,
        copy=copy,
        force=force,
        allow_missing=allow_missing,
        splits_from=splits_from,
        extra={
            "sars_per_class": sars_per_class,
            "cxr14_normal": cxr14_normal,
            "min_adult_age": min_adult_age,
            "downsample": downsample,
            "drac_match": drac_match,
            "drac_hq_min": drac_hq_min,
        },
    )
    folder = prepare(source, kind, out, opts)
    console.print(f"wrote {folder}")
    _print_stats(folder, None)


def synth_cmd(
    like: Annotated[str, typer.Option("--like", help="EYEQ, DEEPDR, DRAC, IQAD_CT, IQAD_CXR.")],
    n: Annotated[int, typer.Option("--n", help="Number of images.")],
    image_size: Annotated[int, typer.Option("--image-size", help="Image side in pixels.")],
    out: OutOpt,
    seed: SeedOpt = 0,
    lq_ratio: Annotated[
        float | None,
        typer.Option("--lq-ratio", help="Fraction of LQ images (default: Table 1's mix)."),
    ] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes.")] = None,
    force: ForceOpt = False,
) -> None:
    """Write a synthetic dataset like NAME to ROOT/NAME (images, splits, lesions.csv)."""
    from shared.data.synth import synthesize

    start = time.perf_counter()
    folder = synthesize(
        like, n, image_size, out, seed=seed, lq_ratio=lq_ratio, workers=workers, force=force
    )
    seconds = time.perf_counter() - start
    console.print(f"wrote {folder}: {n} images in {seconds:.1f} s ({n / seconds:.0f} images/s)")
    _print_stats(folder, None)


def partition_cmd(
    data_root: Annotated[Path, typer.Option("--data-root", help="Folder holding NAME/.")],
    dataset: Annotated[str, typer.Option("--dataset", help="Dataset name.")],
    sites: Annotated[int, typer.Option("--sites", help="Number of sites.")],
    scheme: Annotated[
        str,
        typer.Option(
            "--scheme", help="iid, dirichlet-label:ALPHA, dirichlet-quality:ALPHA or source."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Output folder (site_k/NAME inside).")],
    seed: SeedOpt = 0,
    force: ForceOpt = False,
) -> None:
    """Split a dataset into site folders (images linked) with a per-site count table."""
    from shared.config import preset
    from simulations.site_partition import partition, read_table

    paths = partition(data_root, dataset, sites, scheme, out, seed=seed, force=force)
    cfg = preset(dataset).dataset
    table = read_table(out)
    for path in paths:
        site = path.parent.name
        total = sum(table[site].values())
        splits = ", ".join(f"{s} {int(c.sum())}" for s, c in table[site].items())
        console.print(
            _count_table(f"{site} ({splits})", total, cfg.diagnosis_names, cfg.quality_names)
        )
    console.print(f"wrote {len(paths)} sites under {out} (table: {Path(out) / 'partition.tsv'})")


def degrade_cmd(
    data_root: Annotated[Path, typer.Option("--data-root", help="Folder holding NAME/.")],
    dataset: Annotated[str, typer.Option("--dataset", help="Dataset name.")],
    lq_ratio: Annotated[float, typer.Option("--lq-ratio", help="Target LQ fraction, e.g. 0.7.")],
    out: OutOpt,
    split: Annotated[str, typer.Option(help="Split to rebuild.")] = "test",
    seed: SeedOpt = 0,
    force: ForceOpt = False,
) -> None:
    """Copy a split with HQ images degraded until LQ_RATIO of it is LQ (CoMCL protocol)."""
    from shared.data.lq_testset import degrade_to_ratio

    folder = degrade_to_ratio(data_root, dataset, split, lq_ratio, out, seed=seed, force=force)
    console.print(f"wrote {folder}")
    _print_stats(folder, dataset)


def check_cmd(
    folder: Annotated[Path, typer.Argument(help="Dataset folder ROOT/NAME.")],
    dataset: Annotated[
        str | None, typer.Option(help="Dataset name if the folder's name is not one.")
    ] = None,
    decode: Annotated[
        bool, typer.Option("--decode/--no-decode", help="Decode every image.")
    ] = True,
) -> None:
    """List every problem (file:line: message); exit 1 if there are any."""
    from shared.data.check import check_dataset

    problems = check_dataset(folder, dataset, decode_images=decode)
    for p in problems:
        typer.echo(str(p))
    if problems:
        typer.echo(f"{len(problems)} problem(s) in {folder}", err=True)
        raise typer.Exit(1)
    typer.echo(f"{folder}: no problems found")


def _print_stats(folder: Path, dataset: str | None) -> None:
    from shared.data.check import dataset_config_for
    from shared.data.stats import split_counts

    cfg = dataset_config_for(folder, dataset)
    counts = split_counts(folder, cfg)
    for split, table in counts.items():
        console.print(
            _count_table(f"{cfg.name} {split}", table, cfg.diagnosis_names, cfg.quality_names)
        )
    if len(counts) > 1:
        console.print(
            _count_table(
                f"{cfg.name} all splits",
                sum(counts.values()),
                cfg.diagnosis_names,
                cfg.quality_names,
            )
        )


def stats_cmd(
    folder: Annotated[Path, typer.Argument(help="Dataset folder ROOT/NAME.")],
    dataset: Annotated[
        str | None, typer.Option(help="Dataset name if the folder's name is not one.")
    ] = None,
) -> None:
    """Images per diagnosis x quality class and split (Table 1 of the MKCNet paper)."""
    if not Path(folder).is_dir():
        raise UserError("dataset folder not found", path=folder)
    _print_stats(folder, dataset)


def bench_cmd(
    n: Annotated[int, typer.Option("--n", help="Images.")] = 10000,
    image_size: Annotated[int, typer.Option("--image-size")] = 64,
    like: Annotated[str, typer.Option("--like")] = "EYEQ",
    workdir: Annotated[Path, typer.Option(help="Scratch folder (kept for reuse).")] = Path(
        "runs/data-bench"
    ),
    workers: Annotated[int | None, typer.Option(help="Synthesis worker processes.")] = None,
    epochs: Annotated[int, typer.Option(help="Warm epochs to time.")] = 3,
    batch_size: Annotated[int, typer.Option(help="Loader batch size.")] = 64,
) -> None:
    """Time synthesis (images/s) and epochs over the cached dataset (s per epoch)."""
    import torch
    from torch.utils.data import DataLoader

    from shared.config import preset
    from shared.data.dataset import IQADDataset
    from shared.data.layout import present_splits, split_path
    from shared.data.splits import read_split
    from shared.data.synth import synthesize

    start = time.perf_counter()
    folder = synthesize(like, n, image_size, workdir, workers=workers, force=True)
    synth_s = time.perf_counter() - start
    console.print(
        f"synthesis: {n} images at {image_size} px in {synth_s:.1f} s = {n / synth_s:.0f} images/s"
    )
    cfg = preset(like)
    cfg.image_size = image_size
    records = [
        r for s in present_splits(folder) for r in read_split(split_path(folder, s), cfg.dataset)
    ]
    dataset = IQADDataset(records, cfg, cache_dir=workdir / "cache")
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True)
    for epoch in range(epochs + 1):
        start = time.perf_counter()
        seen = 0
        for x, *_ in loader:
            seen += x.shape[0]
        seconds = time.perf_counter() - start
        label = "first epoch (decode + fill cache)" if epoch == 0 else f"cached epoch {epoch}"
        console.print(
            f"{label}: {seen} images in {seconds:.2f} s "
            f"({seen / seconds:.0f} images/s, torch threads "
            f"{torch.get_num_threads()})"
        )


def register(app: typer.Typer) -> None:
    data = typer.Typer(
        help="Datasets: prepare, synthesise, partition, check, count.", no_args_is_help=True
    )
    data.command("prepare")(prepare_cmd)
    data.command("synth")(synth_cmd)
    data.command("partition")(partition_cmd)
    data.command("degrade")(degrade_cmd)
    data.command("check")(check_cmd)
    data.command("stats")(stats_cmd)
    data.command("bench")(bench_cmd)
    app.add_typer(data, name="data")
