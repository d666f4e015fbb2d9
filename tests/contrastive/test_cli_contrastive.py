"""`fediqad pretrain`, `train --init-encoder` and `bench pretrain-step` end to end, and
their bad input ending as one clear error."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from fediqad.commands import contrastive, core
from shared.checkpoint import load_checkpoint
from shared.contrastive.transfer import read_encoder
from shared.errors import UserError
from tests.support.cli import cli_for

TINY = ["--backbone", "vgg16_bn_slim", "--image-size", "64", "--device", "cpu", "--threads", "2"]
TINY += ["--set", "contrastive.patch_size=16"]  # 16 px of the 64 px files (paper: 128)


cli = cli_for(core.register, contrastive.register)
user_error = cli.user_error


def test_pretrain_then_finetune(synth_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "pt"
    result = cli(
        "pretrain",
        "--dataset",
        "EYEQ",
        "--data-root",
        synth_root,
        *TINY,
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "--out",
        out,
    )
    assert "lesions.csv" in result.output and "L~" in result.output
    assert "lesion box source: annotations (lesions.csv)" in result.output
    assert "no projection head" in result.output
    enc = read_encoder(out / "encoder.pt")
    history = json.loads((out / "pretrain.json").read_text())
    assert history["box_source"] == "annotations" and len(history["epochs"]) == 1
    assert history["encoder"] == "vgg16_bn_slim"
    assert history["patches"]["L"] > 0 and history["config"]["contrastive"]["tau"] == 0.07
    assert "already holds" in user_error(
        "pretrain", "--data-root", synth_root, *TINY, "--epochs", "1", "--out", out
    )
    run = tmp_path / "ft"
    cli(
        "train",
        "--dataset",
        "EYEQ",
        "--data-root",
        synth_root,
        *TINY,
        "--method",
        "vanilla",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--init-encoder",
        out / "encoder.pt",
        "--out",
        run,
    )
    ck = load_checkpoint(run / "best.ckpt")
    assert ck.cfg.model.pretrained_weights == out / "encoder.pt"
    msg = user_error(
        "train",
        "--dataset",
        "EYEQ",
        "--data-root",
        synth_root,
        "--backbone",
        "resnet18",
        "--image-size",
        "64",
        "--epochs",
        "1",
        "--init-encoder",
        out / "encoder.pt",
        "--out",
        tmp_path / "x",
    )
    assert "vgg16_bn_slim" in msg and "resnet18" in msg
    assert not (tmp_path / "x").exists()
    assert torch.is_tensor(next(iter(enc.state_dict.values())))


def test_ablation_flags_reach_the_config(synth_root: Path, tmp_path: Path) -> None:
    cli(
        "pretrain",
        "--data-root",
        synth_root,
        *TINY,
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--no-multi-level",
        "--no-mining",
        "--tau",
        "0.2",
        "--out",
        tmp_path,
    )
    c = read_encoder(tmp_path / "encoder.pt").config["contrastive"]
    assert (c["multi_level"], c["hard_mining"], c["tau"]) == (False, False, 0.2)


def test_fallback_and_bad_box_sources(synth_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(synth_root / "EYEQ", root / "EYEQ", symlinks=True)
    (root / "EYEQ" / "lesions.csv").unlink()
    result = cli(
        "pretrain",
        "--data-root",
        root,
        *TINY,
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--out",
        tmp_path / "p",
    )
    assert result.output.count("proposal fallback") == 1
    assert "lesion box source: proposals (unsupervised heuristic fallback" in result.output
    history = json.loads((tmp_path / "p" / "pretrain.json").read_text())
    assert history["box_source"] == "proposals" and "heuristic" in history["box_source_label"]
    (tmp_path / "det.pt").write_bytes(b"garbage")
    assert "detector checkpoint" in user_error(
        "pretrain",
        "--data-root",
        root,
        *TINY,
        "--detector",
        tmp_path / "det.pt",
        "--out",
        tmp_path / "q",
    )
    assert "at most one" in user_error(
        "pretrain",
        "--data-root",
        root,
        *TINY,
        "--lesions",
        tmp_path / "a.csv",
        "--detector",
        tmp_path / "det.pt",
    )
    assert "not found" in user_error(
        "pretrain",
        "--data-root",
        root,
        *TINY,
        "--lesions",
        tmp_path / "none.csv",
        "--out",
        tmp_path / "r",
    )


def test_no_term_possible_is_a_user_error(synth_root: Path, tmp_path: Path) -> None:
    # every image relabelled healthy HQ: no lesion patches, no loss term
    root = tmp_path / "root"
    shutil.copytree(synth_root / "EYEQ", root / "EYEQ", symlinks=True)
    lines = (root / "EYEQ" / "train.txt").read_text().splitlines()
    rows = [lines[0]] + [",".join(line.split(",")[:-2] + ["0", "0"]) for line in lines[1:]]
    (root / "EYEQ" / "train.txt").write_text("\n".join(rows) + "\n")
    result = cli(
        "pretrain", "--data-root", root, *TINY, "--epochs", "1", "--out", tmp_path, ok=False
    )
    assert isinstance(result.exception, UserError)
    assert "no loss term" in str(result.exception)
    assert result.output.count("is skipped") == 3


def test_bench_pretrain_step() -> None:
    result = cli("bench", "pretrain-step", "--batch", "8", "--repeats", "1")
    assert "patches / s" in result.output and "vgg16_bn_slim" in result.output


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_bench_pretrain_step_gpu() -> None:
    result = cli("bench", "pretrain-step", "--device", "cuda", "--batch", "64")
    assert "cuda" in result.output


def test_evidence_command_writes_its_table(tmp_path: Path) -> None:
    result = cli(
        "bench",
        "comcl-evidence",
        "--out",
        tmp_path,
        "--n",
        "30",
        "--ratios",
        "1.0",
        "--pretrain-epochs",
        "1",
        "--finetune-epochs",
        "1",
    )
    doc = json.loads((tmp_path / "evidence.json").read_text())
    assert [r["variant"] for r in doc["rows"]] == [
        "from scratch",
        "basic contrastive",
        "CoMCL w/o mining",
        "CoMCL",
    ]
    assert all(r["lq_ratio"] == 1.0 for r in doc["rows"])
    table = (tmp_path / "evidence.md").read_text()
    assert "100 % LQ kappa / ACC" in table and "| CoMCL |" in table
    assert "100 % LQ kappa / ACC" in result.output
    assert "ratios" in user_error("bench", "comcl-evidence", "--ratios", "a,b")
