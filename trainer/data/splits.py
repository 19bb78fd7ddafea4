"""Split names: Common Voice says "dev", Hugging Face says "validation"."""

from __future__ import annotations

_DEV = ("dev", "validation", "valid", "val")


def split_aliases(split: str) -> tuple[str, ...]:
    """The names a split may go by on disk, the requested one first."""
    if split in _DEV:
        return (split, *(name for name in _DEV if name != split))
    return (split,)
