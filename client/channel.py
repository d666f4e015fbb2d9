"""The local channel between the thin ClientApp and the site worker (no torch here).

A Unix socket in the site's state directory: the directory is 0700 and the socket
0600, so only the site's own user reaches the worker. Each call is one request and
one reply, each a sequence of length-prefixed frames: a small JSON header, then
Flower's own protobuf serialisation (Message, Context) — no pickle crosses the socket.
"""

from __future__ import annotations

import json
import os
import socket
import struct
from pathlib import Path

SOCKET_NAME = "worker.sock"
_LEN = struct.Struct("!Q")
_MAX_PATH = 100  # sun_path is 108 bytes on Linux


class ChannelClosed(ConnectionError):
    """The other side went away in the middle of a call (e.g. the worker was killed)."""


def private_dir(path: Path) -> Path:
    """Create `path` (and parents) and make it 0700: it holds the site's socket and state."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def socket_path(state_dir: Path) -> Path:
    return state_dir / SOCKET_NAME


def _address(path: Path) -> tuple[str, int | None]:
    """A bindable/connectable address; long paths go through /proc/self/fd (Linux)."""
    if len(str(path)) <= _MAX_PATH:
        return str(path), None
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    return f"/proc/self/fd/{fd}/{path.name}", fd


def bind(state_dir: Path) -> socket.socket:
    """Listen on the site's socket (mode 0600); the caller holds the worker lock."""
    path = socket_path(private_dir(state_dir))
    path.unlink(missing_ok=True)  # a stale socket from a worker that died
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    address, fd = _address(path)
    try:
        sock.bind(address)
    finally:
        os.umask(old)
        if fd is not None:
            os.close(fd)
    os.chmod(path, 0o600)
    sock.listen(16)
    return sock


def connect(state_dir: Path) -> socket.socket | None:
    """A connection to the site's worker, or None when no worker listens."""
    path = socket_path(state_dir)
    if not path.exists():
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    address, fd = _address(path)
    try:
        sock.connect(address)
    except OSError:
        sock.close()
        return None
    finally:
        if fd is not None:
            os.close(fd)
    return sock


def send_frames(sock: socket.socket, header: dict, *blobs: bytes) -> None:
    parts = [json.dumps(header).encode(), *blobs]
    out = [_LEN.pack(len(parts))]
    for part in parts:
        out += [_LEN.pack(len(part)), part]
    sock.sendall(b"".join(out))


def _exactly(sock: socket.socket, n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        chunk = sock.recv(min(n - got, 1 << 22))
        if not chunk:
            raise ChannelClosed("the site worker closed the connection")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def recv_frames(sock: socket.socket) -> tuple[dict, list[bytes]]:
    (count,) = _LEN.unpack(_exactly(sock, _LEN.size))
    parts = [_exactly(sock, _LEN.unpack(_exactly(sock, _LEN.size))[0]) for _ in range(count)]
    if not parts:
        raise ChannelClosed("empty frame sequence")
    return json.loads(parts[0]), parts[1:]
