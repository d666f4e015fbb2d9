"""`fediqad table2`: every chosen method trained with the preset, our numbers beside
the paper's, finished runs reused; `fediqad methods` lists the registry."""

from __future__ import annotations

import json

import pytest

from fediqad.commands import methods as methods_commands
from shared.errors import UserError
from shared.methods import list_methods
from shared.report.paper_table2 import paper_rows
from shared.training.table2 import run_table2
from tests.conftest import cli_for

pytestmark = pytest.mark.timeout(900)

TINY = {
    "optim.epochs": 1,
    "image_size": 32,
    "model.backbone": "vgg16_bn_slim",
    "model.width": 0.125,
    "optim.batch_size": 16,
    "threads": 1,
    "device": "cpu",
}


@pytest.fixture(scope="module")
def ct_root(tmp_path_factory):
    from shared.data.synth import synthesize

    root = tmp_path_factory.mktemp("table2")
    synthesize("IQAD_CT", 60, 32, root, seed=1)
    return root


def test_grid_writes_ours_beside_the_papers_and_reuses_finished_runs(ct_root, tmp_path):
    out = tmp_path / "grid"
    said: list[str] = []
    paper = dict(paper_rows("IQAD_CT"))
    result = run_table2(
        ct_root, "IQAD_CT", out, methods=["vanilla", "canet"], paper=paper, flags=TINY,
        say=said.append,
    )  # fmt: skip
    assert [r.method for r in result.rows] == ["vanilla", "canet"]
    canet = result.rows[1]
    assert canet.paper == paper["CANet"] and result.rows[0].paper is None  # no Vanilla row
    assert 0.0 <= canet.ours["auc_hard_compat"] <= 1.0
    text = (out / "table2.md").read_text()
    assert "| canet | CANet |" in text and "93.36" in text  # the paper's CT AUC for CANet
    assert "AUC (hard, as the paper)" in text  # binary task: the paper's definition
    doc = json.loads((out / "table2.json").read_text())
    assert doc["rows"][1]["ours"]["acc"] == pytest.approx(canet.ours["acc"])
    # a second call trains nothing: both runs are finished
    said.clear()
    again = run_table2(
        ct_root, "IQAD_CT", out, methods=["vanilla", "canet"], flags=TINY, say=said.append
    )
    assert all(line.startswith("reusing") for line in said) and len(said) == 2
    assert again.rows[1].ours == canet.ours


def test_unknown_method_is_one_line_before_any_training(tmp_path):
    cli = cli_for(methods_commands.register)
    result = cli(
        "table2",
        "--data-root",
        tmp_path,
        "--dataset",
        "IQAD_CT",
        "--methods",
        "canet,mtmr",
        ok=False,
    )
    assert isinstance(result.exception, UserError)
    assert "unknown method 'mtmr'" in str(result.exception)
    assert not (tmp_path / "IQAD_CT").exists()


def test_methods_lists_the_registry():
    cli = cli_for(methods_commands.register)
    result = cli("methods")
    for name in list_methods():
        assert name in result.stdout
