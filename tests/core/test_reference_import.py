"""Importing the MKCNet authors' checkpoints, checked against the reference key listing.

For each dataset a random state dict is made from `mkcnet_state_dict_keys.tsv` (names
and shapes of the authors' Task Net / Meta Learner), imported, and the imported
models' outputs are compared with an independent functional re-implementation of the
authors' forward written here with F.conv2d / F.batch_norm on the raw tensors.

The authors index quality by split-file code, we by canonical quality (0 = HQ), so
their quality logits and joint-class blocks are compared after that permutation.

The TSV's IQAD_CXR Meta Learner listing is truncated (56 of its 95 rows); the rows it
has are checked, the missing ones are filled from our model's shapes.
"""

from __future__ import annotations

import csv
import re

import pytest
import torch
import torch.nn.functional as F

from shared.checkpoint import load_checkpoint
from shared.config import preset
from shared.data.labels import file_quality_codes
from shared.errors import UserError
from shared.reference_files import reference_file
from shared.reference_import import import_reference, load_reference, reference_config

DATASETS = ["EYEQ", "DEEPDR", "DRAC", "IQAD_CT", "IQAD_CXR"]
TRUNCATED = {("IQAD_CXR", "meta_learner")}
SIZE = 32


def _listing() -> dict[tuple[str, str], dict[str, tuple[int, ...]]]:
    path = reference_file("mkcnet_state_dict_keys.tsv")
    out: dict[tuple[str, str], dict[str, tuple[int, ...]]] = {}
    with path.open() as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            shape = (
                () if row["shape"] == "scalar" else tuple(int(s) for s in row["shape"].split("x"))
            )
            out.setdefault((row["dataset"], row["network"]), {})[row["key"]] = shape
    return out


@pytest.fixture(scope="module", autouse=True)
def skip_random_init():
    """Full-width VGGs are built many times here and every tensor is then overwritten by a
    strict load_state_dict, so their random init is skipped (a third of the file's time)."""
    with pytest.MonkeyPatch.context() as mp:
        for name in ("kaiming_uniform_", "xavier_uniform_", "uniform_"):
            mp.setattr(torch.nn.init, name, lambda tensor, *a, **k: tensor)
        yield


@pytest.fixture(scope="module")
def listing():
    return _listing()


@pytest.fixture(scope="module")
def models():
    """Our reference-architecture models, built once per dataset (full VGG16-BN widths)."""
    from shared.models import build_models

    torch.manual_seed(0)
    return {name: build_models(reference_config(name)) for name in DATASETS}


def _random_tensor(key: str, shape: tuple[int, ...], g: torch.Generator) -> torch.Tensor:
    if key.endswith("num_batches_tracked"):
        return torch.tensor(123, dtype=torch.int64)
    if key.endswith("running_var"):
        return torch.rand(shape, generator=g) + 0.5
    if key.endswith("running_mean"):
        return torch.randn(shape, generator=g) * 0.1
    if len(shape) >= 2:  # conv / linear weight: He-scaled so activations stay O(1)
        fan_in = int(torch.tensor(shape[1:]).prod())
        return torch.randn(shape, generator=g) * (2.0 / fan_in) ** 0.5
    if "bn" in key or re.search(r"block\d\.(1|4|7)\.weight$", key):
        return 1 + 0.1 * torch.randn(shape, generator=g)  # BN affine weight
    return 0.05 * torch.randn(shape, generator=g)


def _authors_state(listing, dataset, network, module, seed=0):
    """A random state dict with exactly the listed names and shapes (completed if truncated)."""
    rows = dict(listing[(dataset, network)])
    own = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    if len(rows) < len(own):
        assert (dataset, network) in TRUNCATED, f"unexpectedly short listing {dataset} {network}"
        for key, shape in rows.items():
            assert own.get(key) == shape, f"{dataset} {network} {key}: {own.get(key)} vs {shape}"
        rows = {**own, **rows}
    g = torch.Generator().manual_seed(seed)
    return {key: _random_tensor(key, shape, g) for key, shape in rows.items()}


# --------------------------------------------------- the authors' forward, re-implemented
def _bn(x, s, p):
    return F.batch_norm(
        x,
        s[f"{p}.running_mean"],
        s[f"{p}.running_var"],
        s[f"{p}.weight"],
        s[f"{p}.bias"],
        training=False,
        eps=1e-5,
    )


def _vgg(x, s):
    for block in range(1, 6):
        convs = sorted(
            int(m.group(1))
            for k in s
            if (m := re.fullmatch(rf"model\.block{block}\.(\d+)\.weight", k)) and s[k].ndim == 4
        )
        for j in convs:
            x = F.conv2d(
                x, s[f"model.block{block}.{j}.weight"], s[f"model.block{block}.{j}.bias"], padding=1
            )
            x = F.relu(_bn(x, s, f"model.block{block}.{j + 1}"))
        x = F.max_pool2d(x, 2, 2)
    return F.adaptive_avg_pool2d(x, 1)


