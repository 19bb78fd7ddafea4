"""Object operations on one bucket scheme, every call retried per retry.py and counted.

A Store wraps one pyarrow filesystem (from fs.py) and the principal it acts as;
its errors are StorageError naming the URI and that principal, except a missing
object, which is FileNotFoundError (an answer, not a failure).
"""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pyarrow.fs as pafs

from whisperft.trainer.storage.errors import StorageError
from whisperft.trainer.storage.fs import Resolved, filesystem_for
from whisperft.trainer.storage.retry import RetryPolicy, with_retry
from whisperft.trainer.storage.uri import Scheme, StorageURI, parse_uri

T = TypeVar("T")
CHUNK_BYTES = 4 * 1024 * 1024  # streamed copies move this much per read/write

# The environment variables fs.py and retry.py read: a Store is reused only while they are unchanged.
ENV_KEYS = (
    "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ROLE_ARN",
    "WHISPERFT_S3_ANONYMOUS", "WHISPERFT_GCS_ENDPOINT", "STORAGE_EMULATOR_HOST",
    "WHISPERFT_GCS_ANONYMOUS", "GOOGLE_CLOUD_PROJECT", "GOOGLE_APPLICATION_CREDENTIALS",
    "WHISPERFT_STORAGE_CONNECT_TIMEOUT_S", "WHISPERFT_STORAGE_REQUEST_TIMEOUT_S",
    "WHISPERFT_STORAGE_MAX_ATTEMPTS", "WHISPERFT_STORAGE_RETRY_BASE_S", "WHISPERFT_STORAGE_RETRY_MAX_S",
)  # fmt: skip


@dataclass
class Counters:
    """Bytes moved and requests made through one Store (a running total)."""

    bytes_read: int = 0
    bytes_written: int = 0
    objects_read: int = 0
    objects_written: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(
        self, *, read: int = 0, written: int = 0, objects_read: int = 0, objects_written: int = 0
    ) -> None:
        with self._lock:
            self.bytes_read += read
            self.bytes_written += written
            self.objects_read += objects_read
            self.objects_written += objects_written


