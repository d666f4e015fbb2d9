"""The `flwr` CLI as the launcher uses it: one call, its JSON answer, and registering
allow-listed SuperNode keys with the SuperLink's Control API."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from shared.errors import UserError
from shared.process_group import flower_tool

CONNECTION = "fediqad"


def _flwr(args: list[str], env: dict[str, str], timeout: float = 600) -> str:
    """One `flwr` CLI call; a hang guard, generous because a busy machine is slow."""
    try:
        done = subprocess.run(
            [flower_tool("flwr"), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise UserError(f"`flwr {args[0]}` did not answer within {timeout:.0f} s") from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise UserError(f"`flwr {args[0]}` failed: {' | '.join(tail)}")
    return done.stdout


def _json_tail(text: str) -> dict:
    start = text.find("{")
    return json.loads(text[start:]) if start >= 0 else {}


def flwr_json(args: Sequence[str], env: dict[str, str]) -> dict:
    """`flwr ARGS --format json`: its JSON answer."""
    return _json_tail(_flwr([*args, "--format", "json"], env))


class NodeRegistry:
    """Registers allow-listed SuperNode public keys with the SuperLink (Control API)."""

    def __init__(self, allowlist: Path, env: dict[str, str], console: Console):
        self.allowlist, self.env, self.console = allowlist, env, console
        self.done: set[Path] = set()

    def sync(self, strict: bool = True) -> None:
        """Register keys not registered yet; mid-run (`strict=False`) a bad new key is a
        warning, so one hospital's mistake cannot stop the others' federation."""
        for key in sorted(self.allowlist.glob("*.pub")):
            if key in self.done:
                continue
            self.done.add(key)
            try:
                out = _json_tail(
                    _flwr(
                        [
                            "supernode",
                            "register",
                            str(key),
                            CONNECTION,
                            "--name",
                            key.stem,
                            "--format",
                            "json",
                        ],
                        self.env,
                    )
                )
                if not out.get("success"):
                    raise UserError(
                        f"the SuperLink did not register {key}: {out.get('error-message', out)}"
                    )
            except UserError as err:
                if strict:
                    raise
                self.console.print(f"[yellow]warning:[/] {err}")
                continue
            self.console.print(f"node key {key.name} registered (node {out.get('node-id')})")