def _mlp(v, s, p, first, second):
    hidden = F.relu(F.linear(v, s[f"{p}.{first}.weight"], s[f"{p}.{first}.bias"]))
    return F.linear(hidden, s[f"{p}.{second}.weight"], s[f"{p}.{second}.bias"])


def _channel_gate(x, s, p):
    avg = x.mean(dim=(2, 3))
    mx = x.amax(dim=(2, 3))
    mlp = f"{p}.ChannelGate.mlp"
    scale = torch.sigmoid(_mlp(avg, s, mlp, 1, 3) + _mlp(mx, s, mlp, 1, 3))
    return x * scale[:, :, None, None]


def _spatial_gate(x, s, p):
    compress = torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)
    out = F.conv2d(compress, s[f"{p}.SpatialGate.spatial.conv.weight"], padding=3)
    return x * torch.sigmoid(_bn(out, s, f"{p}.SpatialGate.spatial.bn"))


def _gab(feature, s, index):
    p = f"branch_bam{index}"
    x = _spatial_gate(_channel_gate(feature, s, f"{p}.0"), s, f"{p}.0")
    x = F.adaptive_avg_pool2d(x, 1).flatten(1)
    return F.linear(x, s[f"{p}.3.weight"], s[f"{p}.3.bias"])


def authors_task_net(x, s):
    feature = _vgg(x, s)
    diagnosis, auxiliary, quality = (_gab(feature, s, i) for i in (1, 2, 3))
    gated = _channel_gate(auxiliary[:, :, None, None], s, "branch_cor.0").flatten(1)
    return (
        _mlp(torch.cat([diagnosis, gated], dim=1), s, "classifier1", 0, 2),
        _mlp(auxiliary, s, "classifier2", 0, 2),
        _mlp(quality, s, "classifier3", 0, 2),
    )


def authors_meta_learner(x, joint, s, meta_length):
    logits = _mlp(_vgg(x, s).flatten(1), s, "classifier", 0, 2).double()
    block = torch.arange(logits.shape[1]) // meta_length
    mask = torch.where(block[None, :] == joint[:, None], 1.0, 1e-8).double()
    e = torch.exp(logits - logits.max(dim=1, keepdim=True).values) * mask
    return e / e.sum(dim=1, keepdim=True)


# -------------------------------------------------------------------------- tests
@pytest.mark.parametrize("dataset", DATASETS)
def test_listing_matches_our_reference_architecture(listing, models, dataset):
    for network in ("task_net", "meta_learner"):
        rows = listing[(dataset, network)]
        own = {k: tuple(v.shape) for k, v in getattr(models[dataset], network).state_dict().items()}
        if (dataset, network) in TRUNCATED:
            assert set(rows) < set(own)
            own = {k: own[k] for k in rows}
        assert rows == own, f"{dataset} {network}"
        assert list(rows) == list(own), "same order as the authors' module"


@pytest.mark.parametrize("dataset", DATASETS)
def test_import_matches_authors_forward(listing, models, dataset, tmp_path):
    bundle = models[dataset]
    task_state = _authors_state(listing, dataset, "task_net", bundle.task_net, seed=1)
    meta_state = _authors_state(listing, dataset, "meta_learner", bundle.meta_learner, seed=2)
    # The authors might have trained under DataParallel: their keys then start with module.
    torch.save({f"module.{k}": v for k, v in task_state.items()}, tmp_path / "best_model.pth")
    torch.save(meta_state, tmp_path / "best_model_LG.pth")
    imported, cfg = load_reference(
        dataset, tmp_path / "best_model.pth", tmp_path / "best_model_LG.pth"
    )
    assert cfg == reference_config(dataset)
    ds = preset(dataset).dataset
    codes = file_quality_codes(dataset, ds.num_quality)  # canonical quality -> file code
    length = cfg.model.meta_length

    def file_joint(joint):  # canonical joint class -> the authors' joint class
        return torch.tensor(codes)[joint // ds.num_diagnosis] * ds.num_diagnosis + (
            joint % ds.num_diagnosis
        )

    # the authors' auxiliary/meta rows, reordered into canonical joint-block order
    canonical = torch.arange(ds.joint_classes)
    aux_rows = (file_joint(canonical)[:, None] * length + torch.arange(length)).flatten()

    g = torch.Generator().manual_seed(3)
    x = torch.randn(4, ds.channels, SIZE, SIZE, generator=g)
    joint = torch.arange(4) % ds.joint_classes
    with torch.no_grad():
        ours = imported.task_net(x)
        t_diag, t_aux, t_qual = authors_task_net(x, task_state)
        assert torch.allclose(ours.diagnosis, t_diag, rtol=1e-4, atol=1e-5), dataset
        assert torch.allclose(ours.quality, t_qual[:, codes], rtol=1e-4, atol=1e-5), dataset
        assert torch.allclose(ours.auxiliary, t_aux[:, aux_rows], rtol=1e-4, atol=1e-5)
        assert t_diag.std() > 1e-3, "weights make a non-trivial function"
        y_w = imported.meta_learner(x, joint).double()
        ref = authors_meta_learner(x, file_joint(joint), meta_state, length)[:, aux_rows]
    assert torch.allclose(y_w, ref, rtol=1e-4, atol=1e-7)
    assert torch.allclose(y_w.sum(dim=1), torch.ones(4, dtype=torch.float64))
    assert (cfg.model.backbone, cfg.model.gab, cfg.method) == ("vgg16_bn", "pooled", "mkcnet")


