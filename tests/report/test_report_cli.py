"""`fediqad report / explain / embed` on a tiny trained run: images of the expected size,
an HTML page that references only what it wrote, the numbers of metrics.json, and bad
input answered with a clear message while the drawable parts are still drawn."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from shared.checkpoint import load_checkpoint, save_checkpoint
from shared.errors import UserError
from shared.models import ModelBundle, build_models
from tests.report.conftest import CPU, TinyRun, cli, png_size

REPORT_SIZES = {
    "quality_bars.png": (1200, 420),
    "curves_metrics.png": (1200, 380),
    "curves_hq_lq.png": (1200, 380),
    "curves_losses.png": (700, 380),
    "checkpoint_roc.png": (360, 360),
    "checkpoint_cm.png": (660, 320),
    "checkpoint_reliability.png": (340, 340),
}
# metrics.json of a test split with known numbers (a trained run's are whatever they are)
KNOWN = {
    "n": 24.0, "auc": 0.61234, "auc_ci_lo": 0.40011, "auc_ci_hi": 0.80456, "acc": 0.6875,
    "acc_ci_lo": 0.5, "acc_ci_hi": 0.875, "f1": 0.27, "kappa": 0.0, "kappa_ci_lo": -0.1,
    "kappa_ci_hi": 0.2, "quality_acc": 1.0, "n_hq": 8.0, "auc_hq": None, "acc_hq": 0.75,
    "f1_hq": 0.4, "kappa_hq": None, "quality_acc_hq": 1.0, "n_lq": 16.0, "auc_lq": 0.5,
    "acc_lq": 0.625, "f1_lq": 0.25, "kappa_lq": 0.0, "quality_acc_lq": 0.0,
    "auc_hard_compat": 0.61234, "f1_compat": 0.27,
}  # fmt: skip


def markdown_figures(md: str) -> list[str]:
    return re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)


def html_references(page: str) -> list[str]:
    """Every src/href/url() target in the page."""
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)["']""", page)
    return refs + re.findall(r"url\(([^)]*)\)", page)


def table_rows(md: str, first_header: str) -> list[list[str]]:
    """Rows of the first Markdown table whose header starts with `first_header`."""
    lines = md.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


def check_output(out: Path) -> tuple[str, str]:
    """index.html self-contained, report.md linking only the PNGs this report wrote."""
    page = (out / "index.html").read_text()
    md = (out / "report.md").read_text()
    assert page.startswith("<!DOCTYPE html>") and "</html>" in page
    for ref in html_references(page):
        assert ref.startswith("data:image/png;base64,"), ref[:60]
    linked = markdown_figures(md)
    written = sorted(p.relative_to(out).as_posix() for p in (out / "figures").glob("*.png"))
    assert sorted(linked) == written  # every link is a file it wrote, every file is linked
    assert page.count("data:image/png;base64,") == len(written)
    for rel in linked:
        png_size(out / rel)
    return page, md


def test_report_of_a_training_run(tiny: TinyRun, tmp_path: Path):
    out = tmp_path / "report"
    result = cli("report", tiny.run, "--out", out, "--data-root", tiny.data, *CPU)
    assert "index.html" in result.output
    page, md = check_output(out)
    for name, size in REPORT_SIZES.items():
        assert png_size(out / "figures" / name) == size, name
    assert "vgg16_bn_slim" in md and "mkcnet" in md
    rows = table_rows(md, "evaluated on")
    assert [r[:2] for r in rows][-3:] == [["test", "all"], ["test", "HQ"], ["test", "LQ"]]
    assert len(rows) == 6
    # Table 2: the paper's rows, labelled as the paper's, beside this run's test numbers
    assert "NOT produced by this run" in md and "NOT produced by this run" in page
    paper = table_rows(md, "method | source")
    assert ["MKCNet", "paper", "83.83", "78.01", "59.68"] in paper
    # the checkpoint, re-evaluated on the data the run recorded, agrees with metrics.json
    assert "They match metrics.json (test)" in md
    assert "Not applicable: a centralised run" in md
    # synthetic data: said before anything else
    assert md.split("\n\n")[1].startswith("> **SYNTHETIC DATA:**")


