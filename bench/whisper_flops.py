"""FLOPs of one Whisper training sample, counted from the architecture dims, and
the dense bf16 peak of the GPU they run on (for model-FLOPs utilisation).

A multiply-add is 2 FLOPs; only matrix products are counted (norms, softmax,
GELU and the optimizer are left out, as is usual for MFU). With T encoder
positions (1500 for 30 s of audio: 3000 mel frames after the conv stem's
stride of 2), L decoder positions (the label tokens the decoder reads), width
d, MLP width f = 4d, M mel bins and vocabulary V, one forward pass is

    conv stem       2·M·d·3·2T + 2·d·d·3·T
    encoder layer   2·T·(4d² + 2df) + 4·T²·d          (QKV/out, MLP, QKᵀ and AV)
    decoder layer   2·L·(4d² + 2d² + 2df) + 4·L²·d    (self-attn, cross Q/out, MLP, self QKᵀ/AV)
                    + 2·T·2d² + 4·L·T·d               (cross K/V over the encoder, cross QKᵀ/AV)
    logits          2·L·d·V

Training counts the backward as two forwards: model FLOPs = 3 × forward (what
MFU divides by). Gradient checkpointing recomputes each encoder and decoder
layer's forward in the backward (Hugging Face checkpoints the layers, not the
conv stem or the output projection): hardware FLOPs = model FLOPs + the layers'
forward (what HFU divides by). whisper-small at 30 s and 32 label tokens:
about 0.40 TFLOP forward, 1.19 TFLOP per training sample.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from whisperft.operator.planning.whisper_sizes import ENCODER_POSITIONS, WhisperDims

# Dense bf16 tensor-core peaks (no sparsity), TFLOP/s, from the vendors' data sheets.
# The first pattern that matches torch.cuda.get_device_name() wins.
PEAK_BF16_TFLOPS: tuple[tuple[str, str, float], ...] = (
    (r"H200", "H200 SXM", 989.4),
    (r"H100.*PCIe", "H100 PCIe", 756.5),
    (r"H100.*NVL", "H100 NVL", 835.5),
    (r"H100", "H100 SXM", 989.4),
    (r"A100", "A100", 312.0),
    (r"\bL4\b", "L4", 121.0),
)


@dataclass(frozen=True)
class SampleFlops:
    """FLOPs of one sample: a forward, its layers alone, and training with and without recompute."""

    forward: float
    layers_forward: float  # what gradient checkpointing recomputes
    model: float  # 3 × forward: MFU's numerator per sample
    hardware: float  # model + the recompute when checkpointing: HFU's

    def as_dict(self) -> dict[str, float]:
        return {
            "forward": self.forward,
            "layers_forward": self.layers_forward,
            "model": self.model,
            "hardware": self.hardware,
        }


def forward_flops(
    dims: WhisperDims, label_tokens: int, encoder_positions: int = ENCODER_POSITIONS
) -> tuple[float, float]:
    """(whole forward, encoder and decoder layers only) for one sample."""
    d, f, t, n = dims.d_model, 4 * dims.d_model, encoder_positions, label_tokens
    conv = 2 * dims.n_mels * d * 3 * (2 * t) + 2 * d * d * 3 * t
    enc_layer = 2 * t * (4 * d * d + 2 * d * f) + 4 * t * t * d
    dec_layer = (
        2 * n * (4 * d * d + 2 * d * d + 2 * d * f)
        + 4 * n * n * d
        + 2 * t * 2 * d * d
        + 4 * n * t * d
    )
    logits = 2 * n * d * dims.vocab
    layers = dims.encoder_layers * enc_layer + dims.decoder_layers * dec_layer
    return float(conv + layers + logits), float(layers)


def train_flops(
    dims: WhisperDims,
    label_tokens: int,
    *,
    gradient_checkpointing: bool,
    encoder_positions: int = ENCODER_POSITIONS,
) -> SampleFlops:
    """FLOPs of one training sample (forward + backward, plus recompute when checkpointing)."""
    fwd, layers = forward_flops(dims, label_tokens, encoder_positions)
    model = 3 * fwd
    return SampleFlops(fwd, layers, model, model + (layers if gradient_checkpointing else 0.0))


def peak_bf16(device_name: str | None) -> tuple[str, float] | None:
    """(which entry, TFLOP/s) for a CUDA device name; None when the table has no match."""
    if not device_name:
        return None
    for pattern, label, tflops in PEAK_BF16_TFLOPS:
        if re.search(pattern, device_name):
            return label, tflops
    return None


def utilisation(
    flops_per_sample: float, samples_per_s: float, peak_tflops: float | None
) -> float | None:
    """Achieved FLOP/s over the peak (MFU with model FLOPs, HFU with hardware FLOPs)."""
    if not peak_tflops:
        return None
    return flops_per_sample * samples_per_s / (peak_tflops * 1e12)
