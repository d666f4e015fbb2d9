"""The one state-dict <-> ArrayRecord conversion, including float16 transport."""

from __future__ import annotations

import pytest
import torch

from shared.records import (
    batchnorm_keys,
    from_record,
    load_record,
    module_record,
    record_nbytes,
    to_record,
)
from tests.support.flower import TinyNet


def test_round_trip_is_exact_in_float32():
    net = TinyNet()
    state = from_record(module_record(net))
    for key, value in net.state_dict().items():
        assert torch.equal(state[key], value), key
    assert state["bn.num_batches_tracked"].dtype == torch.int64
    assert state["bn.num_batches_tracked"].shape == ()


def test_float16_halves_the_bytes_and_comes_back_as_float32():
    net = TinyNet(width=64)
    big = {"w": torch.randn(4096)}
    assert record_nbytes(to_record(big, dtype="float16")) < 0.52 * record_nbytes(to_record(big))
    half = module_record(net, dtype="float16")
    back = from_record(half)
    assert back["conv.weight"].dtype == torch.float32
    assert torch.allclose(back["conv.weight"], net.conv.weight, atol=1e-3)
    assert back["bn.num_batches_tracked"].dtype == torch.int64


def test_values_beyond_float16_range_travel_in_float32():
    big = torch.tensor([1e6, -2.0])
    record = to_record({"w": big}, dtype="float16")
    assert record["w"].dtype == "float32"
    assert torch.equal(from_record(record)["w"], big)


def test_load_rejects_wrong_shapes_and_unknown_keys_but_allows_local_keys():
    net = TinyNet()
    bad = module_record(TinyNet(width=4))
    with pytest.raises(ValueError, match="shape"):
        load_record(net, bad)
    record = module_record(TinyNet(), exclude=batchnorm_keys(net))
    with pytest.raises(ValueError, match="missing"):
        load_record(net, record)
    before = net.bn.running_var.clone()
    load_record(net, record, allow_missing=batchnorm_keys(net))
    assert torch.equal(net.bn.running_var, before)


def test_batchnorm_keys_cover_parameters_and_buffers():
    assert batchnorm_keys(TinyNet()) == {
        "bn.weight",
        "bn.bias",
        "bn.running_mean",
        "bn.running_var",
        "bn.num_batches_tracked",
    }


def test_unknown_transport_dtype_is_refused():
    with pytest.raises(ValueError, match="transport dtype"):
        to_record({"w": torch.zeros(1)}, dtype="bfloat16")
