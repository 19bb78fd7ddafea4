"""Greedy decoding over cached features, and WER against the references.

``whisperft evaluate`` and the trainer share this path: both decode with
``generate(language=, task=)`` and score with ``metrics.wer``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class EvalResult:
    wer: float
    n: int
    capped: int
    hypotheses: list[str] = field(default_factory=list)
    references: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    cer: float | None = None  # for scripts written without spaces

    @property
    def scores(self) -> dict[str, float | int]:
        """The machine form (fractions), as history entries and results carry it."""
        out: dict[str, float | int] = {"wer": self.wer, "capped": self.capped}
        if self.cer is not None:
            out["cer"] = self.cer
        return out

    def describe(self) -> str:
        """The human form (percent): one readable line."""
        cer = f", CER {self.cer:.2%}" if self.cer is not None else ""
        return f"WER {self.wer:.2%}{cer} on {self.n} utterances ({self.capped} hit the length cap)"


def decode_order(meta: Sequence[dict[str, str]]) -> list[int]:
    """Indices longest clip first (the first batch shows the memory peak); a cache
    written before durations were kept gives split order."""
    return sorted(range(len(meta)), key=lambda i: -float(meta[i].get("seconds", 0.0)))


def decode_features(
    model: Any,
    processor: Any,
    features: np.ndarray,
    indices: Sequence[int],
    *,
    language: str | None,
    task: str,
    batch_size: int,
    max_new_tokens: int,
) -> tuple[list[str], int]:
    """Texts for ``features[indices]`` and how many decodes hit ``max_new_tokens``."""
    import torch

    from whisperft.trainer.transcribe import generate_texts

    def batches() -> Iterator[Any]:
        for start in range(0, len(indices), batch_size):
            chunk = indices[start : start + batch_size]
            yield torch.from_numpy(
                np.stack([np.asarray(features[i], dtype=np.float32) for i in chunk])
            )

    out = generate_texts(
        model, processor, batches(), language=language, task=task, max_new_tokens=max_new_tokens
    )
    return out.texts, out.capped


def score(
    references: Sequence[str],
    hypotheses: Sequence[str],
    ids: Sequence[str],
    language: str | None,
    capped: int,
) -> EvalResult:
    from whisperft.trainer.metrics import score_texts

    scores = score_texts(references, hypotheses, language)
    return EvalResult(
        wer=scores.wer,
        cer=scores.cer,
        n=len(references),
        capped=capped,
        hypotheses=list(hypotheses),
        references=list(references),
        ids=list(ids),
    )
