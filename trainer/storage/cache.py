"""A bounded on-disk cache of objects read from buckets (least recently used evicted first).

Entries are keyed by URI, size and modification time, so a changed object is
read again. The bound (bytes on disk) is DEFAULT_CACHE_BYTES unless
WHISPERFT_STORAGE_CACHE_BYTES says otherwise; an object larger than the bound
is read but not kept. `stats` reports what came from the bucket and what from disk.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from whisperft.trainer.storage.objects import Store, store_for
from whisperft.trainer.storage.uri import StorageURI

log = logging.getLogger(__name__)
DEFAULT_CACHE_BYTES = 10 * 1024**3  # 10 GiB
CACHE_BYTES_ENV = "WHISPERFT_STORAGE_CACHE_BYTES"


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    bytes_from_bucket: int = 0  # bytes read over the network for cache misses
    bytes_from_disk: int = 0  # bytes served from the local cache
    evictions: int = 0


class ObjectCache:
    def __init__(self, root: Path, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"cache bound must be >= 0 bytes, got {max_bytes}")
        self.root = root
        self.max_bytes = max_bytes
        self.stats = CacheStats()
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, int] = OrderedDict()  # name -> size, oldest use first
        root.mkdir(parents=True, exist_ok=True)
        found = [p for p in root.iterdir() if p.is_file() and not p.name.startswith(".")]
        for p in sorted(found, key=lambda p: p.stat().st_mtime):
            self._entries[p.name] = p.stat().st_size
        self._evict()

    @property
    def size_bytes(self) -> int:
        return sum(self._entries.values())

    @staticmethod
    def _name(uri: StorageURI, size: int, mtime_ns: int | None) -> str:
        return hashlib.sha256(f"{uri}\0{size}\0{mtime_ns}".encode()).hexdigest()[:32]

    def read(self, uri: StorageURI, *, store: Store | None = None) -> bytes:
        """The object's bytes, from disk when cached, else from the bucket (then kept)."""
        store = store or store_for(uri)
        info = store.info(uri)
        if info.size is None:
            raise FileNotFoundError(f"{uri}: no such object")
        name = self._name(uri, info.size, info.mtime_ns)
        path = self.root / name
        with self._lock:
            hit = name in self._entries
            if hit:
                self._entries.move_to_end(name)
        if hit:
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                data = None
            if data is not None and len(data) == info.size:
                os.utime(path)
                with self._lock:
                    self.stats.hits += 1
                    self.stats.bytes_from_disk += len(data)
                return data
        data = store.read_bytes(uri)
        with self._lock:
            self.stats.misses += 1
            self.stats.bytes_from_bucket += len(data)
        if len(data) <= self.max_bytes:
            fd, tmp = tempfile.mkstemp(prefix=".", dir=self.root)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
            with self._lock:
                self._entries[name] = len(data)
                self._entries.move_to_end(name)
                self._evict()
        return data

    def _evict(self) -> None:
        total = sum(self._entries.values())
        while total > self.max_bytes and self._entries:
            name, size = self._entries.popitem(last=False)
            (self.root / name).unlink(missing_ok=True)
            total -= size
            self.stats.evictions += 1


_DEFAULT: ObjectCache | None = None


def cache_bound(env: dict[str, str] | None = None) -> int:
    value = (os.environ if env is None else env).get(CACHE_BYTES_ENV)
    return int(value) if value else DEFAULT_CACHE_BYTES


def default_cache() -> ObjectCache:
    """The process-wide cache under $WHISPERFT_CACHE/storage-cache, bounded by cache_bound()."""
    global _DEFAULT
    root = (
        Path(os.environ.get("WHISPERFT_CACHE", Path.home() / ".cache" / "whisperft"))
        / "storage-cache"
    )
    bound = cache_bound()
    if _DEFAULT is None or _DEFAULT.root != root or _DEFAULT.max_bytes != bound:
        _DEFAULT = ObjectCache(root, bound)
    return _DEFAULT
