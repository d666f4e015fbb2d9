"""The site worker as a process-isolated SuperNode's executor (client/task_executor.py):
what it keeps about the task in hand so a restarted worker's supervisor can answer it."""

from __future__ import annotations

import json
import stat

from flwr.app import Message, RecordDict

from client.task_executor import PENDING, _remember, answer_orphan, answer_pending
from tests.federation.test_wire_pack import record


def a_message() -> Message:
    msg = Message(RecordDict({"task_net": record()}), dst_node_id=42, message_type="train")
    msg.metadata.__dict__["_message_id"] = msg.object_id
    return msg


def test_the_task_in_hand_is_kept_private_and_without_the_model(tmp_path, monkeypatch):
    from flwr.supercore.task_identity import TaskIdentity

    monkeypatch.setattr(TaskIdentity, "_run_id", 7, raising=False)
    msg = a_message()
    _remember(tmp_path, "secret-token", msg)
    path = tmp_path / PENDING
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = json.loads(path.read_text())
    assert data["token"] == "secret-token" and data["node_id"] == 42
    assert len(path.read_bytes()) < 2000  # metadata only, not the arrays


def test_an_orphan_is_answered_or_dropped_without_raising(tmp_path, monkeypatch):
    """No SuperNode listens: the answer cannot be sent; the supervisor must not crash
    and the file must go (Flower's heartbeat expiry answers the task instead)."""
    from flwr.supercore.task_identity import TaskIdentity

    monkeypatch.setattr(TaskIdentity, "_run_id", 7, raising=False)
    _remember(tmp_path, "tok", a_message())
    assert answer_orphan("127.0.0.1:9", tmp_path)  # port 9: nothing listens
    assert not (tmp_path / PENDING).exists()
    assert not answer_orphan("127.0.0.1:9", tmp_path)  # nothing left
    (tmp_path / PENDING).write_text("{torn")
    assert not answer_orphan("127.0.0.1:9", tmp_path)
    assert not (tmp_path / PENDING).exists()
    assert answer_pending("127.0.0.1:9", "why") == 0
