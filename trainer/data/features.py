"""Log-mel features and label ids, computed once per source and cached on disk.

A cache entry is a directory holding ``features.f16`` (raw N x mels x frames
float16, streamed to disk so memory stays flat, read row by row by every worker), ``labels.json`` (token ids with the
prefix), ``meta.jsonl`` and ``info.json`` (counts, skips, key). The key covers
the source files, the split, the filters and the feature/tokenizer settings, so
a changed input never reuses a stale cache. Entries are written to a temporary
directory and renamed, so an interrupted run leaves no half entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import shutil
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from whisperft.trainer import cache_prune
from whisperft.trainer.data.rows import Rows

FEATURE_CACHE_VERSION = 2  # 2: meta holds each clip's seconds


@dataclass
class FeatureSet:
    """A cached split: features memory-mapped, labels and metadata in memory."""

    path: Path
    features: Rows  # (N, n_mels, n_frames) float16, read row by row (data/rows.py)
    labels: list[list[int]]
    sentences: list[str]
    meta: list[dict[str, str]]
    skipped: dict[str, int] = field(default_factory=dict)
    total_audio_s: float = 0.0

    def __len__(self) -> int:
        return len(self.labels)

    @classmethod
    def open(cls, path: Path) -> FeatureSet:
        info = json.loads((path / "info.json").read_text())
        labels = json.loads((path / "labels.json").read_text())
        meta = [json.loads(line) for line in (path / "meta.jsonl").read_text().splitlines() if line]
        shape = tuple(info["shape"])
        feats = Rows(path / "features.f16", np.float16, shape)
        return cls(
            path=path,
            features=feats,
            labels=labels,
            sentences=[m["sentence"] for m in meta],
            meta=meta,
            skipped=info.get("skipped", {}),
            total_audio_s=float(info.get("total_audio_s", 0.0)),
        )


def label_ids(tokenizer: Any, prefix: Sequence[int], eot: int, sentence: str) -> list[int]:
    """Prefix + text + end-of-text; the leading space matches Whisper's own outputs."""
    text_ids = tokenizer.encode(" " + sentence.strip(), add_special_tokens=False)
    return [*prefix, *text_ids, eot]


def source_fingerprint(path: Path, split: str) -> str:
    """Cheap identity of a dataset split: names, sizes and mtimes of its files.

    For a bucket dataset's mirror, the same of the objects (trainer/storage/dataset.py).
    """
    h = hashlib.sha256()
    from whisperft.trainer.storage.dataset import fingerprint_parts, remote_source

    if remote_source(path) is not None:
        from whisperft.trainer.data.splits import split_aliases

        for part in fingerprint_parts(path, split_aliases(split)):
            h.update(part.encode() + b"\0")
        h.update(split.encode())
        return h.hexdigest()[:16]
    items = sorted(path.rglob("*")) if path.is_dir() else [path]
    for item in items:
        if item.is_file() and (
            item.suffix in {".tsv", ".jsonl", ".csv", ".json", ".arrow"} or item.parent == path
        ):
            st = item.stat()
            h.update(
                f"{item.relative_to(path) if path.is_dir() else item.name}:{st.st_size}:{int(st.st_mtime)}".encode()
            )
    h.update(split.encode())
    return h.hexdigest()[:16]


def cache_key(parts: dict[str, Any]) -> str:
    blob = json.dumps({"v": FEATURE_CACHE_VERSION, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def build_feature_set(
    *,
    cache_root: Path,
    key: str,
    examples: Any,  # iterable of Example
    skipped: Counter[str],
    extract: Callable[..., np.ndarray],  # (clips, dtype) -> (B, mels, frames), as LogMel
    labels_for: Callable[[str], list[int]],
    progress: Callable[[Any], Any] | None = None,
    description: str = "",
    batch_size: int = 16,
) -> FeatureSet:
    """Build (or reuse) the cache entry ``cache_root/key``.

    ``extract`` maps a batch of clips to (B, mels, frames); at most ``batch_size``
    decoded clips are held at once (30 s of float32 each at most: 1.9 MB a clip).
    """
    final = cache_root / key
    if (final / "info.json").exists():
        cache_prune.touch(final)
        return FeatureSet.open(final)
    cache_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=cache_root))
    try:
        n = 0
        shape: tuple[int, ...] = ()
        labels: list[list[int]] = []
        meta: list[dict[str, str]] = []
        total_s = 0.0
        it = progress(examples) if progress else examples
        with open(tmp / "features.f16", "wb") as out:
            # Reading and decoding run ahead in a thread (soundfile and soxr release the
            # GIL), overlapping the log-mel of the batch before.
            for chunk in _prefetched(_chunks(it, batch_size)):
                feats = np.ascontiguousarray(extract([ex.audio for ex in chunk], np.float16))
                shape = feats.shape[1:]
                out.write(feats.tobytes())
                for ex in chunk:
                    labels.append(labels_for(ex.sentence))
                    seconds = len(ex.audio) / 16000.0
                    meta.append({**ex.meta, "sentence": ex.sentence, "seconds": f"{seconds:.3f}"})
                    total_s += seconds
                n += len(chunk)
        if n == 0:
            reasons = ", ".join(f"{k}={v}" for k, v in sorted(skipped.items())) or "none"
            raise ValueError(f"{description or key}: no usable examples (skipped: {reasons})")
        (tmp / "labels.json").write_text(json.dumps(labels))
        (tmp / "meta.jsonl").write_text("".join(json.dumps(m) + "\n" for m in meta))
        (tmp / "info.json").write_text(
            json.dumps(
                {
                    "key": key,
                    "n": n,
                    "shape": [n, *shape],
                    "skipped": dict(skipped),
                    "total_audio_s": total_s,
                    "description": description,
                },
                indent=2,
            )
        )
        try:
            os.rename(tmp, final)
        except OSError:  # another process won the race; use theirs
            shutil.rmtree(tmp, ignore_errors=True)
        cache_prune.touch(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return FeatureSet.open(final)


def _prefetched(chunks: Iterator[Any], depth: int = 2) -> Iterator[Any]:
    """``chunks`` produced by a background thread, at most ``depth`` ahead; its
    exceptions are raised here, in order, and an abandoned consumer stops it."""
    q: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for chunk in chunks:
                if not put(("item", chunk)):
                    return
            put(("done", None))
        except BaseException as exc:  # handed to the consumer
            put(("error", exc))

    thread = threading.Thread(target=produce, name="feature-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = q.get()
            if kind == "done":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        thread.join(timeout=5)


def _chunks(items: Any, size: int) -> Any:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
