"""Batched greedy transcription with a CTranslate2 Whisper export (what
faster-whisper runs), for ``whisperft evaluate --engine ct2``.

Same decoding as the Hugging Face path (trainer/transcribe.py): greedy, no
timestamps, the language token given or detected per utterance, the default
suppressed tokens, and decodes that reach the cap counted.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from whisperft.trainer.model.errors import ModelError
from whisperft.trainer.transcribe import Transcription


@dataclass
class Ct2Whisper:
    model: Any  # ctranslate2.models.Whisper
    features: Any  # WhisperFeatureExtractor
    tokenizer: Any  # tokenizers.Tokenizer
    path: Path
    generation: dict[str, Any]

    @property
    def multilingual(self) -> bool:
        return bool(self.model.is_multilingual)

    def label_length(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)


def load_ct2(path: str | Path, *, compute_type: str = "default") -> Ct2Whisper:
    import ctranslate2
    from tokenizers import Tokenizer
    from transformers import WhisperFeatureExtractor

    from whisperft.trainer.export_ct2 import is_ct2_dir

    p = Path(path)
    if not is_ct2_dir(p):
        raise ModelError(
            f"{p}: not a CTranslate2 Whisper export (needs model.bin and "
            "preprocessor_config.json; make one with `whisperft export MODEL --format ct2`)"
        )
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0
    model = ctranslate2.models.Whisper(
        str(p), device="cpu", compute_type=compute_type, intra_threads=threads
    )
    gen_file = p / "generation_config.json"
    generation = json.loads(gen_file.read_text(encoding="utf-8")) if gen_file.is_file() else {}
    return Ct2Whisper(
        model=model,
        features=WhisperFeatureExtractor.from_pretrained(p),
        tokenizer=Tokenizer.from_file(str(p / "tokenizer.json")),
        path=p,
        generation=generation,
    )


def _token(language: str) -> str:
    return language if language.startswith("<|") else f"<|{language}|>"


def transcribe_ct2(
    loaded: Ct2Whisper,
    audios: Sequence[np.ndarray],
    *,
    language: str | None,
    task: str,
    batch_size: int,
    max_new_tokens: int,
) -> Transcription:
    import ctranslate2

    texts: list[str] = []
    capped = 0
    for start in range(0, len(audios), batch_size):
        chunk = list(audios[start : start + batch_size])
        feats = loaded.features(chunk, sampling_rate=16_000, return_tensors="np").input_features
        view = ctranslate2.StorageView.from_array(np.ascontiguousarray(feats, dtype=np.float32))
        if loaded.multilingual:
            if language is None:
                langs = [r[0][0] for r in loaded.model.detect_language(view)]
            else:
                langs = [_token(language)] * len(chunk)
            prompts = [
                ["<|startoftranscript|>", lang, f"<|{task}|>", "<|notimestamps|>"] for lang in langs
            ]
        else:
            prompts = [["<|startoftranscript|>", "<|notimestamps|>"]] * len(chunk)
        results = loaded.model.generate(
            view, prompts, beam_size=1, max_length=max_new_tokens, suppress_blank=True
        )
        for r in results:
            ids = r.sequences_ids[0]
            if len(ids) >= max_new_tokens - len(prompts[0]):
                capped += 1
            texts.append(loaded.tokenizer.decode(ids, skip_special_tokens=True).strip())
        if sys.stderr.isatty():
            print(f"\r  ct2: {len(texts)}/{len(audios)} utterances", end="", file=sys.stderr)
    if sys.stderr.isatty() and audios:
        print(file=sys.stderr)
    return Transcription(texts=texts, capped=capped)
