"""Freed heap memory goes back to the OS (glibc's malloc_trim), or nothing happens."""

from __future__ import annotations

import ctypes.util
import sys

import pytest

from whisperft.trainer import heap

pytestmark = pytest.mark.unit


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc and /proc only")
def test_freed_small_blocks_are_returned() -> None:
    # Many blocks below the mmap threshold come from the heap; freeing all but the last
    # leaves the heap's top pinned, so only malloc_trim (not free) can hand pages back.
    blocks = [bytearray(64 * 1024) for _ in range(4000)]  # ~256 MB, touched
    keep = blocks[-1]
    del blocks
    before = _rss_kib()
    assert heap.release() is True
    after = _rss_kib()
    assert before - after > 100 * 1024, (before, after)
    assert len(keep) == 64 * 1024


def test_no_c_library_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    heap._malloc_trim.cache_clear()
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    try:
        assert heap.release() is False
    finally:
        heap._malloc_trim.cache_clear()
