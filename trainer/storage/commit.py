"""A directory in a bucket as one unit: staged objects, then a completion marker written LAST.

An upload writes every file under the final prefix, then ``_WHISPERFT_COMPLETE.json``
listing each file's size and SHA-256. A prefix without the marker, or whose
objects do not match it, is not complete: readers skip it (a checkpoint cut off
mid-upload is never counted as good). Re-uploading over a prefix deletes its
marker first, so a half-overwritten prefix is not complete either.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

from whisperft.trainer.storage.objects import CHUNK_BYTES, Store, store_for
from whisperft.trainer.storage.uri import StorageURI

log = logging.getLogger(__name__)
MARKER = "_WHISPERFT_COMPLETE.json"
MARKER_VERSION = 1


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            h.update(chunk)
    return h.hexdigest()


def upload_tree(local_dir: Path, uri: StorageURI, *, store: Store | None = None) -> dict[str, Any]:
    """Upload every file below `local_dir` to the prefix `uri`, then the marker; the marker's content."""
    store = store or store_for(uri)
    store.check_bucket(uri)
    store.delete(uri.join(MARKER))
    files: dict[str, dict[str, Any]] = {}
    for path in sorted(p for p in local_dir.rglob("*") if p.is_file()):
        rel = path.relative_to(local_dir).as_posix()
        if rel == MARKER:
            continue
        files[rel] = {"size": path.stat().st_size, "sha256": _sha256(path)}
        store.upload_file(path, uri.join(rel))
    marker = {"version": MARKER_VERSION, "files": files}
    store.write_bytes(uri.join(MARKER), json.dumps(marker, indent=1, sort_keys=True).encode())
    log.info(
        "%s: committed %d files (%d bytes)", uri, len(files), sum(f["size"] for f in files.values())
    )
    return marker


def completed(uri: StorageURI, *, store: Store | None = None) -> dict[str, Any] | None:
    """The marker of a complete prefix, or None (no marker, unreadable, or objects that differ)."""
    store = store or store_for(uri)
    try:
        marker = json.loads(store.read_bytes(uri.join(MARKER)))
    except FileNotFoundError:
        return None
    except ValueError:
        log.warning("%s: unreadable %s; not complete", uri, MARKER)
        return None
    files = marker.get("files") if isinstance(marker, dict) else None
    if not isinstance(files, dict):
        log.warning("%s: %s lists no files; not complete", uri, MARKER)
        return None
    present = {rel: info.size for rel, info in store.walk_files(uri)}
    for rel, meta in files.items():
        if present.get(rel) != meta.get("size"):
            log.warning("%s: %s is %s, the marker says %s bytes; not complete",
                        uri, rel, present.get(rel, "missing"), meta.get("size"))  # fmt: skip
            return None
    return marker


def download_tree(
    uri: StorageURI, local_dir: Path, *, store: Store | None = None
) -> dict[str, Any]:
    """Download a complete prefix into `local_dir` (replaced whole), checking every SHA-256."""
    store = store or store_for(uri)
    marker = completed(uri, store=store)
    if marker is None:
        raise FileNotFoundError(f"{uri}: not a complete upload (no valid {MARKER})")
    local_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{local_dir.name}.", dir=local_dir.parent))
    try:
        for rel, meta in marker["files"].items():
            target = tmp / rel
            store.download_file(uri.join(rel), target)
            digest = _sha256(target)
            if digest != meta["sha256"]:
                raise OSError(
                    f"{uri.join(rel)}: SHA-256 {digest} differs from the marker's {meta['sha256']}"
                )
        if local_dir.exists():
            shutil.rmtree(local_dir)
        tmp.rename(local_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return marker


def complete_prefixes(uri: StorageURI, *, store: Store | None = None) -> list[StorageURI]:
    """The sub-prefixes directly below `uri` that are complete uploads, sorted by name."""
    store = store or store_for(uri)
    out = []
    for name in store.subprefixes(uri):
        candidate = uri.join(name)
        if completed(candidate, store=store) is not None:
            out.append(candidate)
        else:
            log.warning("%s: incomplete upload (no valid %s); ignored", candidate, MARKER)
    return out
