"""Rows of a raw array file, read when asked for, never mapped into the process.

The feature and encoder-state caches are big flat files of fixed-size rows
(480 KB of log-mel per clip, 1.1 MB of tiny.en encoder states). Memory-mapped,
every row a run has touched stays in its resident set until the run ends:
for the demo job 0.7 GB of page cache counted as the worker's memory, which
is what a memory limit on a pod or a laptop sees. Read row by row (``pread``
into a fresh array), the pages stay in the kernel's cache, shared and
reclaimable, and the process holds only the batch it is working on.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np


class Rows:
    """``rows[i]`` is row ``i`` of a ``(n, *row_shape)`` array stored raw at ``path``."""

    def __init__(self, path: Path, dtype: np.dtype | str, shape: tuple[int, ...]) -> None:
        self._fd = -1
        self.path = Path(path)
        self.dtype = np.dtype(dtype)
        self.shape = tuple(int(x) for x in shape)
        self._row_shape = self.shape[1:]
        self._row_bytes = int(np.prod(self._row_shape, dtype=np.int64)) * self.dtype.itemsize
        want = self.shape[0] * self._row_bytes
        have = self.path.stat().st_size
        if have != want:
            raise ValueError(f"{self.path}: {have} bytes, expected {want} for shape {self.shape}")
        self._fd = os.open(self.path, os.O_RDONLY)

    def __len__(self) -> int:
        return self.shape[0]

    def _row(self, i: int) -> np.ndarray:
        n = self.shape[0]
        if not -n <= i < n:
            raise IndexError(f"row {i} of {n}")
        i %= n
        buf = os.pread(self._fd, self._row_bytes, i * self._row_bytes)
        if len(buf) != self._row_bytes:
            raise OSError(f"{self.path}: short read of row {i}")
        return np.frombuffer(buf, dtype=self.dtype).reshape(self._row_shape)

    def __getitem__(self, key: int | slice | Sequence[int]) -> np.ndarray:
        """One row for an integer; stacked rows for a slice or a list of indices."""
        if isinstance(key, (int, np.integer)):
            return self._row(int(key))
        indices = range(*key.indices(self.shape[0])) if isinstance(key, slice) else key
        rows = [self._row(int(i)) for i in indices]
        if not rows:
            return np.empty((0, *self._row_shape), self.dtype)
        return np.stack(rows)

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self._row(i) for i in range(self.shape[0]))

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        with contextlib.suppress(OSError):
            self.close()
