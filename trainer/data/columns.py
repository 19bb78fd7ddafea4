"""Which column holds the text, the audio and the speaker in a foreign table."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from whisperft.trainer.data.errors import DataError

TEXT_COLUMNS = ("sentence", "text", "transcription", "transcript", "normalized_text", "raw_text")
AUDIO_COLUMNS = ("audio", "file", "path", "audio_path", "audio_filepath")
SPEAKER_COLUMNS = ("client_id", "speaker_id", "speaker")


def pick(where: Path | str, columns: Sequence[str], wanted: Sequence[str], what: str) -> str:
    for name in wanted:
        if name in columns:
            return name
    raise DataError(
        f"{where}: no {what} column; looked for {', '.join(wanted)}; "
        f"columns are: {', '.join(columns) or '(none)'}"
    )


def pick_optional(columns: Sequence[str], wanted: Sequence[str]) -> str | None:
    return next((name for name in wanted if name in columns), None)
