"""Model arrays travel packed (shared/wire_pack.py): bit-exact, dtypes and shapes kept,
and a message becomes a handful of Flower objects instead of one per tensor."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects
from flwr.supercore.task_identity import TaskIdentity

from shared.wire_pack import MANIFEST, PACKED, any_packed, pack, pack_record, unpack


def record() -> ArrayRecord:
    rng = np.random.default_rng(0)
    return ArrayRecord(
        {
            "conv.weight": Array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32)),
            "bn.num_batches_tracked": Array(np.array(7, dtype=np.int64)),  # 0-d
            "half": Array(rng.standard_normal(5).astype(np.float16)),
            "empty": Array(np.zeros((0, 2), dtype=np.float32)),
        }
    )


def test_pack_then_unpack_gives_back_every_array_exactly():
    content = RecordDict({"task_net": record(), "config": ConfigRecord({"round": 3})})
    packed = pack(content)
    assert any_packed(packed) and set(packed["task_net"].keys()) == {MANIFEST, PACKED}
    assert packed["config"] == content["config"]
    back = unpack(packed)
    assert list(back["task_net"].keys()) == list(content["task_net"].keys())
    for key, array in content["task_net"].items():
        a, b = array.numpy(), back["task_net"][key].numpy()
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b), key


def test_unpacked_content_passes_through_unchanged():
    content = RecordDict({"task_net": record(), "metrics": MetricRecord({"loss": 1.0})})
    assert not any_packed(content)
    assert list(unpack(content)["task_net"].keys()) == list(content["task_net"].keys())
    assert pack_record(ArrayRecord()) == ArrayRecord()


def test_a_corrupt_manifest_is_an_error_not_garbage():
    packed = pack_record(record())
    body = packed[PACKED].numpy()[:-4].copy()
    broken = ArrayRecord({MANIFEST: packed[MANIFEST], PACKED: Array(body)})
    with pytest.raises(ValueError):
        unpack(RecordDict({"task_net": broken}))


def test_a_packed_message_is_a_handful_of_flower_objects(monkeypatch):
    monkeypatch.setattr(TaskIdentity, "_run_id", 1, raising=False)
    many = ArrayRecord({f"layer{i}.weight": Array(np.full(8, i, np.float32)) for i in range(200)})

    def objects(content: RecordDict) -> int:
        msg = Message(content, dst_node_id=1, message_type="train")
        return len(get_all_nested_objects(msg))

    assert objects(RecordDict({"task_net": many})) > 200
    assert objects(pack(RecordDict({"task_net": many}))) < 10
