"""Enumerations and Whisper limits shared by the API types and the trainer.

Pure (pydantic-free): the trainer's hot paths and the operator both import it.
"""

from __future__ import annotations

from typing import Literal

Precision = Literal["auto", "fp32", "bf16", "fp16"]
ZeroStage = Literal[0, 1, 2, 3]
DataFormat = Literal["commonvoice", "hf", "manifest", "hub"]
Task = Literal["transcribe", "translate"]
LrSchedule = Literal["linear", "cosine", "constant"]
OutputFormat = Literal["hf", "ct2"]
# CTranslate2 weight types faster-whisper users pick (its converter accepts them all).
Ct2Quantization = Literal["float32", "float16", "bfloat16", "int8", "int8_float16", "int8_float32"]

# Whisper's decoder has 448 positions; labels longer than this cannot train.
WHISPER_MAX_LABEL_TOKENS = 448
# Whisper's feature extractor pads or cuts every input to 30 s.
WHISPER_MAX_AUDIO_SECONDS = 30.0
