"""audiofolder-style directories: audio files plus metadata.csv or metadata.jsonl.

Either one metadata file per split folder (<root>/<split>/metadata.csv), or one
at the root whose `file_name` values start with the split folder
("train/a.wav"); a root metadata file over a folder without split folders is
the "train" split. `file_name` is relative to the metadata file's folder.
CSV fields may be quoted (commas, even newlines, inside sentences).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from whisperft.trainer.data.columns import SPEAKER_COLUMNS, TEXT_COLUMNS, pick, pick_optional
from whisperft.trainer.data.errors import DataError
from whisperft.trainer.data.example import Candidate, Skip
from whisperft.trainer.data.lines import iter_lines, read_header
from whisperft.trainer.data.splits import split_aliases

METADATA_NAMES = ("metadata.csv", "metadata.jsonl")


def _metadata_in(folder: Path) -> Path | None:
    return next((folder / n for n in METADATA_NAMES if (folder / n).is_file()), None)


def has_metadata(root: Path) -> bool:
    if _metadata_in(root) is not None:
        return True
    return root.is_dir() and any(_metadata_in(p) for p in root.iterdir() if p.is_dir())


def locate(root: Path, split: str) -> tuple[Path, str | None]:
    """(metadata file, split-folder prefix to filter `file_name` by, or None for all rows)."""
    for name in split_aliases(split):
        metadata = _metadata_in(root / name)
        if metadata is not None:
            return metadata, None
    metadata = _metadata_in(root)
    if metadata is not None:
        for name in split_aliases(split):
            if (root / name).is_dir():
                return metadata, name
        if split == "train":
            return metadata, None
    raise DataError(
        f"{root}: audiofolder has no split {split!r}: no {split}/metadata.csv or .jsonl, "
        f"and no {split}/ folder next to a root metadata file"
    )


def _csv_rows(metadata: Path, skip: Skip) -> tuple[list[str], Iterator[tuple[str, dict[str, Any]]]]:
    header = next(csv.reader([read_header(metadata)]))

    def rows() -> Iterator[tuple[str, dict[str, Any]]]:
        lines = (
            line for _, line in iter_lines(metadata, skip, skip_header=True, keep_newline=True)
        )
        reader = csv.reader(lines)
        for fields in reader:
            where = f"{metadata}:{reader.line_num + 1}"
            if not fields or not any(f.strip() for f in fields):
                continue
            if len(fields) != len(header):
                skip("bad_row", f"{where}: {len(fields)} fields, header has {len(header)}")
                continue
            yield where, dict(zip(header, fields, strict=True))

    return header, rows()


def _jsonl_rows(
    metadata: Path, skip: Skip
) -> tuple[list[str], Iterator[tuple[str, dict[str, Any]]]]:
    first = json.loads(read_header(metadata)) if metadata.stat().st_size else None
    if not isinstance(first, dict):
        raise DataError(f"{metadata}: first line is not a JSON object")
    header = list(first)

    def rows() -> Iterator[tuple[str, dict[str, Any]]]:
        for lineno, line in iter_lines(metadata, skip):
            if not line.strip():
                continue
            where = f"{metadata}:{lineno}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                skip("bad_row", f"{where}: not JSON ({exc.msg})")
                continue
            if not isinstance(record, dict):
                skip("bad_row", f"{where}: want a JSON object")
                continue
            yield where, record

    return header, rows()


def candidates(root: Path, split: str, skip: Skip) -> tuple[str, Iterator[Candidate]]:
    metadata, prefix = locate(root, split)
    try:
        header, rows = (_csv_rows if metadata.suffix == ".csv" else _jsonl_rows)(metadata, skip)
    except json.JSONDecodeError as exc:
        raise DataError(f"{metadata}: first line is not JSON ({exc.msg})") from exc
    file_col = pick(metadata, header, ("file_name",), "file_name")
    text_col = pick(metadata, header, TEXT_COLUMNS, "text")
    speaker_col = pick_optional(header, SPEAKER_COLUMNS)

    def generate() -> Iterator[Candidate]:
        for where, record in rows:
            file_name = record.get(file_col)
            if not isinstance(file_name, str) or not file_name.strip():
                skip("bad_row", f"{where}: empty {file_col!r}")
                continue
            file_name = file_name.strip()
            if prefix is not None and Path(file_name).parts[0] != prefix:
                continue
            text = record.get(text_col)
            if not isinstance(text, str) or not text.strip():
                skip("empty_sentence", f"{where}: empty {text_col!r} for {file_name}")
                continue
            path = metadata.parent / file_name
            meta = {
                "id": Path(file_name).stem,
                "path": str(path),
                "speaker": str(record.get(speaker_col, "")) if speaker_col else "",
                "split": split,
            }
            yield Candidate(audio=path, sentence=text.strip(), meta=meta)

    return str(metadata), generate()
