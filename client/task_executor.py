"""`fediqad client` as the SuperNode's ClientApp executor (`--isolation process`).

With `flower-supernode --isolation process` the SuperNode starts no process of its own:
something outside it claims each ClientApp task on the SuperNode's Runtime API
(`AcquireTask`, what `flower-superexec` does before it spawns `flwr-clientapp`), then,
with that task's token, pulls the message and Context, pushes the reply and finishes
the task (what `flwr-clientapp` does, once, before it exits). `fediqad client` runs
this loop in a thread, message after message, with Flower's own Runtime API client and
task-output functions, and hands each message to the site worker over its Unix socket
(`client.client_app.relay`): no process start, no imports and no FAB unpacking per
message. Because the loop lives in the supervisor, not in the worker, a worker killed
mid-message never leaves a half-sent reply behind: the relay sees the socket close and
the task is answered with one error line, as under a stock SuperNode.

This module imports Flower only (no torch).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
from flwr.app import Context, Error, Message
from flwr.common.constant import ErrorCode, SubStatus
from flwr.common.serde import context_from_proto
from flwr.proto.node_pb2 import Node
from flwr.proto.runtime_pb2 import (
    AcquireTaskRequest,
    PullAppMessagesRequest,
    PullTaskInputRequest,
    SendTaskHeartbeatRequest,
)
from flwr.supercore.constant import TaskType
from flwr.supercore.heartbeat import HeartbeatSender
from flwr.supercore.inflatable.inflatable_protobuf_utils import (
    make_confirm_message_received_fn_protobuf,
    make_pull_object_fn_protobuf,
)
from flwr.supercore.inflatable.inflatable_utils import pull_and_inflate_object_from_tree
from flwr.supercore.interceptors import RuntimeTokenHttpInterceptor, RuntimeVersionHttpInterceptor
from flwr.supercore.retry import make_simple_http_retry_invoker
from flwr.supercore.runtime import RuntimeHttpClient
from flwr.supernode.runtime.run_clientapp import push_message, push_task_output

from shared.flower_waits import OBJECT_RETRY_CAP_S, OBJECT_RETRY_S

COMPONENT = "flwr-clientapp"  # the Runtime API checks the caller's component and version
POLL_S = 0.05  # between AcquireTask calls while the site is idle (a local HTTP call)
MAX_POLL_S = 0.2

# (message, context) -> (reply, None) or (None, (one-line error, fatal))
Handle = Callable[[Message, Context], tuple[Message | None, tuple[str, bool] | None]]


def _client(address: str, token: str | None, retry: bool = True) -> RuntimeHttpClient:
    """A Runtime API client; with `token`, for that task (retrying, as flwr-clientapp)."""
    interceptors = [RuntimeVersionHttpInterceptor(component_name=COMPONENT)]
    if token is not None:
        interceptors.append(RuntimeTokenHttpInterceptor(token))
    return RuntimeHttpClient.from_server_address(
        server_address=address,
        insecure=True,  # the Runtime API listens on 127.0.0.1 of this host only
        root_certificates=None,
        interceptors=interceptors,
        retry_invoker=make_simple_http_retry_invoker() if token and retry else None,
    )


def acquire(client: RuntimeHttpClient) -> str | None:
    """Claim the SuperNode's oldest pending ClientApp task: its token, or None."""
    res = client.AcquireTask(AcquireTaskRequest(supported_task_types=[TaskType.CLIENT_APP]))
    return res.token if res.HasField("task") and res.token else None


def _heartbeat(client: RuntimeHttpClient) -> HeartbeatSender:
    """Keep the task alive while a long handler runs (Flower expires it after 60 s)."""

    def beat() -> bool:
        try:
            return bool(client.SendTaskHeartbeat(SendTaskHeartbeatRequest()).success)
        except httpx.HTTPError:
            return False

    sender = HeartbeatSender(beat)
    sender.start()
    return sender


