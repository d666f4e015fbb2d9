"""The Flower ClientApp (`[tool.flwr.app.components] clientapp`): a thin relay.

Flower 1.42 starts one `flwr-clientapp` process per message. This module therefore
imports Flower and the standard library only (no torch): it hands each message to
the site's long-lived worker (`client/worker.py`) over the site's private Unix
socket and returns the worker's reply. The worker holds the model, data cache,
optimiser, DP ledger and CUDA context between rounds.

Simulation and tests call `make_client_app(sites, ...)`, which runs the handlers in
this process (Ray actors are long-lived already).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from flwr.app import Context, Message, MessageType
from flwr.clientapp import ClientApp
from flwr.common.serde import context_to_proto, message_from_proto, message_to_proto

from client.channel import ChannelClosed, recv_frames, send_frames
from client.worker_process import SiteWorkerError, ensure_worker, report_fatal, site_state_dir
from shared.contrastive.protocol import MESSAGE_TYPE as COMCL_MESSAGE

if TYPE_CHECKING:
    from client.site import Site

METRICS = "metrics"  # = shared.records.METRICS (that module imports torch)


def relay(msg: Message, context: Context) -> Message:
    """Send `msg` (and the node's context) to the site worker; its reply, or raise
    SiteWorkerError with one line that Flower puts into the error reply."""
    state_dir = site_state_dir(context.node_config)
    sent = time.perf_counter()
    sock = ensure_worker(state_dir)
    with sock:
        try:
            send_frames(
                sock,
                {"op": "handle"},
                message_to_proto(msg).SerializeToString(),
                context_to_proto(context).SerializeToString(),
            )
            header, blobs = recv_frames(sock)
        except (ChannelClosed, OSError) as err:
            raise SiteWorkerError(
                f"the site worker stopped while handling a {msg.metadata.message_type} "
                f"message ({err}); it is restarted from {state_dir}"
            ) from None
    if not header.get("ok"):
        error = str(header.get("error", "the site worker failed"))
        if header.get("fatal"):
            report_fatal(error)
        raise SiteWorkerError(error)
    from flwr.proto.message_pb2 import Message as ProtoMessage

    reply = message_from_proto(ProtoMessage.FromString(blobs[0]))
    content = reply.content
    if METRICS in content.metric_records:  # what the relay itself cost this message
        metrics = content.metric_records[METRICS]
        metrics["relay_seconds"] = (
            time.perf_counter() - sent - float(metrics.get("handler_seconds", 0.0))
        )
    return Message(content, reply_to=msg)


def make_relay_app() -> ClientApp:
    relay_app = ClientApp()
    relay_app.train()(relay)
    relay_app.evaluate()(relay)
    relay_app.train(COMCL_MESSAGE.split(".", 1)[1])(relay)
    return relay_app


def make_client_app(
    sites: Sequence[Site] | None = None,
    threads: int | None = None,
    epsilon_budgets: Mapping[str, float] | None = None,
) -> ClientApp:
    """A ClientApp running the handlers in this process (simulation, tests); `sites`
    maps partition ids to site folders, `epsilon_budgets` sets per-site DP limits."""
    from client.handlers import handler_table

    in_process = ClientApp()
    table = handler_table(sites, threads, epsilon_budgets)
    in_process.train()(table[MessageType.TRAIN])
    in_process.evaluate()(table[MessageType.EVALUATE])
    in_process.train(COMCL_MESSAGE.split(".", 1)[1])(table[COMCL_MESSAGE])
    return in_process


app = make_relay_app()