def test_report_tables_show_metrics_json_literally(run_copy: Path):
    history = json.loads((run_copy / "metrics.json").read_text())
    history["test"] = KNOWN
    (run_copy / "metrics.json").write_text(json.dumps(history))
    cli("report", run_copy, "--no-eval", *CPU)
    _, md = check_output(run_copy / "report")
    rows = table_rows(md, "evaluated on")
    assert rows[-3:] == [
        ["test", "all", "24", "0.612 [0.400, 0.805]", "0.688 [0.500, 0.875]", "0.270",
         "0.000 [-0.100, 0.200]", "1.000"],
        ["test", "HQ", "8", "-", "0.750", "0.400", "-", "1.000"],
        ["test", "LQ", "16", "0.500", "0.625", "0.250", "0.000", "0.000"],
    ]  # fmt: skip
    paper = table_rows(md, "method | source")
    assert paper[-2][1:] == ["this run (test)", "61.23", "68.75", "27.00"]
    assert paper[-1][1:] == ["this run (test), authors' scoring", "61.23", "68.75", "27.00"]


def test_report_uses_the_data_root_the_run_recorded(tiny: TinyRun, run_copy: Path):
    recorded = json.loads((run_copy / "metrics.json").read_text())["data_root"]
    assert Path(recorded) == Path(tiny.data).resolve()
    cli("report", run_copy, *CPU)
    assert (run_copy / "report" / "figures" / "checkpoint_roc.png").is_file()


def test_report_without_data_root_says_why_roc_is_missing(tiny: TinyRun, run_copy: Path):
    history = json.loads((run_copy / "metrics.json").read_text())
    del history["data_root"]  # a run whose data location is unknown
    (run_copy / "metrics.json").write_text(json.dumps(history))
    result = cli("report", run_copy, *CPU)
    assert "pass --data-root" in result.output
    out = run_copy / "report"
    _, md = check_output(out)
    assert "checkpoint evaluation (full-resolution ROC, confusion): the run does not" in md
    assert not (out / "figures" / "checkpoint_roc.png").exists()
    assert (out / "figures" / "roc_per_set.png").is_file()  # from metrics.json
    assert (out / "figures" / "curves_metrics.png").is_file()


def test_report_without_metrics_still_draws_what_it_can(tiny: TinyRun, run_copy: Path):
    (run_copy / "metrics.json").unlink()
    result = cli("report", run_copy, "--data-root", tiny.data, *CPU)
    assert "no metrics.json" in result.output
    _, md = check_output(run_copy / "report")
    assert "vgg16_bn_slim" in md  # configuration from the checkpoint
    assert (run_copy / "report" / "figures" / "checkpoint_roc.png").is_file()
    assert "curves_metrics.png" not in md


def test_report_with_damaged_metrics(tiny: TinyRun, run_copy: Path):
    (run_copy / "metrics.json").write_text("{ not json")
    result = cli("report", run_copy, "--no-eval", *CPU)
    assert "metrics.json cannot be read" in result.output
    check_output(run_copy / "report")


def test_report_refuses_a_folder_that_is_no_run(tmp_path: Path):
    result = cli("report", tmp_path, ok=False)
    assert isinstance(result.exception, UserError)
    assert "not a run folder" in str(result.exception)


def test_rerun_replaces_stale_figures(tiny: TinyRun, run_copy: Path):
    out = run_copy / "report"
    cli("report", run_copy, "--data-root", tiny.data, *CPU)
    assert (out / "figures" / "checkpoint_roc.png").is_file()
    cli("report", run_copy, "--no-eval", *CPU)
    assert not (out / "figures" / "checkpoint_roc.png").exists()
    check_output(out)


# ------------------------------------------------------------------------- explain
def test_explain_writes_one_figure_per_image(tiny: TinyRun, tmp_path: Path):
    images = tiny.images(2)
    cli("explain", "--checkpoint", tiny.checkpoint, *images, "--out", tmp_path, *CPU)
    for image in images:
        assert png_size(tmp_path / f"{image.stem}_gradcam.png") == (1300, 440)


