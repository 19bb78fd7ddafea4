"""Line-by-line reading of text tables that survives single bad lines."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from whisperft.trainer.data.errors import DataError
from whisperft.trainer.data.example import Skip


def read_header(path: Path) -> str:
    """The first line, decoded; a header that is not UTF-8 fails the whole file."""
    with path.open("rb") as f:
        raw = f.readline()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: header line is not UTF-8 ({exc.reason})") from exc
    text = text.removeprefix("\ufeff").rstrip("\r\n")
    if not text.strip():
        raise DataError(f"{path}: empty file or blank header line")
    return text


def iter_lines(
    path: Path, skip: Skip, *, skip_header: bool = False, keep_newline: bool = False
) -> Iterator[tuple[int, str]]:
    """(line number, text), streamed; a line that is not UTF-8 is skipped and counted."""
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if lineno == 1 and skip_header:
                continue
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                skip(
                    "bad_encoding", f"{path}:{lineno}: not UTF-8 ({exc.reason} at byte {exc.start})"
                )
                continue
            if lineno == 1:
                line = line.removeprefix("\ufeff")
            yield lineno, (line if keep_newline else line.rstrip("\r\n"))
