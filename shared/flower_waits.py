"""Flower 1.42's fixed waits that dominate a small deployed round, shortened in our
own processes (no torch here; the SuperNode launcher and the ServerApp use it).

Two kinds of wait are hard-coded in Flower 1.42 and have no flag, setting or
environment variable:

- the SuperNode's loop sleeps 3 s whenever the SuperLink has no message for it, and
  checks every 0.5 s for a finished reply (`time.sleep(3)` / `time.sleep(0.5)` in
  `flwr.supernode.start_client_internal`);
- a message is announced before all its parts (the model arrays) are uploaded, and
  whoever pulls it early retries the missing parts after 1, 2, 4 ... 10 s
  (`pull_objects`' default back-off) — the SuperNode pulling a server message, the
  ServerApp pulling a site's reply.

Both are pure latency in a federation whose sites compute for seconds. Where the
pinned Flower still has exactly these waits (checked against its source), the
functions below give the one module a `time` whose sleep is capped, or a
`pull_objects` that retries at `OBJECT_RETRY_S`; otherwise they change nothing and
say so. Flower's code runs unchanged otherwise.
"""

from __future__ import annotations

import functools
import inspect
import time
import types

OBJECT_RETRY_S, OBJECT_RETRY_CAP_S = 0.05, 0.25  # first retry, longest pause
SUPERNODE_WAITS = ("time.sleep(3)", "time.sleep(0.5)")  # flwr 1.42's idle and reply waits


def capped_time(cap: float) -> types.ModuleType:
    """A stand-in for the `time` module whose sleep never exceeds `cap` seconds."""
    shim = types.ModuleType("time")
    shim.__dict__.update(time.__dict__)
    shim.sleep = lambda seconds: time.sleep(min(float(seconds), cap))
    return shim


def cap_supernode_waits(cap: float) -> bool:
    """Cap the SuperNode loop's sleeps at `cap` s; False if Flower's loop differs."""
    from flwr.supernode import start_client_internal as loop

    source = inspect.getsource(loop)
    if not all(wait in source for wait in SUPERNODE_WAITS) or loop.time is not time:
        return False
    loop.time = capped_time(cap)
    return True


def quick_object_pulls(module: types.ModuleType) -> bool:
    """Make `module`'s calls to Flower's `pull_objects` retry a missing part after
    OBJECT_RETRY_S (doubling up to OBJECT_RETRY_CAP_S) instead of 1 s (up to 10 s);
    the total wait allowed (`max_time`, 2 h) is Flower's. False if not applicable."""
    from flwr.supercore.inflatable import inflatable_utils

    current = getattr(module, "pull_objects", None)
    if isinstance(current, functools.partial) and current.func is inflatable_utils.pull_objects:
        return True  # done already
    params = inspect.signature(inflatable_utils.pull_objects).parameters
    if current is not inflatable_utils.pull_objects or not {
        "initial_backoff",
        "backoff_cap",
        "max_tries_per_object",
    } <= set(params):
        return False
    module.pull_objects = functools.partial(
        inflatable_utils.pull_objects,
        initial_backoff=OBJECT_RETRY_S,
        backoff_cap=OBJECT_RETRY_CAP_S,
        max_tries_per_object=None,  # bounded by max_time, as Flower's own 1-10 s retries
    )
    return True
