"""Container health check: is the SuperLink (server) or SuperNode (hospital) listening?

`python deploy/healthcheck.py server` connects to the SuperLink's port; `hospital`
connects to the SuperNode's local runtime API port (only up while Flower runs).
Standard library only, so it is cheap to run every 30 s.
"""

from __future__ import annotations

import os
import socket
import sys


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=3):
            return True
    except OSError:
        return False


def main(role: str) -> int:
    if role == "server":
        port = int(os.environ.get("FEDIQAD_PORT", "9092"))
    elif role == "hospital":
        port = int(os.environ.get("FEDIQAD_RUNTIME_PORT", "9094"))
    else:
        print(f"usage: healthcheck.py server|hospital (got {role!r})", file=sys.stderr)
        return 2
    ok = listening(port)
    print(f"{role}: port {port} {'listening' if ok else 'not listening'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else ""))
