"""Give heap memory that torch has freed back to the operating system.

glibc keeps what torch's CPU allocator frees in its arenas: a tensor below the
mmap threshold (which rises to 32 MB once big tensors are freed) comes from the
heap, and the freed space is reused only in part, so a CPU worker's RSS ratchets
up phase after phase. Measured on tiny.en, 2 cores: +0.3 GB left behind by one
evaluation of 100 clips and +0.7 GB by six training steps, all returned at once
by ``malloc_trim(0)``, which takes well under a millisecond. Where the C library
has no ``malloc_trim`` (musl, macOS) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    return getattr(libc, "malloc_trim", None)


def release() -> bool:
    """Return freed heap pages to the OS; whether the C library could."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
