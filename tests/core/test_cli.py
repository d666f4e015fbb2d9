"""End to end: train / evaluate / predict / import-reference on tiny synthetic data,
and every bad input ending as one clear line with exit code 2."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fediqad.commands import core
from shared.checkpoint import load_checkpoint
from tests.support.cli import CPU, TINY, cli_for

REPO = Path(__file__).resolve().parents[2]


cli = cli_for(core.register)
user_error = cli.user_error


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Synthetic EYEQ and DRAC (24 / 16 images, 32 px) and one 2-epoch MKCNet run."""
    from shared.data.synth import synthesize

    root = tmp_path_factory.mktemp("cli")
    synthesize("EYEQ", 24, 32, root / "data", seed=0)
    synthesize("DRAC", 16, 32, root / "data", seed=0)
    cli("train", "--dataset", "EYEQ", "--data-root", root / "data", *TINY, *CPU,
        "--epochs", "2", "--seed", "1", "--out", root / "run")  # fmt: skip
    return root


def test_train_writes_checkpoints_and_history(env):
    run = env / "run"
    history = json.loads((run / "metrics.json").read_text())
    assert [e["epoch"] for e in history["epochs"]] == [1, 2]
    assert history["eval_split"] == "val" and history["selection"] == "best val AUC"
    assert history["test"]["n"] == pytest.approx(sum(1 for _ in open_rows(env, "EYEQ", "test")))
    assert {"loss_diagnosis", "lr", "examples"} <= set(history["epochs"][0]["train"])
    best, last = load_checkpoint(run / "best.ckpt"), load_checkpoint(run / "last.ckpt")
    assert last.epoch == 2 and best.epoch == history["best_epoch"]
    assert best.cfg.method == "mkcnet" and best.bundle.meta_learner is not None
    assert "optimizer" in last.extra and "optimizer" not in best.extra
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]
    assert "| epochs run | 2 |" in (run / "report.md").read_text()
    assert (run / "index.html").is_file()


def test_an_interrupted_train_keeps_its_report(env, tmp_path):
    """Ctrl-C after epoch 1 of 3: checkpoints, metrics.json and the report of epoch 1."""
    from shared.training.central import EpochHooks
    from shared.training.start import start_training

    def stop(epoch, metrics):
        raise KeyboardInterrupt

    flags = {"model.backbone": "vgg16_bn_slim", "image_size": 32, "optim.batch_size": 8}
    flags |= {"optim.epochs": 3, "device": "cpu", "model.width": 0.125}
    run = start_training(env / "data", dataset="EYEQ", flags=flags, out=tmp_path / "run")
    with pytest.raises(KeyboardInterrupt):
        run.run(EpochHooks(end_epoch=stop))
    history = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert [e["epoch"] for e in history["epochs"]] == [1]
    report = (tmp_path / "run" / "report.md").read_text()
    assert "| epochs run | 1 |" in report and (tmp_path / "run" / "last.ckpt").is_file()


def open_rows(env: Path, name: str, split: str):
    lines = (env / "data" / name / f"{split}.txt").read_text().splitlines()[1:]
    return [line for line in lines if line.strip()]


def test_refuses_to_overwrite_then_resumes(env):
    run = env / "run"
    before = (run / "best.ckpt").read_bytes()
    msg = user_error("train", "--dataset", "EYEQ", "--data-root", env / "data", *TINY, *CPU,
                     "--epochs", "1", "--out", run)  # fmt: skip
    assert msg.startswith(str(run)) and "--resume" in msg
    assert (run / "best.ckpt").read_bytes() == before
    msg = user_error("train", "--data-root", env / "data", "--out", run, "--resume",
                     "--lr", "0.1")  # fmt: skip
    assert "stored config" in msg and "--lr" in msg
    # the original command again, with more epochs, continues where it stopped
    result = cli("train", "--dataset", "EYEQ", "--data-root", env / "data", *TINY, *CPU,
                 "--epochs", "3", "--seed", "1", "--out", run, "--resume")  # fmt: skip
    assert f"resuming {run} at epoch 3 of 3" in result.stdout.replace("\n", " ")
    history = json.loads((run / "metrics.json").read_text())
    assert [e["epoch"] for e in history["epochs"]] == [1, 2, 3]
    assert load_checkpoint(run / "last.ckpt").epoch == 3