def test_quality_order_of_the_authors_files():
    # EyeQ's split files write 2 for Good (HQ), DeepDR 1 for HQ, IQAD-CXR 0 for HQ child.
    assert file_quality_codes("EYEQ", 3) == [2, 1, 0]
    assert file_quality_codes("DEEPDR", 2) == [1, 0]
    assert file_quality_codes("IQAD_CXR", 3) == [0, 1, 2]


@pytest.fixture(scope="module")
def eyeq_files(listing, models, tmp_path_factory):
    folder = tmp_path_factory.mktemp("eyeq")
    bundle = models["EYEQ"]
    torch.save(_authors_state(listing, "EYEQ", "task_net", bundle.task_net), folder / "t.pth")
    torch.save(
        _authors_state(listing, "EYEQ", "meta_learner", bundle.meta_learner), folder / "m.pth"
    )
    return folder


def test_import_writes_a_checkpoint_that_predicts_the_same(eyeq_files, tmp_path):
    out, cfg = import_reference(
        "EYEQ", eyeq_files / "t.pth", eyeq_files / "m.pth", tmp_path / "model.ckpt"
    )
    ck = load_checkpoint(out, expect=reference_config("EYEQ"))
    assert ck.cfg == cfg
    assert ck.extra["imported_from"]["task_net"].endswith("t.pth")
    assert "canonical" in ck.extra["quality_order"]
    direct, _ = load_reference("EYEQ", eyeq_files / "t.pth", eyeq_files / "m.pth")
    x = torch.randn(2, 3, SIZE, SIZE)
    joint = torch.tensor([0, 8])
    with torch.no_grad():
        for a, b in zip(ck.bundle.task_net(x), direct.task_net(x), strict=True):
            assert (a is None and b is None) or torch.equal(a, b)  # `side`: None for MKCNet
        assert torch.equal(ck.bundle.meta_learner(x, joint), direct.meta_learner(x, joint))


def test_wrong_dataset_names_key_and_guesses_dataset(eyeq_files, tmp_path):
    with pytest.raises(UserError) as err:
        import_reference("DEEPDR", eyeq_files / "t.pth", None, tmp_path / "x.ckpt")
    msg = str(err.value)
    assert msg.startswith(str(eyeq_files / "t.pth"))
    assert "'classifier2.2.weight' has shape (45, 256), DEEPDR needs (42, 256)" in msg
    assert "look like dataset EYEQ" in msg
    assert not (tmp_path / "x.ckpt").exists()


def test_swapped_files_are_recognised(eyeq_files, tmp_path):
    with pytest.raises(
        UserError, match="looks like a meta_learner state dict; pass it with --meta-learner"
    ):
        import_reference("EYEQ", eyeq_files / "m.pth", None, tmp_path / "x.ckpt")


def test_missing_and_unexpected_keys(eyeq_files, tmp_path):
    state = torch.load(eyeq_files / "t.pth", weights_only=True)
    del state["branch_cor.0.ChannelGate.mlp.1.bias"]
    torch.save(state, tmp_path / "missing.pth")
    with pytest.raises(UserError, match="missing key 'branch_cor.0.ChannelGate.mlp.1.bias'"):
        import_reference("EYEQ", tmp_path / "missing.pth", None, tmp_path / "x.ckpt")
    state = torch.load(eyeq_files / "t.pth", weights_only=True)
    state["avgpool.extra"] = torch.zeros(1)
    torch.save(state, tmp_path / "extra.pth")
    with pytest.raises(UserError, match="unexpected key 'avgpool.extra'"):
        import_reference("EYEQ", tmp_path / "extra.pth", None, tmp_path / "x.ckpt")


def test_task_net_only_and_unreadable_files(eyeq_files, tmp_path):
    out, _ = import_reference("EYEQ", eyeq_files / "t.pth", None, tmp_path / "t.ckpt")
    assert load_checkpoint(out).bundle.meta_learner is None
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(UserError, match="bad.pth: cannot read as a torch state dict"):
        import_reference("EYEQ", bad, None, tmp_path / "x.ckpt")
    with pytest.raises(UserError, match="nope.pth: state dict file not found"):
        import_reference("EYEQ", tmp_path / "nope.pth", None, tmp_path / "x.ckpt")
    with pytest.raises(UserError, match="t.ckpt: already a fediqad checkpoint"):
        import_reference("EYEQ", out, None, tmp_path / "x.ckpt")
