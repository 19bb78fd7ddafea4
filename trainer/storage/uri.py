"""Storage locations as URIs: ``s3://bucket/key``, ``gs://bucket/key`` or a local path.

Pure string handling, no I/O: the one place that decides what is a bucket URI.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Literal

Scheme = Literal["s3", "gs"]
SCHEMES: tuple[Scheme, ...] = ("s3", "gs")
# gcs:// is what some tools (fsspec, gcsfs) write for gs://; it means the same bucket.
_ALIASES: dict[str, Scheme] = {"s3": "s3", "gs": "gs", "gcs": "gs"}


class URIError(ValueError):
    """A location that looks like a bucket URI but is not a valid one (names the text)."""


@dataclass(frozen=True)
class StorageURI:
    """A parsed bucket URI; `key` has no leading or trailing slash ("" is the bucket root)."""

    scheme: Scheme
    bucket: str
    key: str

    def __str__(self) -> str:
        return (
            f"{self.scheme}://{self.bucket}/{self.key}"
            if self.key
            else f"{self.scheme}://{self.bucket}"
        )

    @property
    def path(self) -> str:
        """The pyarrow.fs path: ``bucket/key`` (no scheme)."""
        return f"{self.bucket}/{self.key}" if self.key else self.bucket

    def join(self, *parts: str) -> StorageURI:
        """A key below this one; parts are '/'-separated, '..' and absolute parts are refused."""
        pieces = [self.key] if self.key else []
        for part in parts:
            for piece in part.split("/"):
                if piece in ("", "."):
                    continue
                if piece == "..":
                    raise URIError(f"{self}: '..' in {part!r} would leave the prefix")
                pieces.append(piece)
        return StorageURI(self.scheme, self.bucket, "/".join(pieces))

    @property
    def name(self) -> str:
        return posixpath.basename(self.key)

    @property
    def parent(self) -> StorageURI:
        return StorageURI(self.scheme, self.bucket, posixpath.dirname(self.key))

    def relative_to(self, other: StorageURI) -> str:
        """This key relative to the prefix `other` (URIError when it is not below it)."""
        if (self.scheme, self.bucket) != (other.scheme, other.bucket):
            raise URIError(f"{self} is not below {other}")
        if not other.key:
            return self.key
        if self.key == other.key:
            return ""
        if not self.key.startswith(other.key + "/"):
            raise URIError(f"{self} is not below {other}")
        return self.key[len(other.key) + 1 :]


def is_uri(location: object) -> bool:
    """True for text that starts with a bucket scheme (s3://, gs://, gcs://)."""
    if not isinstance(location, str) or "://" not in location:
        return False
    return location.split("://", 1)[0].lower() in _ALIASES


# Bucket names: S3 allows 3-63 of [a-z0-9.-]; GCS also '_' (and dotted names up
# to 222). Checked loosely here; the server has the last word.
_BUCKET_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789.-_")


def parse_uri(location: str) -> StorageURI:
    """Parse ``s3://bucket/key`` or ``gs://bucket/key``; URIError naming the text if malformed."""
    if not is_uri(location):
        raise URIError(f"{location!r}: not a bucket URI (want s3://BUCKET/KEY or gs://BUCKET/KEY)")
    raw_scheme, rest = location.split("://", 1)
    scheme = _ALIASES[raw_scheme.lower()]
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise URIError(f"{location!r}: no bucket name after {raw_scheme}://")
    if not 3 <= len(bucket) <= 222 or not set(bucket) <= _BUCKET_CHARS:
        raise URIError(
            f"{location!r}: {bucket!r} is not a valid bucket name "
            "(3-63 lowercase letters, digits, '.', '-' or '_')"
        )
    if "?" in key or "#" in key:
        raise URIError(f"{location!r}: query strings and fragments are not supported in a location")
    parts = [p for p in key.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise URIError(f"{location!r}: '..' is not allowed in a bucket key")
    return StorageURI(scheme, bucket, "/".join(parts))


def checkpoint_prefix(output_location: str, name: str) -> str:
    """Where a run keeps its checkpoints when its output is a bucket (one rule, everywhere)."""
    return str(parse_uri(output_location).join("checkpoints", name))