def test_train_only_dataset_reports_last_epoch(env):
    out = env / "drac"
    result = cli("train", "--dataset", "DRAC", "--data-root", env / "data", *TINY, *CPU,
                 "--method", "vanilla", "--epochs", "2", "--out", out)  # fmt: skip
    history = json.loads((out / "metrics.json").read_text())
    assert history["eval_split"] == "train" and history["selection"] == "last epoch"
    assert history["best_epoch"] == 2 and history["test"] is None
    assert "selected by last epoch" in result.stdout
    # a model without a quality head: empty quality column, no quality probabilities
    image = sorted((env / "data" / "DRAC" / "Images").glob("*.png"))[0]
    text = cli("predict", "--checkpoint", out / "best.ckpt", image, *CPU).stdout
    head, row = list(csv.reader(io.StringIO(text)))
    assert head == ["image", "diagnosis", "quality"] + [f"prob_diagnosis_{k}" for k in range(3)]
    assert row[2] == ""


def test_evaluate_table_and_json(env):
    ckpt = env / "run" / "best.ckpt"
    result = cli("evaluate", "--checkpoint", ckpt, "--dataset", "eyeq", "--data-root",
                 env / "data", "--json", *CPU)  # fmt: skip
    doc = json.loads(result.stdout)
    assert doc["split"] == "test" and doc["dataset"] == "EYEQ"
    m = doc["metrics"]
    assert m["n"] == m["n_hq"] + m["n_lq"] == len(open_rows(env, "EYEQ", "test"))
    assert {"auc", "acc", "f1", "kappa", "auc_lq", "quality_acc", "auc_hard_compat"} <= set(m)
    result = cli("evaluate", "--checkpoint", ckpt, "--dataset", "EYEQ", "--data-root",
                 env / "data", "--split", "val", *CPU)  # fmt: skip
    assert "AUC" in result.stdout and "LQ" in result.stdout and "compatibility" in result.stdout


def test_predict_csv(env):
    images = sorted((env / "data" / "EYEQ" / "Images").glob("*.png"))[:3]
    out = env / "preds.csv"
    cli("predict", "--checkpoint", env / "run" / "best.ckpt", *images, "--out", out, *CPU)
    rows = list(csv.DictReader(out.open()))
    assert [r["image"] for r in rows] == [str(p) for p in images]
    assert list(rows[0]) == [
        "image", "diagnosis", "quality", "prob_diagnosis_0", "prob_diagnosis_1",
        "prob_diagnosis_2", "prob_quality_0", "prob_quality_1", "prob_quality_2",
    ]  # fmt: skip
    for r in rows:
        probs = [float(r[f"prob_diagnosis_{k}"]) for k in range(3)]
        assert sum(probs) == pytest.approx(1.0, abs=1e-5)
        assert r["diagnosis"] == ["NoDR", "NPDR", "PDR"][probs.index(max(probs))]
        assert r["quality"] in ("HQ", "LQ-U", "LQ-P")
    to_stdout = cli("predict", "--checkpoint", env / "run" / "best.ckpt", images[0], *CPU)
    assert list(csv.reader(io.StringIO(to_stdout.stdout)))[1][0] == str(images[0])


def test_import_reference_cli(env, tmp_path):
    # a slim model's weights are not the authors' full VGG16-BN: named mismatch, exit 2
    from shared.models import build_models
    from tests.support.configs import tiny_config

    slim = tmp_path / "best_model.pth"
    torch.save(build_models(tiny_config()).task_net.state_dict(), slim)
    msg = user_error("import-reference", "--dataset", "EYEQ", "--task-net", slim,
                     "--out", tmp_path / "m.ckpt")  # fmt: skip
    assert msg.startswith(str(slim))
    assert "'model.block1.0.weight' has shape (8, 3, 3, 3), EYEQ needs (64, 3, 3, 3)" in msg
    assert "first conv has 8 filters" in msg
    exists = tmp_path / "exists.ckpt"
    exists.write_text("keep me")
    msg = user_error("import-reference", "--dataset", "EYEQ", "--task-net", slim,
                     "--out", exists)  # fmt: skip
    assert "--force" in msg and exists.read_text() == "keep me"


# ---------------------------------------------------------------- bad inputs
def test_bad_data_root_and_split_files(env, tmp_path):
    base = ["train", "--dataset", "EYEQ", *TINY, *CPU, "--epochs", "1"]
    msg = user_error(*base, "--data-root", tmp_path / "nowhere", "--out", tmp_path / "o1")
    assert str(tmp_path / "nowhere") in msg and "not found" in msg
    msg = user_error(*base, "--data-root", tmp_path, "--out", tmp_path / "o2")
    assert "EYEQ" in msg
    data = tmp_path / "data"
    (data / "EYEQ").mkdir(parents=True)
    msg = user_error(*base, "--data-root", data, "--out", tmp_path / "o3")
    assert "train.txt" in msg or "split" in msg


