"""Greedy decoding over cached features, and WER against the references.

``whisperft evaluate`` and the trainer share this path: both decode with
``generate(language=, task=)`` and score with ``metrics.wer``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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


def generate_kwargs(
    multilingual: bool, language: str | None, task: str, max_new_tokens: int
) -> dict[str, Any]:
    kw: dict[str, Any] = {"max_new_tokens": max_new_tokens, "do_sample": False, "num_beams": 1}
    if multilingual:
        # English-only checkpoints reject language/task; multilingual ones need them
        # or they guess the language from the audio.
        kw["language"] = language
        kw["task"] = task
    return kw


def decode_features(
    model: Any,
    processor: Any,
    features: np.ndarray,
    indices: Sequence[int],
    *,
    multilingual: bool,
    language: str | None,
    task: str,
    batch_size: int,
    max_new_tokens: int,
    progress: Callable[[int], None] | None = None,
) -> tuple[list[str], int]:
    """Texts for ``features[indices]`` and how many decodes hit ``max_new_tokens``."""
    import torch

    param = next(model.parameters())
    kw = generate_kwargs(multilingual, language, task, max_new_tokens)
    eos = model.generation_config.eos_token_id
    eos_ids = set(eos if isinstance(eos, list) else [eos])
    gc = model.generation_config
    prompt_ids = {gc.decoder_start_token_id, getattr(gc, "no_timestamps_token_id", None)}
    prompt_ids |= set((getattr(gc, "lang_to_id", None) or {}).values()) | set(
        (getattr(gc, "task_to_id", None) or {}).values()
    )
    texts: list[str] = []
    capped = 0
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for start in range(0, len(indices), batch_size):
                chunk = list(indices[start : start + batch_size])
                x = torch.from_numpy(
                    np.stack([np.asarray(features[i], dtype=np.float32) for i in chunk])
                )
                out = model.generate(input_features=x.to(param.device, param.dtype), **kw)
                seqs = out.sequences if hasattr(out, "sequences") else out
                for row in seqs.tolist():
                    # generate strips the prompt and may drop the final <|endoftext|>
                    # of the longest row, so only a full-length row without one counts.
                    body = [t for t in row if t not in prompt_ids]
                    if len(body) >= max_new_tokens and not eos_ids & set(body):
                        capped += 1
                texts.extend(
                    t.strip() for t in processor.batch_decode(seqs, skip_special_tokens=True)
                )
                if progress:
                    progress(len(chunk))
    finally:
        model.train(was_training)
    return texts, capped


def score(
    references: Sequence[str],
    hypotheses: Sequence[str],
    ids: Sequence[str],
    language: str | None,
    capped: int,
) -> EvalResult:
    from whisperft.trainer.metrics import wer

    return EvalResult(
        wer=wer(references, hypotheses, language),
        n=len(references),
        capped=capped,
        hypotheses=list(hypotheses),
        references=list(references),
        ids=list(ids),
    )
