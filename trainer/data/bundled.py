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
    """ "bundled:en" / "bundled:sw" -> the packaged corpus dir; an s3:// or gs:// URI -> its
    local mirror (trainer/storage/dataset.py: tables fetched per split, clips when decoded);
    else the path, which must exist."""
    text = str(path)
    from whisperft.trainer.storage.uri import is_uri

    if is_uri(text):
        from whisperft.trainer.storage.dataset import open_remote

        try:
            return open_remote(text)
        except FileNotFoundError as exc:
            raise DataError(f"{text}: data path does not exist ({exc})") from exc
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
