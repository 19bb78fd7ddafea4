"""bench/whisper_flops.py: FLOPs of one Whisper training sample from its dims, and the
dense bf16 peaks MFU is taken against."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from whisper_flops import forward_flops, peak_bf16, train_flops, utilisation

from whisperft.operator.planning.whisper_sizes import SIZES, WhisperDims

pytestmark = pytest.mark.unit


def test_a_hand_counted_toy_model() -> None:
    # d=2, f=8, one layer each, M=1 mel, V=3, T=2 encoder positions, L=1 label token
    dims = WhisperDims("toy", 2, 1, 1, 1, vocab=3, n_mels=1)
    conv = 2 * 1 * 2 * 3 * 4 + 2 * 2 * 2 * 3 * 2  # 48 + 48
    enc = 2 * 2 * (4 * 4 + 2 * 2 * 8) + 4 * 2 * 2 * 2  # 192 + 32
    dec = 2 * 1 * (16 + 8 + 32) + 4 * 1 * 1 * 2 + 2 * 2 * 2 * 4 + 4 * 1 * 2 * 2  # 112+8+32+16
    logits = 2 * 1 * 2 * 3
    fwd, layers = forward_flops(dims, 1, encoder_positions=2)
    assert (fwd, layers) == (conv + enc + dec + logits, enc + dec) == (500, 392)
    plain = train_flops(dims, 1, gradient_checkpointing=False, encoder_positions=2)
    ckpt = train_flops(dims, 1, gradient_checkpointing=True, encoder_positions=2)
    assert plain.model == plain.hardware == ckpt.model == 3 * 500
    assert ckpt.hardware == 3 * 500 + 392  # the layers' forward is recomputed


def test_whisper_small_is_about_1_2_tflop_per_30_s_sample() -> None:
    small = train_flops(SIZES["small"], 32, gradient_checkpointing=False)
    assert small.forward == pytest.approx(0.3973e12, rel=1e-3)
    assert small.model == pytest.approx(1.192e12, rel=1e-3)
    # the encoder over 1500 positions is most of it; a 448-token label adds about a third
    long = train_flops(SIZES["small"], 448, gradient_checkpointing=False)
    assert 1.5e12 < long.model < 1.7e12
    # with checkpointing nearly everything is recomputed once more
    ckpt = train_flops(SIZES["small"], 32, gradient_checkpointing=True)
    assert 1.3 < ckpt.hardware / ckpt.model < 4 / 3


def test_flops_grow_with_the_model() -> None:
    per = [train_flops(SIZES[m], 32, gradient_checkpointing=False).model for m in SIZES]
    tiny, base, small, medium, large, _turbo = per
    assert tiny < base < small < medium < large
    assert medium / small == pytest.approx(3.3, rel=0.1)


@pytest.mark.parametrize(
    ("name", "peak"),
    [
        ("NVIDIA H200", 989.4),
        ("NVIDIA H100 80GB HBM3", 989.4),
        ("NVIDIA H100 PCIe", 756.5),
        ("NVIDIA H100 NVL", 835.5),
        ("NVIDIA A100-SXM4-80GB", 312.0),
        ("NVIDIA L4", 121.0),
    ],
)
def test_peaks_by_device_name(name: str, peak: float) -> None:
    found = peak_bf16(name)
    assert found is not None and found[1] == peak


def test_an_unknown_device_has_no_peak_and_no_utilisation() -> None:
    assert peak_bf16("NVIDIA L40S") is None and peak_bf16(None) is None
    assert utilisation(1e12, 100.0, None) is None
    assert utilisation(1.2e12, 330.0, 990.0) == pytest.approx(0.4)
