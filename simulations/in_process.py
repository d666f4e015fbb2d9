"""The simulation without Ray: the ServerApp and every site's ClientApp in this process.

Where Ray cannot start (a loaded machine, a container without /dev/shm), the same
ServerApp drives the same ClientApp through a Flower `Grid` whose sites handle their
messages in this process, one site after another, when the server pulls for replies.
Run folder, checkpoints and reports are those of a Ray run; only the sites' wall
time adds up instead of overlapping. No threads: Ctrl-C lands where the work is.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from uuid import uuid4

from flwr.app import Context, Error, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.constant import (
    NUM_PARTITIONS_KEY,
    PARTITION_ID_KEY,
    SUPERLINK_NODE_ID,
    ErrorCode,
)
from flwr.serverapp import Grid, ServerApp
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity

SiteHook = Callable[[int, Message], None]


class InProcessGrid(Grid):
    """A Grid over `n_sites` virtual SuperNodes whose ClientApp runs in this process.

    `on_message(partition_id, message)` is called before a site handles a message
    (progress display)."""

    def __init__(
        self,
        client_app: ClientApp,
        n_sites: int,
        *,
        run_id: int | None = None,
        on_message: SiteHook | None = None,
    ) -> None:
        self.client_app = client_app
        self.on_message = on_message
        self._run = Run.create_empty(run_id if run_id is not None else secrets.randbits(63))
        self.contexts: dict[int, Context] = {}
        self.partition: dict[int, int] = {}
        for i in range(n_sites):
            node_id = secrets.randbits(63) or 1
            self.partition[node_id] = i
            self.contexts[node_id] = Context(
                run_id=self._run.run_id,
                node_id=node_id,
                node_config={PARTITION_ID_KEY: i, NUM_PARTITIONS_KEY: n_sites},
                state=RecordDict(),
                run_config={},
            )
        self._inbox: dict[str, Message] = {}
        self._outbox: dict[str, Message] = {}

    def set_run(self, run: Run) -> None:
        self._run = run

    @property
    def run(self) -> Run:
        return self._run

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        return list(self.contexts)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids = []
        for msg in messages:
            msg_id = str(uuid4())
            msg.metadata.__dict__["_message_id"] = msg_id  # as Flower's own grids do
            if msg.metadata.dst_node_id not in self.contexts:
                self._outbox[msg_id] = self._error(
                    msg, ErrorCode.NODE_UNAVAILABLE, "no such node in this simulation"
                )
            else:
                self._inbox[msg_id] = msg
            ids.append(msg_id)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        """Sites handle the requested messages now (in node order), then replies return."""
        wanted = [str(i) for i in message_ids]
        for msg_id in wanted:
            msg = self._inbox.pop(msg_id, None)
            if msg is not None:
                self._outbox[msg_id] = self._handle(msg)
        return [self._outbox.pop(i) for i in wanted if i in self._outbox]

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        del timeout  # every site answers within the pull
        return self.pull_messages(self.push_messages(messages))

    def _handle(self, msg: Message) -> Message:
        node = msg.metadata.dst_node_id
        if self.on_message is not None:
            self.on_message(self.partition[node], msg)
        try:
            reply = self.client_app(msg, self.contexts[node])
        except Exception as ex:  # a site's failure is its reply, as in Flower's runtimes
            reply = self._error(msg, ErrorCode.CLIENT_APP_RAISED_EXCEPTION, f"{ex}")
        reply.metadata.__dict__["_message_id"] = str(uuid4())
        return reply

    @staticmethod
    def _error(msg: Message, code: int, reason: str) -> Message:
        return Message(Error(code=code, reason=reason), reply_to=msg)


def run_in_process(
    server_app: ServerApp,
    client_app: ClientApp,
    n_sites: int,
    *,
    on_message: SiteHook | None = None,
) -> None:
    """Run `server_app` to its end with `n_sites` in-process sites."""
    grid = InProcessGrid(client_app, n_sites, on_message=on_message)
    # who "this process" is when the ServerApp builds messages (as run_simulation does)
    TaskIdentity.task_id = 1
    TaskIdentity.run_id = grid.run.run_id
    TaskIdentity.node_id = SUPERLINK_NODE_ID
    context = Context(
        run_id=grid.run.run_id, node_id=0, node_config={}, state=RecordDict(), run_config={}
    )
    server_app(grid=grid, context=context)
