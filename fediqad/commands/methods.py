"""Method commands: `fediqad methods` (the registry) and `fediqad table2` (the MKCNet
paper's Table 2 on one dataset, beside the published numbers)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from shared.methods import METHODS, TABLE2_METHODS, get_method, list_methods

console = Console()


def methods_cmd() -> None:
    """List the registered methods: models, losses, training step."""
    for name in list_methods():
        spec = METHODS[name]
        models = " + ".join(spec.models)
        console.print(
            f"{name:22} {spec.paper_name:20} {models:24} {' + '.join(spec.losses)}",
            highlight=False,
            soft_wrap=True,
        )


def table2_cmd(
    data_root: Annotated[
        Path, typer.Option("--data-root", help="Folder holding NAME/Images and NAME/train.txt.")
    ],
    dataset: Annotated[
        str, typer.Option("--dataset", help="EYEQ, DEEPDR, DRAC, IQAD_CT or IQAD_CXR.")
    ],
    out: Annotated[Path | None, typer.Option(help="Folder for the runs and table2.md.")] = None,
    methods: Annotated[
        str | None,
        typer.Option(help="Comma-separated methods (default: vanilla,canet,maxl,detach,mkcnet)."),
    ] = None,
    epochs: Annotated[
        int | None, typer.Option(help="Epochs per run (default: the preset's).")
    ] = None,
    set_items: Annotated[
        list[str] | None, typer.Option("--set", help="Override for every run: section.field=value.")
    ] = None,
) -> None:
    """Train each method with the dataset's preset and write OUT/table2.md beside the paper."""
    chosen = [m.strip() for m in methods.split(",")] if methods else list(TABLE2_METHODS)
    for name in chosen:
        get_method(name)  # a typo fails before torch is imported
    out = out or Path("runs") / f"table2-{dataset.upper()}"
    from shared.report.paper_table2 import paper_rows
    from shared.training.table2 import run_table2

    result = run_table2(
        data_root,
        dataset,
        out,
        methods=chosen,
        paper=dict(paper_rows(dataset)),
        flags={"optim.epochs": epochs},
        set_items=set_items,
        say=lambda line: console.print(line, highlight=False),
    )
    assert result.markdown is not None
    console.print(result.markdown.read_text(), highlight=False)
    console.print(f"table {result.markdown}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("methods")(methods_cmd)
    app.command("table2")(table2_cmd)
