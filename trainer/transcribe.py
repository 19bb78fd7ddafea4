"""Batched greedy transcription with a Hugging Face Whisper model."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class Transcription:
    texts: list[str]
    capped: int  # decodes that hit max_new_tokens (looping) instead of ending with <|endoftext|>


# transformers warns on every Whisper ``generate`` call about things that do not
# apply here: Whisper's own generate passes suppress tokens beside the config,
# the imported config's max_length (448, the decoder's limit) sits beside our
# max_new_tokens, and the decoder needs no attention mask for 30 s
# fixed-length features. Only these are dropped; every other warning shows.
_BENIGN_GENERATE_WARNINGS = (
    "Passing `generation_config` together with generation-related arguments",
    "seem to have been set. `max_new_tokens` will take precedence",
    "The attention mask is not set with a batched input",
)


class _DropBenign(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not any(known in msg for known in _BENIGN_GENERATE_WARNINGS)


@contextmanager
def _quiet_generate() -> Iterator[None]:
    handlers = logging.getLogger("transformers").handlers
    flt = _DropBenign()
    for h in handlers:
        h.addFilter(flt)
    try:
        yield
    finally:
        for h in handlers:
            h.removeFilter(flt)


def generate_kwargs(
    model: Any, language: str | None, task: str, max_new_tokens: int
) -> dict[str, Any]:
    """Greedy ``generate`` arguments; English-only checkpoints take no language/task."""
    kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens, "do_sample": False, "num_beams": 1}
    if getattr(model.generation_config, "is_multilingual", False):
        kwargs["task"] = task
        if language is not None:  # None: the model detects the language per utterance
            kwargs["language"] = language
    return kwargs


def transcribe(
    model: Any,
    processor: Any,
    audios: Sequence[np.ndarray],
    *,
    language: str | None,
    task: str = "transcribe",
    batch_size: int = 16,
    max_new_tokens: int = 128,
    progress: bool = False,
) -> Transcription:
    """Texts for 16 kHz mono float32 ``audios``, in order.

    Works on a DeepSpeed/ZeRO-3 engine's unwrapped module too: ``generate`` then
    runs with ``synced_gpus`` (transformers turns it on under ZeRO-3), so every
    rank must call this with the same number of batches.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")

    import torch

    from whisperft.trainer.data.log_mel import LogMel

    log_mel = LogMel(processor.feature_extractor)
    # Longest first and like with like: a batch's decode is not held to one long clip.
    order = sorted(range(len(audios)), key=lambda i: -len(audios[i]))

    def batches() -> Iterator[Any]:
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            yield torch.from_numpy(log_mel([audios[i] for i in chunk]))

    def report(done: int) -> None:
        if progress:
            print(f"transcribed {done}/{len(audios)}", file=sys.stderr, flush=True)

    out = generate_texts(
        model,
        processor,
        batches(),
        language=language,
        task=task,
        max_new_tokens=max_new_tokens,
        on_batch=report,
    )
    texts = [""] * len(order)
    for text, i in zip(out.texts, order, strict=True):
        texts[i] = text
    return Transcription(texts=texts, capped=out.capped)


def generate_texts(
    model: Any,
    processor: Any,
    feature_batches: Iterable[Any],
    *,
    language: str | None,
    task: str,
    max_new_tokens: int,
    on_batch: Callable[[int], None] | None = None,
) -> Transcription:
    """Greedy-decode batches of log-mel features (torch tensors, B x mels x frames)."""
    import torch

    param = next(model.parameters())
    kwargs = generate_kwargs(model, language, task, max_new_tokens)
    eos = model.generation_config.eos_token_id
    eos_ids = set(eos if isinstance(eos, list) else [eos])
    texts: list[str] = []
    capped = 0
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), _quiet_generate():
            for features in feature_batches:
                out = model.generate(
                    input_features=features.to(param.device, param.dtype), **kwargs
                )
                sequences = out.sequences if hasattr(out, "sequences") else out
                for row in sequences.tolist():
                    # transformers 5 returns the generated tokens without the prompt and drops
                    # the batch's final <|endoftext|>, so "no eos" alone is not a cap: a capped
                    # decode is one that used every new token without ending.
                    if len(row) >= max_new_tokens and not eos_ids.intersection(row):
                        capped += 1
                texts.extend(
                    t.strip()
                    for t in processor.tokenizer.batch_decode(sequences, skip_special_tokens=True)
                )
                if on_batch is not None:
                    on_batch(len(texts))
    finally:
        model.train(was_training)
    return Transcription(texts=texts, capped=capped)