def pull_input(client: RuntimeHttpClient) -> tuple[Message, Context]:
    """The task's message and the run's Context, from the SuperNode's Runtime API."""
    res = client.PullTaskInput(PullTaskInputRequest())
    context = context_from_proto(res.context)
    pulled = client.PullMessages(PullAppMessagesRequest())
    if not pulled.messages_list:
        raise RuntimeError("the SuperNode offered a task without a message")
    node, tree = Node(node_id=context.node_id), pulled.message_object_trees[0]
    msg = pull_and_inflate_object_from_tree(
        tree,
        make_pull_object_fn_protobuf(client.PullObject, node, context.run_id),
        make_confirm_message_received_fn_protobuf(
            client.ConfirmMessageReceived, node, context.run_id
        ),
        # the SuperNode offers the task before it has all the message's parts; Flower's
        # default retries them after 1, 2, 4 ... 10 s
        initial_backoff=OBJECT_RETRY_S,
        backoff_cap=OBJECT_RETRY_CAP_S,
        max_tries_per_object=None,
        return_type=Message,
    )
    msg.metadata.__dict__["_message_id"] = tree.object_id  # as flwr-clientapp sets it
    return msg, context


def _error_reply(msg: Message, reason: str) -> Message:
    return Message(Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=reason), reply_to=msg)


def run_task(address: str, token: str, handle: Handle) -> None:
    """Serve one claimed task: pull, handle, push the reply (or one error line), finish."""
    client = _client(address, token)
    sender = _heartbeat(client)
    context, status, details = None, SubStatus.FAILED, "the site worker failed"
    try:
        started = time.perf_counter()
        msg, context = pull_input(client)
        reply, error = handle(msg, context)
        if reply is None:
            reason = error[0] if error else "the site worker failed"
            reply, details = _error_reply(msg, reason), reason
        else:
            status, details = SubStatus.COMPLETED, ""
            metrics = reply.content.metric_records.get("metrics")
            if metrics is not None:  # what serving this message cost beyond the handler
                handler = float(metrics.get("handler_seconds", 0.0))
                metrics["relay_seconds"] = time.perf_counter() - started - handler
        push_message(client, reply, context)
    finally:
        sender.stop()
        push_task_output(client, context, status, details)
        client.close()


def serve_tasks(address: str, handle: Handle, alive: Callable[[], bool], say=print) -> None:
    """Claim and serve the SuperNode's ClientApp tasks while `alive()`."""
    client, delay, connected = _client(address, None), POLL_S, False
    try:
        while alive():
            try:
                token = acquire(client)
            except httpx.HTTPError:  # the SuperNode is not up (yet, or again)
                connected = False
                time.sleep(0.25)
                continue
            if not connected:
                say(f"serving ClientApp tasks of the SuperNode at {address}")
                connected = True
            if token is None:
                time.sleep(delay)
                delay = min(MAX_POLL_S, delay * 1.5)
                continue
            delay = POLL_S
            try:
                run_task(address, token, handle)
            except Exception as err:  # noqa: BLE001 - one task lost, the loop goes on
                say(f"a ClientApp task failed between the worker and the SuperNode: {err!r}")
    finally:
        client.close()


def relay_handle(msg: Message, context: Context) -> tuple[Message | None, tuple[str, bool] | None]:
    """Hand `msg` to the site worker over its socket (the relay ClientApp's code path)."""
    from client.client_app import relay
    from client.worker_process import SiteWorkerError

    try:
        return relay(msg, context), None
    except SiteWorkerError as err:
        return None, (str(err), False)


def start_serving(address: str, alive: Callable[[], bool], say=print):  # type: ignore[no-untyped-def]
    """`serve_tasks` with the relay, in a daemon thread (for `fediqad client`)."""
    import threading

    thread = threading.Thread(
        target=serve_tasks, args=(address, relay_handle, alive), kwargs={"say": say}, daemon=True
    )
    thread.start()
    return thread
