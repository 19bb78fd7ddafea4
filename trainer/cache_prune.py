"""Keep the feature and encoder-output caches on a claim within a bound.

Entries are the directories directly below the cache root: feature sets
(`<key>/`, trainer.data.features) and encoder-prefix caches (`encoder-<key>/`,
trainer.encoder_cache). Every use touches an entry's `.last_used`; when the
entries exceed the bound, the least recently used go first, never one this run
uses. Temporary directories a killed run left (`.<key>-*`) older than a day go
too. A spec that changes often (new splits, limits, models) would otherwise fill
the claim with entries nothing reads again.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)
USED = ".last_used"
STALE_TMP_S = 24 * 3600.0


def touch(entry: Path) -> None:
    with contextlib.suppress(OSError):  # a read-only mount: nothing to prune there either
        (entry / USED).touch()


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _last_used(entry: Path) -> float:
    marker = entry / USED
    return marker.stat().st_mtime if marker.exists() else entry.stat().st_mtime


def prune(root: Path, *, keep: Iterable[Path], max_bytes: int | None) -> list[Path]:
    """Remove least recently used entries until the rest fit in ``max_bytes``; the removed."""
    if not root.is_dir():
        return []
    kept = {p.resolve() for p in keep}
    removed: list[Path] = []
    now = time.time()
    for tmp in root.glob(".*-*"):
        if tmp.is_dir() and now - tmp.stat().st_mtime > STALE_TMP_S:
            shutil.rmtree(tmp, ignore_errors=True)
            removed.append(tmp)
    if max_bytes is None:
        return removed
    entries = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    sizes = {p: _size(p) for p in entries}
    total = sum(sizes.values())
    for entry in sorted(entries, key=_last_used):
        if total <= max_bytes:
            break
        if entry.resolve() in kept:
            continue
        shutil.rmtree(entry, ignore_errors=True)
        total -= sizes[entry]
        removed.append(entry)
        log.info("cache: removed %s (%.1f MB, least recently used)", entry, sizes[entry] / 1e6)
    if total > max_bytes:
        log.warning(
            "cache %s holds %.2f GiB in entries this run uses, above its bound of %.2f GiB",
            root, total / 2**30, max_bytes / 2**30,
        )  # fmt: skip
    return removed
