"""Common Voice release directories, as Mozilla ships them.

    <root>/train.tsv dev.tsv test.tsv validated.tsv ...   tab-separated, header row
    <root>/clips/common_voice_<lang>_<n>.mp3              48 kHz mono MP3

The TSVs are read as plain tab-split lines (no quote handling: sentences may
contain quote characters, as the release files do), streamed line by line.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from whisperft.trainer.data.errors import DataError
from whisperft.trainer.data.example import Candidate, Skip
from whisperft.trainer.data.lines import iter_lines, read_header
from whisperft.trainer.data.splits import split_aliases

COLUMNS = (
    "client_id",
    "path",
    "sentence",
    "up_votes",
    "down_votes",
    "age",
    "gender",
    "accents",
    "locale",
    "segment",
)
REQUIRED = ("client_id", "path", "sentence")
# Columns later releases added; accepted without comment.
NEWER_COLUMNS = ("variant", "sentence_id", "sentence_domain", "accent")
_META = ("locale", "gender", "accents", "age")


def split_file(root: Path, split: str) -> Path:
    """The TSV for `split` ("dev" also finds validation.tsv and the reverse)."""
    if root.is_file() and root.suffix == ".tsv":
        return root
    for name in split_aliases(split):
        candidate = root / f"{name}.tsv"
        if candidate.is_file():
            return candidate
    found = sorted(p.name for p in root.glob("*.tsv")) if root.is_dir() else []
    raise DataError(
        f"{root}: no {split}.tsv (a Common Voice release directory has train.tsv, dev.tsv, "
        f"test.tsv and clips/); found: {', '.join(found) or 'no .tsv files'}"
    )


def check_header(tsv: Path, header: list[str]) -> None:
    missing = [c for c in REQUIRED if c not in header]
    duplicated = sorted({c for c in header if header.count(c) > 1})
    if missing or duplicated:
        known = set(COLUMNS) | set(NEWER_COLUMNS)
        extra = [c for c in header if c not in known]
        parts = [f"missing columns {missing}"] if missing else []
        if duplicated:
            parts.append(f"duplicated columns {duplicated}")
        if extra:
            parts.append(f"unexpected columns {extra}")
        raise DataError(
            f"{tsv}: not a Common Voice split file: {'; '.join(parts)}; "
            f"expected tab-separated columns: {' '.join(COLUMNS)}"
        )


def candidates(root: Path, split: str, skip: Skip) -> tuple[str, Iterator[Candidate]]:
    """Validate the layout now; stream the rows later."""
    tsv = split_file(root, split)
    clips = tsv.parent / "clips"
    header = read_header(tsv).split("\t")
    check_header(tsv, header)
    index = {name: i for i, name in enumerate(header)}

    def rows() -> Iterator[Candidate]:
        for lineno, line in iter_lines(tsv, skip, skip_header=True):
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) != len(header):
                skip(
                    "bad_row",
                    f"{tsv}:{lineno}: {len(fields)} fields, header has {len(header)}",
                )
                continue
            sentence = fields[index["sentence"]].strip()
            clip_name = fields[index["path"]].strip()
            if not clip_name:
                skip("bad_row", f"{tsv}:{lineno}: empty path")
                continue
            if not sentence:
                skip("empty_sentence", f"{tsv}:{lineno}: empty sentence for {clip_name}")
                continue
            clip = clips / clip_name
            if not clip.suffix and not clip.exists():
                clip = clip.with_suffix(".mp3")  # the earliest releases left it off
            meta = {
                "id": Path(clip_name).stem,
                "path": str(clip),
                "speaker": fields[index["client_id"]],
                "split": split,
            }
            meta.update({k: fields[index[k]] for k in _META if k in index})
            yield Candidate(audio=clip, sentence=sentence, meta=meta)

    return str(tsv), rows()
