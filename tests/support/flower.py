"""Test doubles for the federation: a stand-in model bundle, an in-process Grid, and the
Flower task identity that messages built outside a Flower runtime need.

`InProcessGrid` runs ClientApps synchronously inside `push_messages`, so the real
ServerApp loop and the real ClientApp handlers meet without Ray or network.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord, Context, Error, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid
from flwr.supercore.task_identity import TaskIdentity
from torch import nn

from shared.models import ModelBundle
from shared.records import METRICS, NUM_EXAMPLES


def set_flwr_identity() -> None:
    """Messages built outside a Flower runtime need a task identity (the runtime sets it)."""
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 0


@pytest.fixture(autouse=True)
def flwr_identity() -> None:
    """`set_flwr_identity` before every test wherever this fixture is imported (a folder's
    conftest, a test module)."""
    set_flwr_identity()


class TinyNet(nn.Module):
    """Conv + BatchNorm + Linear: parameters, float buffers and an integer counter."""

    def __init__(self, width: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(1, width, 3)
        self.bn = nn.BatchNorm2d(width)
        self.fc = nn.Linear(width, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.bn(self.conv(x)).mean((2, 3)))


def tiny_bundle() -> ModelBundle:
    torch.manual_seed(0)
    return ModelBundle(TinyNet(), TinyNet(2))  # type: ignore[arg-type]


def reply(
    node: int, records: dict[str, dict[str, np.ndarray]], n: float, **metrics: float
) -> Message:
    """A hand-made train reply from `node` (as if it came back through a Grid)."""
    from flwr.app import ConfigRecord, MessageType

    content = RecordDict(
        {
            m: ArrayRecord({k: Array(np.asarray(v)) for k, v in arrays.items()})
            for m, arrays in records.items()
        }
    )
    content[METRICS] = MetricRecord({NUM_EXAMPLES: float(n), **metrics})
    content["site"] = ConfigRecord({"name": f"site{node}"})
    return Message(content, dst_node_id=node, message_type=MessageType.TRAIN)


class InProcessGrid(Grid):
    """A Grid whose nodes are ClientApps called in this process.

    `fail(node, msg)` may raise to make that node's ClientApp fail (an error reply)
    and `before_push(messages)` may raise to simulate the server dying mid-round.
    """

    def __init__(
        self,
        apps: dict[int, tuple[ClientApp, Context]],
        fail: Callable[[int, Message], None] | None = None,
        before_push: Callable[[list[Message]], None] | None = None,
    ):
        self.apps = apps
        self.fail = fail
        self.before_push = before_push
        self.replies: dict[str, Message] = {}
        self._ids = itertools.count(1)
        self.pushed: list[Message] = []
        self.received: list[Message] = []  # every reply, in order, as the nodes sent it

    def set_run(self, run_id: int) -> None:  # type: ignore[override]
        pass

    @property
    def run(self):  # type: ignore[override]
        raise NotImplementedError

    def create_message(self, content, message_type, dst_node_id, group_id, ttl=None):  # type: ignore[override]
        return Message(content, dst_node_id=dst_node_id, message_type=message_type)

    def get_node_ids(self) -> Iterable[int]:
        return list(self.apps)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        messages = list(messages)
        if self.before_push is not None:
            self.before_push(messages)
        ids = []
        for msg in messages:
            msg_id = f"m{next(self._ids)}"
            msg.metadata.__dict__["_message_id"] = msg_id
            node = msg.metadata.dst_node_id
            app, context = self.apps[node]
            try:
                if self.fail is not None:
                    self.fail(node, msg)
                out = app(msg, context)
            except Exception as err:  # noqa: BLE001 - becomes an error reply, as in Flower
                out = Message(Error(code=0, reason=f"{type(err).__name__}: {err}"), reply_to=msg)
            out.metadata.__dict__["_message_id"] = f"r{msg_id}"
            self.replies[msg_id] = out
            self.received.append(out)
            self.pushed.append(msg)
            ids.append(msg_id)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return [self.replies.pop(i) for i in list(message_ids) if i in self.replies]

    def send_and_receive(self, messages, *, timeout=None):  # type: ignore[override]
        return self.pull_messages(self.push_messages(messages))


def site_grid(
    sites: list,
    *,
    node_config: dict[int, dict] | None = None,
    epsilon_budgets: dict[str, float] | None = None,
    **grid: object,
) -> tuple[InProcessGrid, dict[int, Context]]:
    """The real ClientApp for `sites` (client.site.Site) as nodes 100, 101, ... of an
    InProcessGrid, each with its own Context (partition-id i, plus `node_config[i]`);
    `grid` goes to InProcessGrid (fail=, before_push=)."""
    from client.client_app import make_client_app

    app = make_client_app(sites, threads=1, epsilon_budgets=epsilon_budgets)
    contexts = {
        100 + i: Context(
            run_id=1,
            node_id=100 + i,
            node_config={"partition-id": i, **(node_config or {}).get(i, {})},
            state=RecordDict(),
            run_config={},
        )
        for i in range(len(sites))
    }
    apps = {n: (app, c) for n, c in contexts.items()}
    return InProcessGrid(apps, **grid), contexts  # type: ignore[arg-type]
