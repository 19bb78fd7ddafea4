"""Hugging Face `datasets` directories: save_to_disk output, or an audiofolder.

A save_to_disk directory is read through its Arrow tables only
(`with_format("arrow")`), never through `datasets.Audio` decoding: that needs
torchcodec and FFmpeg in datasets >= 4. The audio cells ({bytes, path} structs,
plain paths, or {array, sampling_rate}) are decoded by our soundfile path.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from whisperft.trainer.data import audiofolder
from whisperft.trainer.data.columns import (
    AUDIO_COLUMNS,
    SPEAKER_COLUMNS,
    TEXT_COLUMNS,
    pick,
    pick_optional,
)
from whisperft.trainer.data.errors import DataError
from whisperft.trainer.data.example import Candidate, Skip
from whisperft.trainer.data.splits import split_aliases

_BATCH = 64  # rows converted to Python at a time; the table itself stays memory-mapped


def is_saved_dataset(root: Path) -> bool:
    return (root / "dataset_dict.json").is_file() or (root / "state.json").is_file()


def saved_split_dir(root: Path, split: str) -> Path:
    """The folder of one split of a save_to_disk directory."""
    if (root / "state.json").is_file():
        if split != "train":
            raise DataError(
                f"{root}: a single saved Dataset has no splits; only split 'train' "
                f"is available, asked for {split!r}"
            )
        return root
    try:
        splits = json.loads((root / "dataset_dict.json").read_text(encoding="utf-8"))["splits"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{root / 'dataset_dict.json'}: unreadable ({exc})") from exc
    for name in split_aliases(split):
        if name in splits:
            return root / name
    raise DataError(f"{root}: no split {split!r} in the saved DatasetDict; splits: {splits}")


def _audio_column(features: dict[str, Any], columns: list[str], where: Path | str) -> str:
    for name, feature in features.items():
        if type(feature).__name__ == "Audio":
            return name
    return pick(where, columns, AUDIO_COLUMNS, "audio")


def _cell_audio(cell: Any, base: Path) -> Path | bytes | tuple[np.ndarray, int] | None:
    """Where the audio of one Arrow cell is; None when the cell holds none."""
    if isinstance(cell, str) and cell:
        path = Path(cell)
        return path if path.is_absolute() else base / path
    if isinstance(cell, dict):
        if cell.get("bytes"):
            return bytes(cell["bytes"])
        if cell.get("array") is not None and cell.get("sampling_rate"):
            return np.asarray(cell["array"], dtype=np.float32), int(cell["sampling_rate"])
        if cell.get("path"):
            path = Path(cell["path"])
            return path if path.is_absolute() else base / path
    return None


def table_candidates(
    tables: Iterable[Any],
    *,
    where: str,
    split: str,
    audio_col: str,
    text_col: str,
    speaker_col: str | None,
    base: Path,
    skip: Skip,
) -> Iterator[Candidate]:
    """The rows of Arrow tables (a datasets.Dataset or IterableDataset in "arrow" format,
    iterated in batches) as Candidates; rows without text or audio are skipped."""
    index = 0
    for table in tables:
        for row in table.to_pylist():
            at = f"{where}[{index}]"
            index += 1
            text = row.get(text_col)
            if not isinstance(text, str) or not text.strip():
                skip("empty_sentence", f"{at}: empty {text_col!r}")
                continue
            cell = row.get(audio_col)
            audio = _cell_audio(cell, base)
            if audio is None:
                skip("bad_row", f"{at}: no audio in column {audio_col!r}")
                continue
            name = cell.get("path") if isinstance(cell, dict) else cell
            meta = {
                "id": f"{split}/{index - 1}",
                "path": str(name or at),
                "speaker": str(row.get(speaker_col, "")) if speaker_col else "",
                "split": split,
            }
            yield Candidate(audio=audio, sentence=text.strip(), meta=meta)


def dataset_columns(
    features: dict[str, Any], columns: list[str], where: Path | str
) -> tuple[str, str, str | None]:
    """The audio, text and (optional) speaker columns of a datasets table."""
    audio_col = _audio_column(features, columns, where)
    text_col = pick(where, columns, TEXT_COLUMNS, "text")
    return audio_col, text_col, pick_optional(columns, SPEAKER_COLUMNS)


def saved_candidates(root: Path, split: str, skip: Skip) -> tuple[str, Iterator[Candidate]]:
    import datasets  # heavy; only when this format is used

    split_dir = saved_split_dir(root, split)
    try:
        dataset = datasets.load_from_disk(str(split_dir))
    except (OSError, ValueError, FileNotFoundError) as exc:
        raise DataError(f"{split_dir}: cannot load saved dataset ({exc})") from exc
    if not isinstance(dataset, datasets.Dataset):
        raise DataError(f"{split_dir}: expected one Dataset, found {type(dataset).__name__}")
    columns = list(dataset.column_names)
    audio_col, text_col, speaker_col = dataset_columns(dict(dataset.features), columns, split_dir)
    rows = table_candidates(
        dataset.with_format("arrow").iter(batch_size=_BATCH),
        where=str(split_dir),
        split=split,
        audio_col=audio_col,
        text_col=text_col,
        speaker_col=speaker_col,
        base=split_dir,
        skip=skip,
    )
    return str(split_dir), rows


def candidates(root: Path, split: str, skip: Skip) -> tuple[str, Iterator[Candidate]]:
    """A save_to_disk directory, else an audiofolder-style directory."""
    if is_saved_dataset(root):
        return saved_candidates(root, split, skip)
    if audiofolder.has_metadata(root):
        return audiofolder.candidates(root, split, skip)
    raise DataError(
        f"{root}: not a Hugging Face dataset directory: no dataset_dict.json or state.json "
        f"(save_to_disk) and no metadata.csv/metadata.jsonl (audiofolder)"
    )
