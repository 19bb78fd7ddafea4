"""The activation-memory model: its structure, and that it still predicts the
allocations bench/planner.py measured (bench/results/planner.json) within 10%."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from whisperft.operator.planning.activations import Activations, activations
from whisperft.operator.planning.whisper_sizes import ENCODER_POSITIONS, SIZES

pytestmark = pytest.mark.unit

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results" / "planner.json"
TARGET = 0.10
MIB = 2**20


def _act(model: str = "small", **kw: Any) -> Activations:
    args: dict[str, Any] = {
        "batch": 4,
        "label_tokens": 128,
        "precision": "bf16",
        "gradient_checkpointing": False,
        "frozen_encoder": False,
    }
    args.update(kw)
    return activations(SIZES[model], **args)


def test_imports_no_torch() -> None:
    code = (
        "import sys; import whisperft.operator.planning.activations; print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_every_component_scales_with_the_batch_except_the_embedding_gradient() -> None:
    one, four = _act(batch=1), _act(batch=4)
    assert four.encoder == pytest.approx(4 * one.encoder)
    assert four.decoder == pytest.approx(4 * one.decoder)
    assert four.logits == pytest.approx(4 * one.logits)


def test_full_fine_tuning_keeps_17_layer_inputs_per_encoder_layer() -> None:
    # fp32 so the fp32 row statistics are a small share; one clip
    d = SIZES["small"]
    a = _act(batch=1, precision="fp32")
    unit = ENCODER_POSITIONS * d.d_model * 4
    layers = d.encoder_layers * 17 + 5 + 2  # layers, conv stem, final norm in and out
    assert a.encoder == pytest.approx(layers * unit, rel=0.03)


def test_bf16_halves_what_fp32_keeps() -> None:
    bf16, fp32 = _act(batch=2), _act(batch=2, precision="fp32")
    assert fp32.encoder == pytest.approx(2 * bf16.encoder, rel=0.02)
    assert fp32.logits == pytest.approx(2 * bf16.logits)


def test_checkpointing_keeps_layer_inputs_and_makes_the_recompute_transient() -> None:
    full, ckpt = _act(batch=16), _act(batch=16, gradient_checkpointing=True)
    assert ckpt.encoder < full.encoder / 8
    assert ckpt.decoder < full.decoder / 8
    assert ckpt.transient > full.transient  # one layer recomputed in the backward
    assert ckpt.total < full.total / 3


def test_frozen_encoder_keeps_only_its_output() -> None:
    a = _act(batch=2, frozen_encoder=True)
    d = SIZES["small"]
    mel = d.n_mels * 2 * ENCODER_POSITIONS * 2
    assert a.encoder == pytest.approx(2 * (ENCODER_POSITIONS * d.d_model * 2 + mel))
    assert a.decoder == _act(batch=2).decoder  # the decoder still trains


def test_lora_adapters_keep_dropout_copies_and_masks() -> None:
    full, lora = _act(), _act(lora=True)
    cpu = _act(lora=True, device="cpu")
    no_dropout = _act(lora=True, lora_dropout=0.0)
    assert lora.encoder > full.encoder  # each adapter keeps a copy of its input
    assert cpu.encoder > lora.encoder  # the CPU's dropout mask is as wide as the activation
    assert no_dropout.encoder < full.encoder  # frozen linears keep nothing of their own
    one = {"batch": 1, "label_tokens": 32}
    assert _act(lora=True, **one).transient < _act(**one).transient  # no embedding gradient
    fewer = _act(lora=True, lora_targets=("q_proj", "v_proj"))
    assert fewer.encoder < lora.encoder


def test_eager_attention_keeps_the_probabilities() -> None:
    sdpa, eager = _act(batch=1), _act(batch=1, sdpa=False)
    d = SIZES["small"]
    s, h = ENCODER_POSITIONS, d.d_model
    probs = d.heads * s * s * 2
    sdpa_only = s * h * 2 + d.heads * s * 4  # SDPA's output and log-sum-exp
    assert eager.encoder - sdpa.encoder == pytest.approx(d.encoder_layers * (probs - sdpa_only))


def test_top_encoder_layers_of_a_frozen_encoder_keep_their_activations() -> None:
    frozen = _act(batch=1, frozen_encoder=True)
    top2 = _act(batch=1, frozen_encoder=True, train_top_encoder_layers=2)
    full = _act(batch=1)
    assert frozen.encoder < top2.encoder < full.encoder


@pytest.mark.skipif(not RESULTS.exists(), reason="bench/results/planner.json not written yet")
def test_the_committed_measurements_are_still_predicted_within_target() -> None:
    record = json.loads(RESULTS.read_text())
    rows = record["activations"]
    assert rows, "no activation measurements"
    worst: list[tuple[float, str, str]] = []
    for row in rows:
        c = row["case"]
        a = activations(
            SIZES[c["model"]],
            batch=c["batch"],
            label_tokens=c["labels"],
            precision="fp32",
            gradient_checkpointing=c["ckpt"],
            frozen_encoder=c["frozen_encoder"],
            lora=c["lora"],
            sdpa=c["attn"] == "sdpa",
            device="cpu",
        )
        measured = row["measured_mib"]
        for key, pred in (("encoder", a.encoder), ("logits", a.logits), ("total", a.total)):
            err = (pred / MIB - measured[key]) / measured[key]
            worst.append((abs(err), row["label"], key))
    assert max(worst)[0] <= TARGET, max(worst)


def test_a_frozen_decoder_component_is_never_negative() -> None:
    for model in SIZES:
        for kw in ({}, {"lora": True}, {"gradient_checkpointing": True}, {"frozen_encoder": True}):
            a = _act(model, **kw)
            assert min(a.encoder, a.decoder, a.logits, a.transient) >= 0, (model, kw)


def test_activations_is_a_frozen_dataclass() -> None:
    a = _act()
    assert replace(a, transient=0).total == a.encoder + a.decoder + a.logits
