"""Records passed between the format readers and the filtering in readers.py."""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from whisperft.trainer.storage.dataset import RemoteFile


@dataclass(frozen=True)
class Example:
    """One usable utterance: 16 kHz mono float32 audio and its sentence."""

    audio: np.ndarray  # float32, mono, 16 kHz, 1-D
    sentence: str  # as given (stripped), not normalised
    meta: dict[str, str]  # at least "id", "path", "speaker", "split"


@dataclass
class SplitData:
    """An eagerly read split and what was dropped from it, by reason."""

    examples: list[Example]
    skipped: collections.Counter[str] = field(default_factory=collections.Counter)
    source: str = ""


@dataclass(frozen=True)
class Candidate:
    """A row a format reader found, before its audio is decoded and filtered.

    `audio` is a file path, an object in a bucket (read when decoded), encoded
    bytes (e.g. an Arrow cell), or an already decoded (samples, sample_rate) pair. `duration_s` is the duration the source
    declares, when it declares one, so long clips can be dropped undecoded.
    """

    audio: Path | RemoteFile | bytes | tuple[np.ndarray, int]
    sentence: str
    meta: dict[str, str]
    duration_s: float | None = None


class Skip(Protocol):
    """Counts one dropped row under `reason` and reports `message`."""

    def __call__(self, reason: str, message: str) -> None: ...
