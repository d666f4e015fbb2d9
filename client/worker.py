"""The site worker: one long-lived process per site that does the site's work.

`python -m client.worker --state-dir DIR [--parent-pid PID]`. It imports torch and
the handlers once, then serves calls on DIR/worker.sock (0600): from the thin
ClientApp a stock SuperNode spawns per message, or from `fediqad client`'s executor
loop (`client/task_executor.py`, a process-isolated SuperNode). Each call carries a
Flower Message and the node's Context (protobuf), the reply carries the handler's
reply Message. The site's per-run state (optimiser, FedBN
BatchNorm, DP ledger: the Context state Flower would keep in the SuperNode) is kept
here and written to DIR/runs/<run-id>.state after every message, so a restarted
worker continues where the last one stopped. It exits when PID (its supervisor or
the SuperNode) is gone.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import threading
import time
import traceback
from pathlib import Path

from flwr.app import Context, Message, RecordDict
from flwr.common.serde import (
    context_from_proto,
    message_from_proto,
    message_to_proto,
    recorddict_from_proto,
    recorddict_to_proto,
)
from flwr.proto.message_pb2 import Context as ProtoContext
from flwr.proto.message_pb2 import Message as ProtoMessage
from flwr.proto.recorddict_pb2 import RecordDict as ProtoRecordDict

from client.channel import ChannelClosed, bind, private_dir, recv_frames, send_frames
from client.worker_process import FAILED, hold_worker_lock

KEEP_RUNS = 4  # runs whose Context stays in memory


def _say(text: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} site worker {os.getpid()}: {text}", flush=True)


class SiteWorker:
    """The handlers plus the site's Contexts, one per Flower run, persisted per message."""

    def __init__(self, state_dir: Path):
        import shared.evaluation  # noqa: F401 - scikit-learn, paid at start, not at round 1
        from client.handlers import handler_table  # torch, the models, the data code

        self.state_dir = state_dir
        self.runs_dir = private_dir(state_dir / "runs")
        self.handlers = handler_table(keep_models=True)
        self.contexts: dict[int, Context] = {}
        self.lock = threading.Lock()

    def _state_file(self, run_id: int) -> Path:
        return self.runs_dir / f"{run_id}.state"

    def context_for(self, incoming: Context) -> Context:
        """This run's Context: in memory, else from disk, else new; node and run config
        always from the SuperNode (they may change when it restarts)."""
        context = self.contexts.pop(incoming.run_id, None)
        if context is None:
            path = self._state_file(incoming.run_id)
            state = (
                recorddict_from_proto(ProtoRecordDict.FromString(path.read_bytes()))
                if path.is_file()
                else RecordDict()
            )
            context = Context(
                run_id=incoming.run_id,
                node_id=incoming.node_id,
                node_config=incoming.node_config,
                state=state,
                run_config=incoming.run_config,
            )
        context.node_config = incoming.node_config
        context.run_config = incoming.run_config
        self.contexts[incoming.run_id] = context
        while len(self.contexts) > KEEP_RUNS:
            self.contexts.pop(next(iter(self.contexts)))
        return context

    def save(self, context: Context) -> None:
        path = self._state_file(context.run_id)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as out:
            out.write(recorddict_to_proto(context.state).SerializeToString())
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)

    def handle_message(
        self, msg: Message, incoming: Context
    ) -> tuple[Message | None, tuple[str, bool] | None]:
        """The handler's reply, or (one-line error, fatal?) as Flower's error reply."""
        from client.site import SiteError

        with self.lock:  # one handler at a time
            ctx = self.context_for(incoming)
            kind = msg.metadata.message_type
            handler = self.handlers.get(kind)
            if handler is None:
                return None, (f"the site worker has no handler for {kind!r}", False)
            _say(f"handling {kind} (run {ctx.run_id})")
            start = time.perf_counter()
            try:
                reply = handler(msg, ctx)
            except SiteError as err:
                _say(f"{kind} failed: {err}")
                return None, (str(err), True)
            except Exception as err:  # noqa: BLE001 - becomes the error reply, as in Flower
                traceback.print_exc()
                return None, (f"{type(err).__name__}: {err}", False)
            self.save(ctx)
            _say(f"{kind} done in {time.perf_counter() - start:.2f} s; state saved")
            incoming.state = ctx.state  # what the SuperNode keeps for this run
            return reply, None

    def handle(self, message: bytes, context: bytes) -> tuple[dict, list[bytes]]:
        msg = message_from_proto(ProtoMessage.FromString(message))
        ctx = context_from_proto(ProtoContext.FromString(context))
        reply, error = self.handle_message(msg, ctx)
        if reply is None:
            text, fatal = error or ("the site worker failed", False)
            return {"ok": False, "error": text, "fatal": fatal}, []
        return {"ok": True}, [message_to_proto(reply).SerializeToString()]

    def serve_one(self, conn: socket.socket) -> None:
        try:
            header, blobs = recv_frames(conn)
            if header.get("op") == "ping":
                send_frames(conn, {"ok": True, "pid": os.getpid()})
                return
            reply_header, reply_blobs = self.handle(*blobs[:2])
            send_frames(conn, reply_header, *reply_blobs)
        except (ChannelClosed, OSError) as err:
            _say(f"the ClientApp went away before the reply ({err})")


def _alive(pid: int | None) -> bool:
    if not pid:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def serve(state_dir: Path, parent_pid: int | None) -> int:
    lock = hold_worker_lock(state_dir)
    if lock is None:
        _say(f"another worker already serves {state_dir}; exiting")
        return 0
    try:
        worker = SiteWorker(state_dir)
        listener = bind(state_dir)
    except Exception as err:  # noqa: BLE001 - one line for the server, details in the log
        traceback.print_exc()
        (state_dir / FAILED).write_text(f"{type(err).__name__}: {err}\n")
        return 2
    (state_dir / FAILED).unlink(missing_ok=True)
    (state_dir / "worker.pid").write_text(f"{os.getpid()}\n")
    _say(f"ready on {state_dir / 'worker.sock'}")
    listener.settimeout(1.0)
    try:
        while _alive(parent_pid):
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(None)
                worker.serve_one(conn)
        _say(f"process {parent_pid} is gone; exiting")
        return 0
    finally:
        listener.close()
        (state_dir / "worker.sock").unlink(missing_ok=True)
        os.close(lock)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m client.worker", description=__doc__)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--parent-pid", type=int, default=None)
    args = parser.parse_args(argv)
    return serve(args.state_dir.expanduser().resolve(), args.parent_pid)


if __name__ == "__main__":
    sys.exit(main())
