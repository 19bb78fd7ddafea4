"""One entry point over all formats: decode, filter by duration and label length, count skips."""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import get_args

from whisperft.operator.api.types import DataFormat
from whisperft.trainer.data import commonvoice, hf_datasets, hub, manifest
from whisperft.trainer.data.audio import SAMPLE_RATE, decode_bytes, load_audio, to_mono_16k
from whisperft.trainer.data.bundled import resolve_data_path
from whisperft.trainer.data.errors import DataError
from whisperft.trainer.data.example import Candidate, Example, Skip, SplitData
from whisperft.trainer.data.features import source_fingerprint
from whisperft.trainer.data.hub import HubOptions
from whisperft.trainer.data.splits import split_aliases
from whisperft.trainer.storage import dataset as remote

log = logging.getLogger(__name__)

FORMATS: tuple[str, ...] = get_args(DataFormat)
MAX_LABEL_TOKENS = 448  # Whisper's decoder context
_LOGGED_PER_REASON = 3  # the first few skips per reason are logged in full

_READERS = {
    "commonvoice": commonvoice.candidates,
    "hf": hf_datasets.candidates,
    "manifest": manifest.candidates,
    "hub": hub.candidates,
}


class _Skipper:
    def __init__(self, counter: collections.Counter[str]) -> None:
        self.counter = counter

    def __call__(self, reason: str, message: str) -> None:
        self.counter[reason] += 1
        if self.counter[reason] <= _LOGGED_PER_REASON:
            log.warning("skipped (%s): %s", reason, message)
        elif self.counter[reason] == _LOGGED_PER_REASON + 1:
            log.warning("skipped (%s): more of these; see the skip counts", reason)


def decode_candidate(candidate: Candidate, *, max_seconds: float | None = None) -> Example:
    """Decode a candidate's audio into an Example (DataError with a skip reason on failure);
    with ``max_seconds`` a longer clip is refused without being decoded whole."""
    source = candidate.audio
    if isinstance(source, Path):
        audio = load_audio(source, max_seconds=max_seconds)
    elif isinstance(source, remote.RemoteFile):
        try:
            data = source.read()
        except FileNotFoundError as exc:
            raise DataError(f"{source.uri}: audio object not found", reason="missing_clip") from exc
        audio = decode_bytes(data, name=source.uri, max_seconds=max_seconds)
    elif isinstance(source, bytes):
        audio = decode_bytes(
            source, name=candidate.meta.get("path", "<bytes>"), max_seconds=max_seconds
        )
    else:
        samples, rate = source
        audio = to_mono_16k(samples, rate, name=candidate.meta.get("path", "<array>"))
    meta = dict(candidate.meta)
    meta["duration"] = f"{len(audio) / SAMPLE_RATE:.3f}"
    return Example(audio=audio, sentence=candidate.sentence, meta=meta)


