"""Parameter counts of the Whisper family, derived from the published architecture dims.

Counting from dims (rather than a table of totals) also gives the encoder /
decoder split, which the planner needs for a frozen encoder, and the largest
single tensor, which ZeRO-3 gathers whole. The totals match the published
counts (tiny 37.8 M ... large 1550 M) within 1%.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ENCODER_POSITIONS = 1500  # 30 s of audio after the conv stride
DECODER_POSITIONS = 448


@dataclass(frozen=True)
class WhisperDims:
    name: str
    d_model: int
    encoder_layers: int
    decoder_layers: int
    heads: int
    vocab: int = 51865
    n_mels: int = 80

    @property
    def encoder_layer_params(self) -> int:
        d = self.d_model
        return 12 * d * d + 13 * d  # self-attention 4d², MLP 8d², biases and norms

    @property
    def encoder_params(self) -> int:
        d = self.d_model
        conv = self.n_mels * d * 3 + d + d * d * 3 + d
        return (
            conv + ENCODER_POSITIONS * d + self.encoder_layers * self.encoder_layer_params + 2 * d
        )

    @property
    def decoder_params(self) -> int:
        d = self.d_model
        layer = 16 * d * d + 19 * d  # self- and cross-attention 8d², MLP 8d²
        return self.vocab * d + DECODER_POSITIONS * d + self.decoder_layers * layer + 2 * d

    @property
    def params(self) -> int:
        return self.encoder_params + self.decoder_params

    @property
    def largest_tensor_params(self) -> int:
        return max(self.vocab * self.d_model, 4 * self.d_model * self.d_model)


SIZES: dict[str, WhisperDims] = {
    "tiny": WhisperDims("tiny", 384, 4, 4, 6),
    "base": WhisperDims("base", 512, 6, 6, 8),
    "small": WhisperDims("small", 768, 12, 12, 12),
    "medium": WhisperDims("medium", 1024, 24, 24, 16),
    "large": WhisperDims("large", 1280, 32, 32, 20, vocab=51866, n_mels=128),
    "turbo": WhisperDims("turbo", 1280, 32, 4, 20, vocab=51866, n_mels=128),
}

_PATTERNS = (
    ("turbo", re.compile(r"turbo")),
    ("large", re.compile(r"large")),
    ("medium", re.compile(r"medium")),
    ("small", re.compile(r"small")),
    ("base", re.compile(r"base")),
    ("tiny", re.compile(r"tiny")),
)


def dims_for(model_name: str) -> WhisperDims | None:
    """Dims from a model reference (hub id, path, bundled:/ct2: name); None when unrecognised."""
    leaf = model_name.lower().rstrip("/").rsplit("/", 1)[-1]
    for key, pattern in _PATTERNS:
        if pattern.search(leaf):
            return SIZES[key]
    return None