def test_explain_wrong_channels_is_named_and_others_still_drawn(tiny: TinyRun, tmp_path: Path):
    grey = sorted((tiny.data / "IQAD_CT" / "Images").glob("*.png"))[0]
    good = tiny.images(2)[1]  # a stem the grey file does not share
    result = cli(
        "explain", "--checkpoint", tiny.checkpoint, grey, good, "--out", tmp_path, *CPU, ok=False
    )
    assert isinstance(result.exception, UserError)
    assert "greyscale image in a 3-channel" in str(result.exception) and grey.name in str(
        result.exception
    )
    assert png_size(tmp_path / f"{good.stem}_gradcam.png") == (1300, 440)
    assert not (tmp_path / f"{grey.stem}_gradcam.png").exists()


def test_explain_a_baseline_without_quality_branch(tiny: TinyRun, tmp_path: Path):
    cfg = load_checkpoint(tiny.checkpoint).cfg.model_copy(deep=True)
    cfg.method = "vanilla"
    path = save_checkpoint(tmp_path / "vanilla.ckpt", build_models(cfg), cfg)
    image = tiny.images(1)[0]
    cli("explain", "--checkpoint", path, image, "--out", tmp_path / "x", *CPU)
    assert png_size(tmp_path / "x" / f"{image.stem}_gradcam.png") == (1300, 440)


# --------------------------------------------------------------------------- embed
def test_embed_draws_both_maps(tiny: TinyRun, tmp_path: Path):
    out = tmp_path / "tsne.png"
    cli(
        "embed",
        "--checkpoint",
        tiny.checkpoint,
        "--dataset",
        "EYEQ",
        "--data-root",
        tiny.data,
        "--split",
        "train",
        "--out",
        out,
        *CPU,
    )
    assert png_size(out) == (1300, 560)


def test_embed_without_meta_learner_still_draws_features(tiny: TinyRun, tmp_path: Path):
    ck = load_checkpoint(tiny.checkpoint)
    path = save_checkpoint(tmp_path / "task_only.ckpt", ModelBundle(ck.bundle.task_net), ck.cfg)
    out = tmp_path / "tsne.png"
    result = cli(
        "embed",
        "--checkpoint",
        path,
        "--dataset",
        "EYEQ",
        "--data-root",
        tiny.data,
        "--out",
        out,
        *CPU,
    )
    assert "no Meta Learner in this checkpoint" in result.output
    assert png_size(out) == (1300, 560)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset", "IQAD_CT"], "checkpoint is for dataset EYEQ, not IQAD_CT"),
        (["--dataset", "EYEQ", "--split", "nope"], "has no 'nope' split"),
    ],
)
def test_embed_bad_input(tiny: TinyRun, tmp_path: Path, args: list[str], message: str):
    result = cli(
        "embed",
        "--checkpoint",
        tiny.checkpoint,
        "--data-root",
        tiny.data,
        "--out",
        tmp_path / "t.png",
        *args,
        *CPU,
        ok=False,
    )
    assert isinstance(result.exception, UserError) and message in str(result.exception)
    assert "\n" not in str(result.exception)


def test_embed_needs_a_png_name(tiny: TinyRun, tmp_path: Path):
    result = cli(
        "embed",
        "--checkpoint",
        tiny.checkpoint,
        "--dataset",
        "EYEQ",
        "--data-root",
        tiny.data,
        "--out",
        tmp_path / "t.jpg",
        ok=False,
    )
    assert ".png" in str(result.exception)


def test_copy_of_run_is_independent(tiny: TinyRun, run_copy: Path):
    """Guard for the fixtures: damaging the copy leaves the shared run intact."""
    shutil.rmtree(run_copy)
    assert (tiny.run / "metrics.json").is_file()


def test_report_with_a_wrong_data_root_draws_the_rest(
    tiny: TinyRun, run_copy: Path, tmp_path: Path
):
    result = cli("report", run_copy, "--data-root", tmp_path / "nothing", *CPU)
    assert "evaluating best.ckpt failed" in result.output
    _, md = check_output(run_copy / "report")
    assert "curves_metrics.png" in md and "checkpoint_roc.png" not in md
