"""CPU mixed precision: which arithmetic a run resolves to, and the autocast it runs under."""

from __future__ import annotations

import pytest

from whisperft.trainer.precision import AMP_BF16, autocast, resolve

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("asked", "cpu_bf16", "expected"),
    [
        ("auto", True, AMP_BF16),
        ("auto", False, "fp32"),
        ("bf16", False, AMP_BF16),  # asked for: autocast, emulated where there is no hardware
        ("fp32", True, "fp32"),
        ("fp16", True, "fp32"),  # no fast fp16 path on CPUs
    ],
)
def test_cpu_resolution(asked: str, cpu_bf16: bool, expected: str) -> None:
    assert resolve(asked, cuda=False, gpu_bf16=False, cpu_bf16=cpu_bf16) == expected


def test_gpu_resolution_never_autocasts() -> None:
    assert resolve("auto", cuda=True, gpu_bf16=True, cpu_bf16=True) == "bf16"
    assert resolve("auto", cuda=True, gpu_bf16=False, cpu_bf16=True) == "fp16"
    assert resolve("fp16", cuda=True, gpu_bf16=True, cpu_bf16=True) == "fp16"
    with pytest.raises(ValueError, match="no bf16 support"):
        resolve("bf16", cuda=True, gpu_bf16=False, cpu_bf16=True)


def test_amp_bf16_multiplies_in_bf16_and_keeps_fp32_weights() -> None:
    import torch

    layer = torch.nn.Linear(8, 4)
    x = torch.randn(2, 8)
    with autocast(AMP_BF16):
        y = layer(x)
    assert y.dtype == torch.bfloat16 and layer.weight.dtype == torch.float32
    for other in ("fp32", "bf16", "fp16"):  # GPU 16-bit modes hold 16-bit weights themselves
        with autocast(other):
            assert layer(x).dtype == torch.float32
