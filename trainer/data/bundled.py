"""The sample corpus shipped inside the package, addressed as "bundled:<lang>"."""

from __future__ import annotations

from pathlib import Path

from whisperft.trainer.data.errors import DataError

PREFIX = "bundled:"
BUNDLED_LANGUAGES = ("en", "sw")


def corpus_root() -> Path:
    """trainer/corpus inside the installed package (package data)."""
    return Path(__file__).resolve().parent.parent / "corpus"


def resolve_data_path(path: str | Path) -> Path:
    """ "bundled:en" / "bundled:sw" -> the packaged corpus dir; else the path, which must exist."""
    text = str(path)
    if text.startswith(PREFIX):
        lang = text[len(PREFIX) :]
        if lang not in BUNDLED_LANGUAGES:
            choices = ", ".join(PREFIX + name for name in BUNDLED_LANGUAGES)
            raise DataError(f"unknown bundled corpus {text!r}; available: {choices}")
        root = corpus_root() / lang
        if not (root / "train.tsv").is_file():
            raise DataError(
                f"{text}: bundled corpus missing at {root} (installed without package data?)"
            )
        return root
    resolved = Path(text).expanduser()
    if not resolved.exists():
        raise DataError(f"{resolved}: data path does not exist")
    return resolved
