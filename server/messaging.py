"""One exchange of messages with the sites, with every outcome attributed to a node.

Built on the Grid's public push/pull API rather than `send_and_receive` so that
(1) replies are polled every `poll` seconds instead of the deployment grid's fixed
3 s, which is pure per-round latency, (2) model arrays travel packed
(`shared/wire_pack.py`: a few Flower objects per message, not one per tensor), and
(3) every sampled node ends the exchange as a reply, an error (the SuperLink's own
"node unavailable" errors come from the SuperLink, so they are matched by the message
they answer) or a timeout. A stop
request (Ctrl-C, `shared.interrupt`) ends the wait with `StopRequested`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from flwr.app import Message, RecordDict
from flwr.serverapp import Grid

from shared.interrupt import check_stop
from shared.wire_pack import pack, unpack

PACK_ENV = "FEDIQAD_WIRE_PACK"  # "off": one Flower object per tensor, as Flower does it


def packing() -> bool:
    return os.environ.get(PACK_ENV, "on").strip().lower() not in ("off", "0", "no", "false")


def short_reason(reason: str, limit: int = 400) -> str:
    """The useful line of a ClientApp error (Flower wraps it in type names / tracebacks)."""
    marker = "occurred. Message:"
    if marker in reason:
        reason = reason.rsplit(marker, 1)[1]
    reason = " ".join(reason.replace("'>", " ").split()).strip(" '<>")
    return reason[:limit]


def payload_bytes(content: RecordDict) -> int:
    """Bytes of records carried (arrays, configs, metrics), protocol framing excluded."""
    return sum(record.count_bytes() for record in content.values())


@dataclass
class Exchange:
    """What came back from one round-trip, by destination node id."""

    replies: dict[int, Message] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)
    timed_out: list[int] = field(default_factory=list)
    seconds: float = 0.0


def exchange(
    grid: Grid,
    messages: Iterable[Message],
    *,
    timeout: float,
    poll: float = 0.05,
    max_poll: float = 0.2,
) -> Exchange:
    """Push `messages`, pull until each has an answer or `timeout` passes."""
    start = time.perf_counter()
    messages = list(messages)
    if packing():  # a few objects per message instead of one per tensor
        for msg in messages:
            msg.content = pack(msg.content)
    ids = list(grid.push_messages(messages))
    pending: dict[str, int] = {}
    out = Exchange()
    for msg, msg_id in zip(messages, ids, strict=False):
        node = msg.metadata.dst_node_id
        if msg_id:
            pending[str(msg_id)] = node
        else:
            out.errors[node] = "the SuperLink did not accept the message"
    deadline = time.monotonic() + timeout
    delay = poll
    while pending and time.monotonic() < deadline:
        check_stop()  # Ctrl-C: stop waiting for sites (their runtime is shutting down)
        got = list(grid.pull_messages(list(pending)))
        for reply in got:
            node = pending.pop(reply.metadata.reply_to_message_id, None)
            if node is None:
                continue
            if reply.has_error():
                out.errors[node] = short_reason(reply.error.reason or f"error {reply.error.code}")
            else:
                reply.content = unpack(reply.content)
                out.replies[node] = reply
        if pending:
            delay = poll if got else min(max_poll, delay * 1.5)
            time.sleep(delay)
    out.timed_out = sorted(pending.values())
    out.seconds = time.perf_counter() - start
    return out
