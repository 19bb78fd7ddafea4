"""JSONL manifests: one {"audio": path, "text": ...} object per line.

`audio` is relative to the manifest's folder, absolute, or an s3:// / gs:// URI. Optional keys:
`id`, `speaker`, `duration` (seconds; lets the duration filter drop a clip
without decoding it). `sentence` is accepted in place of `text`.
The data path is either the manifest file itself or a folder holding
<split>.jsonl.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from whisperft.trainer.data.errors import DataError
from whisperft.trainer.data.example import Candidate, Skip
from whisperft.trainer.data.lines import iter_lines
from whisperft.trainer.data.splits import split_aliases
from whisperft.trainer.storage.dataset import RemoteFile
from whisperft.trainer.storage.uri import URIError, is_uri, parse_uri

TEXT_KEYS = ("text", "sentence")


def manifest_file(root: Path, split: str) -> Path:
    if root.is_file():
        return root
    for name in split_aliases(split):
        for suffix in (".jsonl", ".json"):
            candidate = root / f"{name}{suffix}"
            if candidate.is_file():
                return candidate
    found = sorted(p.name for p in root.glob("*.json*"))
    raise DataError(
        f"{root}: no {split}.jsonl manifest; found: {', '.join(found) or 'no .jsonl files'}"
    )


def _parse(manifest: Path, lineno: int, line: str, split: str, skip: Skip) -> Candidate | None:
    where = f"{manifest}:{lineno}"
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        skip("bad_row", f"{where}: not JSON ({exc.msg})")
        return None
    if not isinstance(record, dict):
        skip("bad_row", f"{where}: want a JSON object, got {type(record).__name__}")
        return None
    audio = record.get("audio")
    text_key = next((k for k in TEXT_KEYS if k in record), None)
    if not isinstance(audio, str) or not audio or text_key is None:
        skip("bad_row", f"{where}: want keys 'audio' (a path) and 'text'; got {sorted(record)}")
        return None
    text = record[text_key]
    if not isinstance(text, str) or not text.strip():
        skip("empty_sentence", f"{where}: empty {text_key!r} for {audio}")
        return None
    duration = record.get("duration")
    if duration is not None and not isinstance(duration, int | float):
        skip("bad_row", f"{where}: 'duration' must be a number, got {duration!r}")
        return None
    source: Path | RemoteFile
    if is_uri(audio):
        try:
            source = RemoteFile(str(parse_uri(audio)))
        except URIError as exc:
            skip("bad_row", f"{where}: {exc}")
            return None
    else:
        source = Path(audio) if Path(audio).is_absolute() else manifest.parent / audio
    meta = {
        "id": str(record.get("id", f"{manifest.stem}:{lineno}")),
        "path": source.uri if isinstance(source, RemoteFile) else str(source),
        "speaker": str(record.get("speaker", "")),
        "split": split,
    }
    return Candidate(
        audio=source,
        sentence=text.strip(),
        meta=meta,
        duration_s=None if duration is None else float(duration),
    )


def candidates(root: Path, split: str, skip: Skip) -> tuple[str, Iterator[Candidate]]:
    manifest = manifest_file(root, split)

    def rows() -> Iterator[Candidate]:
        for lineno, line in iter_lines(manifest, skip):
            if line.strip():
                candidate = _parse(manifest, lineno, line, split, skip)
                if candidate is not None:
                    yield candidate

    return str(manifest), rows()