def _copy_dataset(env: Path, tmp_path: Path, name: str = "EYEQ") -> Path:
    import shutil

    shutil.copytree(env / "data" / name, tmp_path / "data" / name, symlinks=True)
    return tmp_path / "data" / name


def test_label_out_of_range_names_file_and_line(env, tmp_path):
    folder = _copy_dataset(env, tmp_path)
    lines = (folder / "train.txt").read_text().splitlines()
    name = lines[3].split(",")[0]
    lines[3] = f"{name},7,0"
    (folder / "train.txt").write_text("\n".join(lines) + "\n")
    msg = user_error("train", "--dataset", "EYEQ", "--data-root", tmp_path / "data", *TINY,
                     *CPU, "--epochs", "1", "--out", tmp_path / "o")  # fmt: skip
    assert msg.startswith(f"{folder / 'train.txt'}:4:") and "7" in msg


def test_corrupt_image_names_the_file(env, tmp_path):
    folder = _copy_dataset(env, tmp_path)
    first = (folder / "train.txt").read_text().splitlines()[1].split(",")[0]
    target = folder / first
    target.unlink(missing_ok=True)
    target.write_bytes(b"not a png at all")
    for workers in ("0", "1"):  # a DataLoader worker's error comes back as one line too
        msg = user_error("train", "--dataset", "EYEQ", "--data-root", tmp_path / "data", *TINY,
                         *CPU, "--epochs", "1", "--out", tmp_path / f"o{workers}",
                         "--set", f"num_workers={workers}")  # fmt: skip
        assert first.split("/")[-1] in msg and "cannot read image" in msg
        assert not (tmp_path / f"o{workers}" / "best.ckpt").exists()


def test_wrong_channels(env, tmp_path):
    drac_image = sorted((env / "data" / "DRAC" / "Images").glob("*.png"))[0]
    msg = user_error("predict", "--checkpoint", env / "run" / "best.ckpt", drac_image, *CPU)
    assert msg.startswith(str(drac_image)) and "greyscale" in msg
    garbage = tmp_path / "x.png"
    garbage.write_bytes(b"\x89PNG broken")
    msg = user_error("predict", "--checkpoint", env / "run" / "best.ckpt", garbage, *CPU)
    assert msg.startswith(str(garbage))
    msg = user_error("predict", "--checkpoint", env / "run" / "best.ckpt", tmp_path / "no.png")
    assert msg.startswith(str(tmp_path / "no.png"))


def test_checkpoint_of_another_dataset_or_not_a_checkpoint(env, tmp_path):
    ckpt = env / "run" / "best.ckpt"
    msg = user_error("evaluate", "--checkpoint", ckpt, "--dataset", "DRAC", "--data-root",
                     env / "data")  # fmt: skip
    assert msg == f"{ckpt}: checkpoint is for dataset EYEQ, not DRAC"
    bogus = tmp_path / "bogus.ckpt"
    bogus.write_text("hello")
    msg = user_error("evaluate", "--checkpoint", bogus, "--dataset", "EYEQ", "--data-root",
                     env / "data")  # fmt: skip
    assert msg.startswith(f"{bogus}: not a readable fediqad checkpoint")


def test_bad_config_values(env, tmp_path):
    base = ["train", "--dataset", "EYEQ", "--data-root", env / "data", *CPU]
    msg = user_error(*base, "--image-size", "33", "--out", tmp_path / "o")
    assert msg == "--image-size: must be a multiple of 32 (five 2x poolings), got 33"
    msg = user_error(*base, "--method", "mkcnt", "--out", tmp_path / "o")
    assert msg.startswith("--method: 'mkcnt' is not one of mkcnet, ")
    assert msg.endswith("did you mean 'mkcnet'?")
    msg = user_error(*base, "--epochs", "0", "--out", tmp_path / "o")
    assert msg == "--epochs: input should be greater than or equal to 1, got 0"
    if not torch.cuda.is_available():
        msg = user_error(*base, *TINY, "--device", "cuda", "--out", tmp_path / "o")
        assert "CUDA is not available" in msg


def test_real_entry_point_prints_one_line_and_exits_2(env):
    """Through `python -m fediqad`: exit code 2, one line on stderr, no traceback."""
    ckpt = str(env / "run" / "best.ckpt")
    cmd = [sys.executable, "-m", "fediqad", "evaluate", "--checkpoint", ckpt,
           "--dataset", "DRAC", "--data-root", str(env / "data")]  # fmt: skip
    envvars = {**os.environ, "FEDIQAD_CACHE_DIR": str(env / "cache"), "COLUMNS": "200"}
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=envvars, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert errors == [f"error: {ckpt}: checkpoint is for dataset EYEQ, not DRAC"]
    assert "Traceback" not in proc.stderr
