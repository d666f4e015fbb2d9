"""`fediqad client`'s executor loop (client/task_executor.py) hands each task to the site
worker through the relay, so a worker that cannot start (or dies) becomes one error line
in the reply, never a half-sent one."""

from __future__ import annotations

from flwr.app import Context, Message, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from client.task_executor import relay_handle, serve_tasks
from client.worker_process import FAILED, STATE_DIR_KEY, WORKER_ENV


def test_a_worker_that_cannot_start_is_one_line_in_the_reply(tmp_path, monkeypatch):
    monkeypatch.setattr(TaskIdentity, "_run_id", 7, raising=False)
    monkeypatch.setenv(WORKER_ENV, "supervised")  # as under `fediqad client`
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / FAILED).write_text("OSError: the data cache is not writable\n")
    msg = Message(RecordDict(), dst_node_id=1, message_type="train")
    context = Context(
        run_id=7,
        node_id=1,
        node_config={STATE_DIR_KEY: str(state)},
        state=RecordDict(),
        run_config={},
    )
    reply, error = relay_handle(msg, context)
    assert reply is None and error is not None
    line, fatal = error
    assert "could not start" in line and "not writable" in line and "\n" not in line
    assert not fatal


def test_the_loop_waits_for_its_supernode_and_stops_when_told(tmp_path):
    calls = []

    def alive() -> bool:  # two rounds of "no SuperNode at that port yet", then stop
        calls.append(1)
        return len(calls) < 3

    said: list[str] = []
    serve_tasks("127.0.0.1:9", lambda m, c: (None, ("unused", False)), alive, said.append)
    assert len(calls) == 3 and said == []  # never connected, never served
