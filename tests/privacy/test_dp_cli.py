"""`fediqad train` / `fediqad simulate` with DP flags: the flags reach the config, DP
training still learns (synthetic CT, epsilon 8), epsilon lands in the checkpoint, and
bad combinations end in one line."""

from __future__ import annotations

import json

import pytest
from opacus.accountants import RDPAccountant

from fediqad.commands import bench_steps, core, federation
from shared.checkpoint import load_checkpoint, read_payload
from shared.errors import UserError
from tests.support.cli import CPU, cli_for

cli = cli_for(core.register)
DP_RUN = [
    "--dataset",
    "IQAD_CT",
    "--method",
    "vanilla",
    "--backbone",
    "vgg16_bn_slim",
    "--width",
    "0.125",
    "--image-size",
    "32",
    "--batch-size",
    "64",
    "--lr",
    "0.1",
    "--set",
    "optim.momentum=0.9",
    "--set",
    "optim.weight_decay=0",
    "--seed",
    "3",
]


@pytest.fixture(scope="module")
def ct_root(tmp_path_factory):
    """1500 synthetic CT images at 32 px (DP needs data: noise is averaged over a batch)."""
    from shared.data.synth import synthesize

    root = tmp_path_factory.mktemp("dp-cli")
    synthesize("IQAD_CT", 1500, 32, root / "data", seed=0)
    return root


_error = cli.user_error


@pytest.mark.timeout(600)  # ~20 s alone; generous for a loaded 2-core machine
def test_dp_training_learns_at_epsilon_8_and_records_its_epsilon(ct_root):
    out = ct_root / "run"
    result = cli(
        "train",
        "--data-root",
        ct_root / "data",
        *DP_RUN,
        *CPU,
        "--epochs",
        "6",
        "--dp",
        "sample",
        "--target-epsilon",
        "8",
        "--delta",
        "1e-4",
        "--max-grad-norm",
        "1.0",
        "--out",
        out,
    )
    assert "differential privacy: epsilon" in result.stdout
    history = json.loads((out / "metrics.json").read_text())
    assert history["test"]["auc"] > 0.7  # chance is 0.5; about 0.9 at the time of writing
    last = load_checkpoint(out / "last.ckpt")
    pc = last.cfg.privacy
    assert (pc.mode, pc.target_epsilon, pc.delta, pc.max_grad_norm) == ("sample", 8.0, 1e-4, 1.0)
    privacy = last.extra["privacy"]
    assert 7.5 < privacy["dp_epsilon"] <= 8.0
    acc = RDPAccountant()
    for sigma, q, steps in privacy["history"]:
        for _ in range(steps):
            acc.step(noise_multiplier=sigma, sample_rate=q)
    assert privacy["dp_epsilon"] == pytest.approx(acc.get_epsilon(delta=1e-4), rel=1e-9)
    epochs = [e["train"]["dp_epsilon"] for e in history["epochs"]]
    assert epochs == sorted(epochs) and epochs[-1] == pytest.approx(privacy["dp_epsilon"])
    best = read_payload(out / "best.ckpt")
    assert best["extra"]["privacy"]["dp_epsilon"] <= privacy["dp_epsilon"]
    assert not any("running_mean" in k for k in last.bundle.task_net.state_dict())


def test_train_refuses_dp_settings_without_a_guarantee(ct_root):
    base = [
        "train",
        "--data-root",
        ct_root / "data",
        *DP_RUN,
        *CPU,
        "--epochs",
        "1",
        "--out",
        ct_root / "bad",
        "--force",
    ]
    assert "--noise-multiplier or --target-epsilon" in _error(*base, "--dp", "sample")
    assert "1/n" in _error(*base, "--dp", "sample", "--noise-multiplier", "1", "--delta", "0.01")
    assert "simulate" in _error(*base, "--dp", "client")
    assert "choose off, sample or client" in _error(*base, "--dp", "maybe")
    assert "delta" in _error(*base, "--dp", "sample", "--noise-multiplier", "1", "--delta", "2")


def test_simulate_flags_reach_the_federation_config(monkeypatch, tmp_path):
    import simulations.federated as federated
    import simulations.scenarios as scenarios

    seen = {}

    def fake_run(fed, sites, res, verbose=False, **kw):
        seen.update(fed=fed, **kw)
        raise UserError("stop here")

    monkeypatch.setattr(federated, "run_federated_simulation", fake_run)
    from client.site import Site

    sites = [Site("hospital-a", tmp_path), Site("hospital-b", tmp_path)]
    monkeypatch.setattr(scenarios, "default_sites", lambda *a, **k: (sites, tmp_path))
    sim = cli_for(federation.register)
    result = sim(
        "simulate",
        "--out",
        tmp_path,
        "--dp",
        "sample",
        "--target-epsilon",
        "3",
        "--delta",
        "1e-6",
        "--max-grad-norm",
        "0.5",
        "--site-epsilon-budget",
        "hospital-b=1.5",
        ok=False,
    )
    assert str(result.exception) == "stop here"
    pc = seen["fed"].run.privacy
    assert (pc.mode, pc.target_epsilon, pc.delta, pc.max_grad_norm) == ("sample", 3.0, 1e-6, 0.5)
    assert seen["epsilon_budgets"] == {"hospital-b": 1.5}
    result = sim(
        "simulate",
        "--out",
        tmp_path,
        "--name",
        "typo",
        "--dp",
        "sample",
        "--noise-multiplier",
        "1",
        "--site-epsilon-budget",
        "hospital-z=1",
        ok=False,
    )
    assert "no site named hospital-z" in str(result.exception)
    result = sim(
        "simulate",
        "--out",
        tmp_path,
        "--name",
        "c",
        "--dp",
        "client",
        "--noise-multiplier",
        "0.8",
        "--max-grad-norm",
        "2",
        ok=False,
    )
    fed = seen["fed"]
    assert fed.run.privacy.mode == "client" and fed.client_dp
    assert (fed.dp_noise_multiplier, fed.dp_clipping_norm) == (0.8, 2.0)
    result = sim(
        "simulate",
        "--out",
        tmp_path,
        "--name",
        "p",
        "--dp",
        "sample",
        "--noise-multiplier",
        "1",
        "--pretrain-rounds",
        "1",
        ok=False,
    )
    assert "--dp client" in str(result.exception) and "\n" not in str(result.exception)


def test_bench_dp_step_prints_the_ratio(monkeypatch):
    import shared.training_bench as bench

    calls = []

    def fake(image_size, batch, threads, backbone, device, repeats):
        calls.append((image_size, batch, threads, backbone, device, repeats))
        return [bench.DPBenchRow("Task Net (stage I)", 0.5, 1.25, 0.4)]

    monkeypatch.setattr(bench, "run_dp_bench", fake)
    result = cli_for(bench_steps.register)(
        "bench", "dp-step", "--backbone", "vgg16_bn_slim", "--repeats", "2"
    )
    assert calls == [(64, 8, 2, "vgg16_bn_slim", "cpu", 2)]
    assert "2.50x" in result.stdout
