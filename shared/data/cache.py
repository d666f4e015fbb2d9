"""Decoded, resized images kept in a uint8 memory map, so epochs after the first skip
decoding entirely.

One cache file per (list of image files, channels, size). Each row carries a stamp
(mtime in ns, file size) of the file it was decoded from; a row whose file changed since
is decoded again. Rows are filled lazily by whichever process reads them first, so
DataLoader workers share the work and the result. The default location is
`$FEDIQAD_CACHE_DIR`, else `$XDG_CACHE_HOME/fediqad`, else `~/.cache/fediqad`, never the
data folder (hospital data may be read-only).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from shared.atomic_write import atomic_open
from shared.data.images import decode


def default_cache_dir() -> Path:
    env = os.environ.get("FEDIQAD_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fediqad"


def file_stamps(paths: list[Path]) -> np.ndarray:
    """int64 [N, 2]: mtime_ns and size of each file (0, 0 where it is missing)."""
    out = np.zeros((len(paths), 2), dtype=np.int64)
    for i, p in enumerate(paths):
        try:
            st = os.stat(p)
        except OSError:
            continue
        out[i, 0] = st.st_mtime_ns
        out[i, 1] = st.st_size
    return out


class ImageCache:
    """Row i holds image i of `paths` as uint8 [C, S, S]."""

    def __init__(
        self,
        paths: list[Path],
        channels: int,
        size: int,
        cache_dir: Path | None = None,
        stamps: np.ndarray | None = None,
    ):
        self.paths = [str(p) for p in paths]
        self.channels = channels
        self.size = size
        self.expected = file_stamps(paths) if stamps is None else stamps
        digest = hashlib.sha1()
        for p in self.paths:
            digest.update(p.encode("utf-8", "surrogateescape") + b"\0")
        key = f"{digest.hexdigest()[:20]}_{channels}x{size}"
        root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.data_path = root / f"{key}.u8"
        self.stamp_path = root / f"{key}.stamp"
        self.enabled = self._create(root)
        self._pid: int | None = None
        self._data: np.memmap | None = None
        self._stamp: np.memmap | None = None

    @property
    def row_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.size, self.size)

    def _create(self, root: Path) -> bool:
        n = len(self.paths)
        nbytes = n * self.channels * self.size * self.size
        try:
            root.mkdir(parents=True, exist_ok=True)
            for path, length in ((self.data_path, nbytes), (self.stamp_path, n * 16)):
                if path.is_file() and path.stat().st_size == length:
                    continue
                with atomic_open(path, mode=0o644) as fh:
                    fh.truncate(length)  # sparse; zero stamps mean "not cached yet"
            return True
        except OSError:
            return False  # read-only or full disk: decode every time instead

    def _open(self) -> None:
        pid = os.getpid()
        if self._pid == pid:
            return
        n = len(self.paths)
        self._data = np.memmap(
            self.data_path, dtype=np.uint8, mode="r+", shape=(n, *self.row_shape)
        )
        self._stamp = np.memmap(self.stamp_path, dtype=np.int64, mode="r+", shape=(n, 2))
        self._pid = pid

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.update(_pid=None, _data=None, _stamp=None)  # reopened in each worker
        return state

    def _decode(self, i: int) -> np.ndarray:
        arr = decode(Path(self.paths[i]), self.channels, self.size)
        if arr.ndim == 2:
            return arr[None]
        return np.ascontiguousarray(arr.transpose(2, 0, 1))

    def get(self, i: int) -> np.ndarray:
        """uint8 [C, S, S] for image i, from the cache when its stamp still matches."""
        if not self.enabled:
            return self._decode(i)
        self._open()
        assert self._data is not None and self._stamp is not None
        stamp = self._stamp[i]
        want = self.expected[i]
        if stamp[0] == want[0] and stamp[1] == want[1]:
            return np.array(self._data[i])
        arr = self._decode(i)
        self._data[i] = arr
        self._stamp[i] = want  # written after the pixels: a set stamp means a full row
        return arr

    def cached_fraction(self) -> float:
        if not self.enabled or not self.paths:
            return 0.0
        self._open()
        assert self._stamp is not None
        return float(np.mean(np.all(np.asarray(self._stamp) == self.expected, axis=1)))