def _check_args(fmt: str, min_duration_s: float, max_duration_s: float) -> None:
    if fmt not in _READERS:
        raise DataError(f"unknown data format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if min_duration_s < 0 or max_duration_s <= min_duration_s:
        raise DataError(
            f"bad duration bounds: min {min_duration_s} s, max {max_duration_s} s "
            "(want 0 <= min < max)"
        )


def open_split(
    fmt: DataFormat | str,
    path: str | Path,
    split: str,
    skip: Skip,
    hub_options: HubOptions | None = None,
) -> tuple[str, Iterator[Candidate]]:
    """Resolve the path and validate the layout now; rows are streamed later."""
    if fmt not in _READERS:
        raise DataError(f"unknown data format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt == "hub":  # a hub id or a local hub-layout repository; never a bucket
        return hub.candidates(path, split, skip, hub_options)
    root = resolve_data_path(path)
    prefix = remote.remote_source(root)
    if prefix is None:
        return _READERS[fmt](root, split, skip)
    tables = remote.fetch_split_tables(root, split_aliases(split))
    if fmt == "hf" and any(t in remote.SAVED_DATASET_FILES for t in tables):
        raise DataError(
            f"{prefix}: a save_to_disk dataset cannot be read from a bucket; store it as an "
            "audiofolder (metadata.csv + audio files) or a JSONL manifest, or copy it to a claim"
        )
    source, rows = _READERS[fmt](root, split, skip)
    return f"{prefix}: {source}", _from_bucket(root, rows, str(prefix), split)


def _from_bucket(
    root: Path, rows: Iterator[Candidate], prefix: str, split: str
) -> Iterator[Candidate]:
    """The reader's rows with clip paths inside the mirror pointed back at their objects."""
    cache = remote.default_cache()
    hits, misses = cache.stats.hits, cache.stats.misses
    from_bucket, from_disk = cache.stats.bytes_from_bucket, cache.stats.bytes_from_disk
    for candidate in rows:
        audio = candidate.audio
        if isinstance(audio, Path):
            found = remote.remote_audio(root, audio)
            if found is not None:
                meta = {**candidate.meta, "path": found.uri}
                candidate = Candidate(found, candidate.sentence, meta, candidate.duration_s)
        yield candidate
    s = cache.stats
    log.info(
        "%s [%s]: %d clips read from the bucket (%d bytes), %d from the local cache (%d bytes)",
        prefix, split, s.misses - misses, s.bytes_from_bucket - from_bucket,
        s.hits - hits, s.bytes_from_disk - from_disk,
    )  # fmt: skip


def iter_split(
    fmt: DataFormat | str,
    path: str | Path,
    split: str,
    *,
    skipped: collections.Counter[str],
    min_duration_s: float = 0.0,
    max_duration_s: float = 30.0,
    label_length: Callable[[str], int] | None = None,
    max_label_tokens: int = MAX_LABEL_TOKENS,
    limit: int | None = None,
    hub_options: HubOptions | None = None,
) -> Iterator[Example]:
    """Stream usable examples of one split; every dropped row increments `skipped[reason]`.

    Layout problems (missing split file, wrong columns, unknown format) raise
    DataError here, before the first example; single bad rows are skipped.
    """
    _check_args(fmt, min_duration_s, max_duration_s)
    skip = _Skipper(skipped)
    _, rows = open_split(fmt, path, split, skip, hub_options)
    return _filtered(
        rows, skip, min_duration_s, max_duration_s, label_length, max_label_tokens, limit
    )


def _filtered(
    rows: Iterator[Candidate],
    skip: Skip,
    min_duration_s: float,
    max_duration_s: float,
    label_length: Callable[[str], int] | None,
    max_label_tokens: int,
    limit: int | None,
) -> Iterator[Example]:
    produced = 0
    for candidate in rows:
        if limit is not None and produced >= limit:
            return
        where = candidate.meta.get("path", candidate.meta.get("id", "?"))
        if label_length is not None:
            tokens = label_length(candidate.sentence)
            if tokens > max_label_tokens:
                skip("label_too_long", f"{where}: {tokens} label tokens > {max_label_tokens}")
                continue
        declared = candidate.duration_s
        if declared is not None and not min_duration_s <= declared <= max_duration_s:
            reason = "too_short" if declared < min_duration_s else "too_long"
            skip(
                reason,
                f"{where}: declared {declared:.2f} s outside {min_duration_s}-{max_duration_s} s",
            )
            continue
        try:
            example = decode_candidate(candidate, max_seconds=max_duration_s)
        except DataError as exc:
            skip(exc.reason, str(exc))
            continue
        seconds = len(example.audio) / SAMPLE_RATE
        if seconds < min_duration_s:
            skip("too_short", f"{where}: {seconds:.2f} s < {min_duration_s} s")
            continue
        if seconds > max_duration_s:
            skip("too_long", f"{where}: {seconds:.2f} s > {max_duration_s} s")
            continue
        produced += 1
        yield example
        if limit is not None and produced >= limit:
            return  # before pulling another row: a stream reads no further


def read_split(
    fmt: DataFormat | str,
    path: str | Path,
    split: str,
    *,
    min_duration_s: float = 0.0,
    max_duration_s: float = 30.0,
    label_length: Callable[[str], int] | None = None,
    max_label_tokens: int = MAX_LABEL_TOKENS,
    limit: int | None = None,
    hub_options: HubOptions | None = None,
) -> SplitData:
    """Read a whole split; DataError naming the source and skip reasons if nothing is usable."""
    _check_args(fmt, min_duration_s, max_duration_s)
    skipped: collections.Counter[str] = collections.Counter()
    skip = _Skipper(skipped)
    source, rows = open_split(fmt, path, split, skip, hub_options)
    examples = list(
        _filtered(rows, skip, min_duration_s, max_duration_s, label_length, max_label_tokens, limit)
    )
    if not examples:
        reasons = ", ".join(f"{reason}: {n}" for reason, n in skipped.most_common())
        raise DataError(
            f"{source}: no usable examples in split {split!r}"
            + (f"; skipped {reasons}" if reasons else "; the split has no rows")
        )
    if skipped:
        log.info("%s: %d examples, skipped %s", source, len(examples), dict(skipped))
    return SplitData(examples=examples, skipped=skipped, source=source)


def split_identity(
    fmt: DataFormat | str,
    path: str | Path,
    split: str,
    hub_options: HubOptions | None = None,
) -> dict[str, str]:
    """What names one split in the feature cache key: its source and a cheap fingerprint
    (file names, sizes and mtimes; for a hub id, id, config, revision and commit)."""
    if fmt == "hub":
        return {
            "source": hub.source_name(path),
            "fingerprint": hub.fingerprint(path, split, hub_options),
        }
    root = resolve_data_path(path)
    return {"source": str(root.resolve()), "fingerprint": source_fingerprint(root, split)}