class Store:
    def __init__(self, resolved: Resolved, policy: RetryPolicy | None = None) -> None:
        self.fs = resolved.filesystem
        self.principal = resolved.principal
        self.policy = policy or RetryPolicy.from_env()
        self.counters = Counters()

    @classmethod
    def from_env(cls, scheme: Scheme, env: Mapping[str, str] | None = None) -> Store:
        env = os.environ if env is None else env
        return cls(filesystem_for(scheme, env), RetryPolicy.from_env(env))

    # -- plumbing ---------------------------------------------------------------
    def _retry(self, uri: StorageURI, operation: str, fn: Callable[[], T]) -> T:
        return with_retry(
            fn, uri=str(uri), principal=self.principal, operation=operation, policy=self.policy
        )

    def check_bucket(self, uri: StorageURI) -> None:
        """StorageError(no_bucket) unless the URI's bucket exists and this principal may see it."""
        bucket = StorageURI(uri.scheme, uri.bucket, "")
        info = self._retry(uri, "check bucket", lambda: self.fs.get_file_info(bucket.path))
        if info.type == pafs.FileType.NotFound:
            raise StorageError(
                str(uri), self.principal, "no_bucket", f"bucket {uri.bucket!r} not found",
                operation="check bucket",
            )  # fmt: skip

    # -- metadata ---------------------------------------------------------------
    def info(self, uri: StorageURI) -> pafs.FileInfo:
        return self._retry(uri, "stat", lambda: self.fs.get_file_info(uri.path))

    def is_file(self, uri: StorageURI) -> bool:
        return self.info(uri).type == pafs.FileType.File

    def list_dir(self, uri: StorageURI, *, recursive: bool = False) -> list[pafs.FileInfo]:
        """Objects and sub-prefixes below `uri` ([] when there are none)."""
        selector = pafs.FileSelector(uri.path, recursive=recursive, allow_not_found=True)
        return self._retry(uri, "list", lambda: self.fs.get_file_info(selector))

    def delete(self, uri: StorageURI) -> None:
        def go() -> None:
            with contextlib.suppress(FileNotFoundError):
                self.fs.delete_file(uri.path)

        self._retry(uri, "delete", go)

    def delete_prefix(self, uri: StorageURI) -> None:
        def go() -> None:
            with contextlib.suppress(FileNotFoundError):
                self.fs.delete_dir_contents(uri.path, missing_dir_ok=True)

        self._retry(uri, "delete prefix", go)

    # -- data -------------------------------------------------------------------
    def read_bytes(self, uri: StorageURI) -> bytes:
        def go() -> bytes:
            with self.fs.open_input_stream(uri.path) as f:
                data = f.read()
            return bytes(data)

        data = self._retry(uri, "read", go)
        self.counters.add(read=len(data), objects_read=1)
        return data

    def write_bytes(self, uri: StorageURI, data: bytes) -> None:
        def go() -> None:
            with self.fs.open_output_stream(uri.path) as f:
                f.write(data)

        self._retry(uri, "write", go)
        self.counters.add(written=len(data), objects_written=1)

    def upload_file(self, local: Path, uri: StorageURI) -> int:
        """Stream a local file to `uri` (a failed try restarts the whole object); its size."""
        size = local.stat().st_size

        def go() -> None:
            with local.open("rb") as src, self.fs.open_output_stream(uri.path) as dst:
                for chunk in iter(functools.partial(src.read, CHUNK_BYTES), b""):
                    dst.write(chunk)

        self._retry(uri, "upload", go)
        self.counters.add(written=size, objects_written=1)
        return size

    def download_file(self, uri: StorageURI, local: Path) -> int:
        """Stream `uri` to `local` through a temporary file renamed into place; its size."""
        local.parent.mkdir(parents=True, exist_ok=True)

        def go() -> int:
            fd, tmp = tempfile.mkstemp(prefix=f".{local.name}.", dir=local.parent)
            n = 0
            try:
                with os.fdopen(fd, "wb") as dst, self.fs.open_input_stream(uri.path) as src:
                    while chunk := src.read(CHUNK_BYTES):
                        dst.write(chunk)
                        n += len(chunk)
                os.replace(tmp, local)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            return n

        n = self._retry(uri, "download", go)
        self.counters.add(read=n, objects_read=1)
        return n

    def walk_files(self, uri: StorageURI) -> Iterator[tuple[str, pafs.FileInfo]]:
        """(key relative to `uri`, info) of every object below the prefix, sorted."""
        prefix = uri.path.rstrip("/") + "/"
        infos = [i for i in self.list_dir(uri, recursive=True) if i.type == pafs.FileType.File]
        for info in sorted(infos, key=lambda i: i.path):
            yield info.path[len(prefix) :] if info.path.startswith(prefix) else info.base_name, info

    def subprefixes(self, uri: StorageURI) -> list[str]:
        """Names of the sub-prefixes directly below `uri`, from a recursive listing.

        (pyarrow's non-recursive GCS listing leaves out prefixes that have no
        directory marker object, so they are derived from the object keys.)
        """
        return sorted({rel.split("/", 1)[0] for rel, _ in self.walk_files(uri) if "/" in rel})


_STORES: dict[tuple[str, tuple[str | None, ...]], Store] = {}
_STORES_LOCK = threading.Lock()


def store_for(uri: StorageURI | str) -> Store:
    """The process's Store for this URI's scheme under the current environment (reused)."""
    parsed = parse_uri(uri) if isinstance(uri, str) else uri
    key = (parsed.scheme, tuple(os.environ.get(k) for k in ENV_KEYS))
    with _STORES_LOCK:
        store = _STORES.get(key)
        if store is None:
            store = _STORES[key] = Store.from_env(parsed.scheme)
        return store


def totals() -> Counters:
    """What every Store of this process has moved so far (for results.json and the log)."""
    out = Counters()
    with _STORES_LOCK:
        for store in _STORES.values():
            c = store.counters
            out.add(
                read=c.bytes_read,
                written=c.bytes_written,
                objects_read=c.objects_read,
                objects_written=c.objects_written,
            )
    return out
