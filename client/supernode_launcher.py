"""`python -m client.supernode_launcher ARGS`: Flower's own `flower-supernode ARGS`, with
its fixed waits shortened (`shared/flower_waits.py`).

Flower 1.42's SuperNode sleeps 3 s whenever the SuperLink has no message for it, checks
for a finished reply every 0.5 s, and retries a message part that is not uploaded yet
after 1, 2, 4 ... 10 s. None of these is configurable, and in a federation whose sites
compute for a second or two per message they are most of every round. This launcher
runs the unchanged `flower_supernode()` entry point after capping that loop's sleeps
at `FEDIQAD_SUPERNODE_POLL` seconds (default 0.2) and making its part retries quick:
the SuperNode then picks up a message and sends a reply within ~0.2 s, at the cost of
~5 small requests a second to the SuperLink while idle.

Each change applies only where the pinned Flower still has exactly that wait (checked
at start); otherwise the SuperNode runs as shipped, with a warning.
`FEDIQAD_SUPERNODE_POLL=off` runs it as shipped on purpose.
"""

from __future__ import annotations

import os
import sys

from shared.flower_waits import cap_supernode_waits, quick_object_pulls

POLL_ENV = "FEDIQAD_SUPERNODE_POLL"
DEFAULT_POLL_S = 0.2


def poll_cap(environ: dict[str, str] | None = None) -> float | None:
    """The cap from FEDIQAD_SUPERNODE_POLL (seconds), None for 'off'."""
    raw = (environ if environ is not None else os.environ).get(POLL_ENV, str(DEFAULT_POLL_S))
    if raw.strip().lower() in ("off", "none", ""):
        return None
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0.01 <= value <= 3.0:
        raise ValueError(f"{POLL_ENV} must be between 0.01 and 3 seconds or 'off', got {raw!r}")
    return value


def main() -> None:
    try:
        cap = poll_cap()
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    from flwr.supercore.logger import update_console_handler
    from flwr.supernode import start_client_internal
    from flwr.supernode.cli.flower_supernode import flower_supernode

    update_console_handler(timestamps=True)  # the site's log says when each message came

    if cap is not None and not (
        cap_supernode_waits(cap) and quick_object_pulls(start_client_internal)
    ):
        print(
            "warning: this Flower's SuperNode loop is not the one fediqad was tested with; "
            "it runs with Flower's own waits (3 s idle, 1-10 s part retries)",
            file=sys.stderr,
        )
    sys.argv[0] = "flower-supernode"
    flower_supernode()


if __name__ == "__main__":
    main()
