"""Training on the speech rather than the padding (``training.audioContextMarginSeconds``).

Whisper reads a 30-s window whatever the clip's length, so a 3-s clip costs the
encoder as much as a 30-s one, and transformers refuses anything shorter. With a
margin set, each training batch is cut to its longest clip plus the margin
(rounded up to a whole second) and the encoder runs on that many frames, its
positional embeddings taken from the start, as for the full window. Evaluation
and the exported model still read 30-s windows: the trained model is measured
the way it will be served (faster-whisper pads to 30 s too).

Measured on tiny.en and the bundled corpus (2-5 s clips), 2 cores, bf16 autocast,
batch 16: 0.74 s a step instead of 5.0 s (bench/README.md, "Side by side", has
the held-out WER, decoded from 30-s windows, against the full-window recipe).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from transformers.modeling_outputs import BaseModelOutput
from transformers.models.whisper.modeling_whisper import WhisperEncoder

FRAMES_PER_SECOND = 100  # Whisper's log-mel hop: 10 ms


def context_frames(longest_seconds: float, margin_seconds: float, window_frames: int) -> int:
    """Frames for a batch whose longest clip lasts ``longest_seconds``: whole seconds
    (an even count, as the stride-2 conv needs), never more than the window."""
    seconds = math.ceil(max(longest_seconds, 0.0) + margin_seconds)
    return min(window_frames, max(1, seconds) * FRAMES_PER_SECOND)


class ContextEncoder(WhisperEncoder):
    """Whisper's encoder, accepting fewer frames than the full window.

    Identical to ``WhisperEncoder.forward`` on a full window (tested), and on a
    shorter input the positions are the first ones. Installed on a loaded model
    by changing its encoder's class (``allow_short_inputs``), so parameter
    names, checkpoints and the exported model are exactly those of Whisper.
    """

    def forward(
        self, input_features: torch.Tensor, attention_mask: Any = None, **kwargs: Any
    ) -> BaseModelOutput:
        window = self.config.max_source_positions * self.conv1.stride[0] * self.conv2.stride[0]
        if input_features.shape[-1] > window:
            raise ValueError(f"{input_features.shape[-1]} mel frames; the window is {window}")
        h = nn.functional.gelu(self.conv1(input_features))
        h = nn.functional.gelu(self.conv2(h)).permute(0, 2, 1)
        # Called as a module, not read as .weight: under ZeRO-3 the call gathers it.
        h = h + self.embed_positions(torch.arange(h.shape[1], device=h.device))
        h = nn.functional.dropout(h, p=self.dropout, training=self.training)
        for layer in self.layers:
            if self.training and self.layerdrop > 0.0 and torch.rand([]) < self.layerdrop:
                continue
            h = layer(h, None)
        return BaseModelOutput(last_hidden_state=self.layer_norm(h))


def allow_short_inputs(model: Any) -> None:
    """Let ``model`` (a WhisperForConditionalGeneration) encode fewer than 30 s of frames."""
    encoder = model.model.encoder
    if not isinstance(encoder, WhisperEncoder):
        raise TypeError(f"expected a WhisperEncoder, found {type(encoder).__name__}")
    encoder.__class__ = ContextEncoder
