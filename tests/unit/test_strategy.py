"""The automatic memory strategy: cheapest first in the documented order, the
global batch kept, LoRA only when the resource allows it, explicit settings
honoured or refused with the numbers; and the choice reaches the trainer."""

from __future__ import annotations

import itertools

import pytest

from whisperft.operator.planning.memory import (
    USABLE_FRACTION,
    LoraShape,
    PlanInput,
    breakdown,
    requested,
)
from whisperft.operator.planning.strategy import candidates, micro_batches, plan_memory
from whisperft.operator.planning.whisper_sizes import SIZES, dims_for

pytestmark = pytest.mark.unit

LORA = LoraShape(32, ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"))
POOLS = {"nvidia-l4": 24.0, "nvidia-a100-80gb": 80.0, "nvidia-h100-80gb": 80.0}
MODELS = {
    "tiny": "openai/whisper-tiny",
    "base": "openai/whisper-base",
    "small": "openai/whisper-small",
    "medium": "openai/whisper-medium",
    "large-v3": "openai/whisper-large-v3",
    "turbo": "openai/whisper-large-v3-turbo",
}


def _fits(inp: PlanInput, est_upper: float) -> bool:
    assert inp.gpu_memory_gib is not None
    return est_upper <= inp.gpu_memory_gib * USABLE_FRACTION


def test_micro_batches_keep_the_global_batch() -> None:
    inp = PlanInput("small", 1, 1, 12, grad_accum=2)
    assert micro_batches(inp) == [12, 8, 6, 4, 3, 2, 1]
    for s in candidates(inp):
        assert s.micro_batch * s.grad_accum == 24


def test_candidate_order_is_the_documented_one() -> None:
    inp = PlanInput("small", 1, 1, 16, lora_mode="auto", lora=LORA)
    order = list(candidates(inp))
    # micro-batch is the innermost lever (down to 4 without recompute, to 1 with it),
    # then checkpointing, then ZeRO/offload, LoRA last.
    assert [s.micro_batch for s in order[:8]] == [16, 8, 4, 16, 8, 4, 2, 1]
    assert not order[2].gradient_checkpointing and order[3].gradient_checkpointing
    assert order[7].stage == 2 and order[8].stage == 3
    assert not any(s.lora for s in order[: len(order) // 2])
    assert all(s.lora for s in order[len(order) // 2 :])
    # With LoRA off the ladder never reaches it.
    assert not any(s.lora for s in candidates(PlanInput("small", 1, 1, 4)))


def test_a_request_that_fits_is_left_alone() -> None:
    plan = plan_memory(PlanInput("openai/whisper-small", 2, 1, 8, gpu_memory_gib=80))
    assert plan.strategy == requested(PlanInput("small", 2, 1, 8))
    assert plan.reasons[0].startswith("as requested")


def test_a_smaller_micro_batch_comes_before_checkpointing() -> None:
    # whisper-small at micro-batch 16 does not fit 24 GiB; 8 x 2 does, without recompute.
    plan = plan_memory(PlanInput("openai/whisper-small", 1, 1, 16, gpu_memory_gib=24))
    s = plan.strategy
    assert s is not None and plan.verdict == "fits"
    assert (s.micro_batch * s.grad_accum, s.gradient_checkpointing, s.stage) == (16, False, 2)
    assert s.micro_batch < 16
    text = "\n".join(plan.reasons)
    assert "micro-batch 16 ->" in text and "global batch stays 16" in text
    assert "checkpointing" not in text.split("chosen:")[0].split("\n", 1)[1]


def test_checkpointing_comes_before_zero3() -> None:
    # medium on one L4: no micro-batch fits without recompute, one does with it.
    plan = plan_memory(
        PlanInput("openai/whisper-medium", 1, 1, 16, gpu_memory_gib=24, pod_memory_gib=64)
    )
    s = plan.strategy
    assert s is not None and plan.allowed
    assert s.gradient_checkpointing and s.stage == 2 and not s.offload_optimizer
    assert any("gradient checkpointing on" in r for r in plan.reasons)


@pytest.mark.parametrize(("size", "pool"), list(itertools.product(MODELS, POOLS)))
def test_auto_choice_is_the_first_candidate_that_fits(size: str, pool: str) -> None:
    """For every size on every pool: the choice fits, and nothing cheaper does."""
    inp = PlanInput(MODELS[size], 1, 1, 16, gpu_memory_gib=POOLS[pool], pod_memory_gib=200.0)
    plan = plan_memory(inp)
    dims = dims_for(MODELS[size])
    assert dims is not None and plan.strategy is not None
    assert plan.allowed, plan.notes
    assert plan.strategy.micro_batch * plan.strategy.grad_accum == 16
    order = list(candidates(inp))
    idx = order.index(plan.strategy)
    if plan.verdict == "fits":
        assert _fits(inp, breakdown(dims, inp, plan.strategy).upper_gib)
        assert not any(_fits(inp, breakdown(dims, inp, s).upper_gib) for s in order[:idx])
    # Model states of the choice never exceed the request's.
    assert plan.estimate is not None
    assert plan.estimate.upper_gib <= breakdown(dims, inp, order[0]).upper_gib


# (micro-batch, accumulation, checkpointing, ZeRO stage, optimizer offload) chosen for a
# request of batch 16 on one GPU of each pool (200 GiB pods), with the model states
# measured in bench/results/planner.json: the larger models take the levers in order.
CHOICES = {
    ("tiny", 24.0): (16, 1, False, 2, False),
    ("base", 24.0): (16, 1, False, 2, False),
    ("small", 24.0): (8, 2, False, 2, False),
    ("medium", 24.0): (16, 1, True, 2, False),
    ("large-v3", 24.0): (16, 1, True, 2, True),
    ("turbo", 24.0): (8, 2, True, 2, False),
    ("tiny", 80.0): (16, 1, False, 2, False),
    ("base", 80.0): (16, 1, False, 2, False),
    ("small", 80.0): (16, 1, False, 2, False),
    ("medium", 80.0): (16, 1, False, 2, False),
    ("large-v3", 80.0): (4, 4, False, 2, False),
    ("turbo", 80.0): (8, 2, False, 2, False),
}


@pytest.mark.parametrize(("size", "pool"), list(itertools.product(MODELS, POOLS)))
def test_the_automatic_choice_per_size_and_pool(size: str, pool: str) -> None:
    gib = POOLS[pool]
    plan = plan_memory(PlanInput(MODELS[size], 1, 1, 16, gpu_memory_gib=gib, pod_memory_gib=200.0))
    s = plan.strategy
    assert s is not None and plan.verdict == "fits"
    got = (s.micro_batch, s.grad_accum, s.gradient_checkpointing, s.stage, s.offload_optimizer)
    assert got == CHOICES[(size, gib)]


def test_large_v3_on_one_l4_fits_only_with_lora() -> None:
    """Full fine-tuning of large-v3 on a 24 GiB GPU needs optimizer offload; in a 32 GiB
    pod that offload does not fit, so only LoRA (when allowed) runs."""
    base = dict(gpu_memory_gib=24.0, pod_memory_gib=32.0, lora=LORA)
    full = plan_memory(PlanInput("openai/whisper-large-v3", 1, 1, 8, **base))  # type: ignore[arg-type]
    assert not full.allowed and "training.lora.mode auto" in full.notes[1]
    auto = plan_memory(
        PlanInput("openai/whisper-large-v3", 1, 1, 8, lora_mode="auto", **base)  # type: ignore[arg-type]
    )
    assert auto.allowed and auto.strategy is not None and auto.strategy.lora
    assert not auto.strategy.offload_optimizer
    assert any("LoRA (training.lora.mode auto)" in r for r in auto.reasons)
    assert (
        auto.estimate is not None and auto.estimate.trainable_params < 0.05 * SIZES["large"].params
    )


def test_lora_states_are_the_adapters_only() -> None:
    d = SIZES["large"]
    inp = PlanInput("large", 1, 1, 1, lora=LORA, lora_mode="on")
    est = breakdown(d, inp, requested(inp, 0))
    # 16-bit copy of every weight, gradients and Adam state for the adapters only.
    assert est.weights_gib == pytest.approx(
        2 * (d.params + est.trainable_params) / 1024**3, abs=1e-3
    )
    assert est.optimizer_gib == pytest.approx(12 * est.trainable_params / 1024**3, abs=1e-3)
    # r=32 on the six linears of 32+32 layers of width 1280: about 2% of the model.
    assert 0.01 < est.trainable_params / d.params < 0.04


def test_lora_skips_a_frozen_encoder_prefix() -> None:
    d = SIZES["small"]
    full = breakdown(
        d,
        PlanInput("small", 1, 1, 1, lora=LORA, lora_mode="on"),
        requested(PlanInput("small", 1, 1, 1, lora_mode="on")),
    )
    frozen_inp = PlanInput(
        "small", 1, 1, 1, lora=LORA, lora_mode="on", freeze_encoder=True, train_top_encoder_layers=2
    )
    frozen = breakdown(d, frozen_inp, requested(frozen_inp))
    per_enc_layer = 32 * (4 * 2 * 768 + 2 * 5 * 768)
    assert full.trainable_params - frozen.trainable_params == 10 * per_enc_layer


def test_explicit_is_honoured_or_refused_with_numbers() -> None:
    ok = plan_memory(
        PlanInput("openai/whisper-small", 1, 1, 4, gpu_memory_gib=24, explicit=(3, True, False))
    )
    assert ok.strategy == requested(PlanInput("s", 1, 1, 4), 3, True, False)
    no = plan_memory(
        PlanInput("openai/whisper-medium", 1, 1, 32, gpu_memory_gib=24, explicit=(0, False, False))
    )
    assert not no.allowed and no.strategy is not None and no.strategy.micro_batch == 32
    assert "this configuration" in no.notes[0] and "GiB per GPU" in no.notes[0]
    assert "use training.deepspeed.mode auto" in no.notes[1]
    # Explicit mode never turns LoRA on, even with mode auto.
    lo = plan_memory(
        PlanInput(
            "openai/whisper-small", 1, 1, 4, gpu_memory_gib=24, explicit=(2, False, False),
            lora=LORA, lora_mode="auto",
        )
    )  # fmt: skip
    assert lo.strategy is not None and not lo.strategy.lora


def test_the_chosen_strategy_reaches_the_trainer() -> None:
    """The operator renders the planner's micro-batch into the attempt's runtime, and the
    trainer's DeepSpeed config and step loop read it from there, not from the spec."""
    from whisperft.operator.api.resource import load_resources
    from whisperft.operator.render.bundle import render_attempt
    from whisperft.operator.render.meta import Meta
    from whisperft.operator.settings import load_settings
    from whisperft.trainer.deepspeed_config import build_deepspeed_config

    text = (
        "apiVersion: whisperft.io/v1alpha1\nkind: WhisperFineTune\nmetadata: {name: s}\n"
        "spec:\n  model: {name: openai/whisper-small, language: sw}\n"
        "  dataset: {path: /data/cv}\n  checkpoints: {size: 50Gi, accessMode: ReadWriteMany}\n"
        "  resources: {accelerator: nvidia-l4, workers: 2}\n"
        "  training: {maxSteps: 10, batchSizePerWorker: 16}\n"
    )
    res = load_resources(text, source="t")[0]
    out = render_attempt(res.spec, Meta("s", "default", None), load_settings({}))
    assert out.config is not None and out.problem is None
    cfg = out.config
    assert cfg.training.batch_size_per_worker == 16
    assert cfg.micro_batch < 16 and cfg.micro_batch * cfg.grad_accum == 16
    assert cfg.runtime.strategy.reasons and cfg.runtime.strategy.predicted_gpu_gib
    ds = build_deepspeed_config(cfg, world_size=2, precision="bf16", cuda=True)
    assert ds["train_micro_batch_size_per_gpu"] == cfg.micro_batch
    assert ds["gradient_accumulation_steps"] == cfg.grad_accum
    assert ds["train_batch_size"] == 32
