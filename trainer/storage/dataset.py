"""A dataset in a bucket, read lazily: only the tables a split needs, clips when decoded.

`open_remote(uri)` makes a local *mirror* directory (in $WHISPERFT_CACHE) that
stands for the bucket prefix: it holds a source marker and, once a split is
opened, just that split's table (train.tsv, train.jsonl, train/metadata.csv,
...), downloaded and checked against the object's size and time. The format
readers run on the mirror unchanged; `remote_audio` maps each clip path they
produce back to its object, which is read through the bounded cache
(cache.py) only when the clip is decoded. Nothing else is listed or copied.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs

from whisperft.trainer.storage.cache import default_cache
from whisperft.trainer.storage.objects import Store, store_for
from whisperft.trainer.storage.uri import StorageURI, parse_uri

log = logging.getLogger(__name__)
SOURCE_MARKER = ".whisperft-remote.json"
# Tables (by split alias) each format may need; {s} is a split name.
TABLES = (
    "{s}.tsv",  # Common Voice release
    "{s}.jsonl",  # manifest folder
    "{s}.json",
    "{s}/metadata.csv",  # audiofolder, one metadata file per split folder
    "{s}/metadata.jsonl",
)
ROOT_TABLES = ("metadata.csv", "metadata.jsonl")  # audiofolder with one root metadata file
# save_to_disk directories are Arrow files read by `datasets` itself: refused from a bucket.
SAVED_DATASET_FILES = ("dataset_dict.json", "state.json")


@dataclass(frozen=True)
class RemoteFile:
    """An object that a Candidate's audio comes from; read when the clip is decoded."""

    uri: str

    def read(self) -> bytes:
        return default_cache().read(parse_uri(self.uri))


def mirrors_root() -> Path:
    cache = Path(os.environ.get("WHISPERFT_CACHE", Path.home() / ".cache" / "whisperft"))
    return cache / "storage-datasets"


def _mirror_dir(prefix: StorageURI) -> Path:
    digest = hashlib.sha256(str(prefix).encode()).hexdigest()[:16]
    return mirrors_root() / f"{digest}-{prefix.name or prefix.bucket}"


def remote_source(root: Path) -> StorageURI | None:
    """The bucket prefix a mirror stands for (None for an ordinary local path)."""
    folder = root if root.is_dir() else root.parent
    marker = folder / SOURCE_MARKER
    if not marker.is_file():
        return None
    return parse_uri(json.loads(marker.read_text())["uri"])


def open_remote(location: str) -> Path:
    """The mirror of a dataset prefix (or, for an object such as a manifest, its local copy).

    StorageError for a missing bucket, refused credentials or denied access;
    FileNotFoundError when neither an object nor a prefix is there.
    """
    uri = parse_uri(location)
    store = store_for(uri)
    store.check_bucket(uri)
    info = store.info(uri) if uri.key else None
    if info is not None and info.type == pafs.FileType.File:
        prefix, name = uri.parent, uri.name
    elif info is None or info.type == pafs.FileType.Directory:
        prefix, name = uri, ""
    else:
        raise FileNotFoundError(f"{uri}: no object or prefix there (as {store.principal})")
    mirror = _mirror_dir(prefix)
    mirror.mkdir(parents=True, exist_ok=True)
    (mirror / SOURCE_MARKER).write_text(json.dumps({"uri": str(prefix)}))
    if name:
        fetch(mirror, prefix, name, store=store)
        return mirror / name
    return mirror


def fetch(mirror: Path, prefix: StorageURI, rel: str, *, store: Store | None = None) -> bool:
    """Download `prefix/rel` into the mirror unless an identical copy is there; False if absent."""
    store = store or store_for(prefix)
    uri = prefix.join(rel)
    info = store.info(uri)
    target = mirror / rel
    if info.type == pafs.FileType.Directory:
        target.mkdir(parents=True, exist_ok=True)
        return True
    if info.type != pafs.FileType.File:
        return False
    mtime_ns = info.mtime_ns or 0
    if target.is_file():
        st = target.stat()
        if st.st_size == info.size and st.st_mtime_ns == mtime_ns:
            return True
    store.download_file(uri, target)
    os.utime(target, ns=(mtime_ns, mtime_ns))
    return True


def fetch_split_tables(mirror: Path, split_names: tuple[str, ...]) -> list[str]:
    """Bring the tables a split may be described by into the mirror; the ones found."""
    prefix = remote_source(mirror)
    if prefix is None:
        raise ValueError(f"{mirror}: not a bucket mirror")
    if not mirror.is_dir():  # a single object (a manifest or TSV) was named: it is there already
        return [mirror.name]
    store = store_for(prefix)
    found: list[str] = []
    for rel in SAVED_DATASET_FILES:
        if fetch(mirror, prefix, rel, store=store):
            found.append(rel)
    for name in split_names:
        for pattern in TABLES:
            rel = pattern.format(s=name)
            if fetch(mirror, prefix, rel, store=store):
                found.append(rel)
        # A split folder next to a root metadata file (audiofolder): only that it exists.
        if store.info(prefix.join(name)).type == pafs.FileType.Directory:
            (mirror / name).mkdir(exist_ok=True)
    for rel in ROOT_TABLES:
        if fetch(mirror, prefix, rel, store=store):
            found.append(rel)
    return found


def remote_audio(mirror: Path, path: Path) -> RemoteFile | None:
    """The object behind a clip path inside a mirror (None when `path` is not in one)."""
    folder = mirror if mirror.is_dir() else mirror.parent
    prefix = remote_source(folder)
    if prefix is None:
        return None
    try:
        rel = path.relative_to(folder)
    except ValueError:
        return None
    return RemoteFile(str(prefix.join(rel.as_posix())))


def fingerprint_parts(mirror: Path, split_names: tuple[str, ...]) -> list[str]:
    """Identity of a bucket dataset split: its prefix plus size and time of every table it may use."""
    folder = mirror if mirror.is_dir() else mirror.parent
    prefix = remote_source(folder)
    if prefix is None:
        raise ValueError(f"{mirror}: not a bucket mirror")
    store = store_for(prefix)
    parts = [str(prefix)]
    if not mirror.is_dir():
        names = [mirror.name]
    else:
        names = [i.base_name for i in store.list_dir(prefix) if i.type == pafs.FileType.File]
        names += [p.format(s=s) for s in split_names for p in TABLES if "/" in p]
    for rel in sorted(set(names)):
        info = store.info(prefix.join(rel))
        if info.type == pafs.FileType.File:
            parts.append(f"{rel}:{info.size}:{info.mtime_ns}")
    return parts
