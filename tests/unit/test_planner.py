"""The memory planner: Whisper sizes from dims, ZeRO model-state formulas, the
activation bounds, and the auto choice / refusal before any GPU is allocated."""

from __future__ import annotations

import pytest

from whisperft.operator.planning.memory import (
    GIB,
    PlanInput,
    estimate,
    model_states_gib,
    plan_memory,
)
from whisperft.operator.planning.whisper_sizes import SIZES, dims_for

pytestmark = pytest.mark.unit

# Published parameter counts (REFERENCE.md), in millions.
PUBLISHED = {"tiny": 37.8, "base": 72.6, "small": 241.7, "medium": 769.0, "large": 1550.0}


@pytest.mark.parametrize(("size", "millions"), PUBLISHED.items())
def test_parameter_counts_match_published_within_1_percent(size: str, millions: float) -> None:
    assert SIZES[size].params / 1e6 == pytest.approx(millions, rel=0.01)


@pytest.mark.parametrize(
    ("ref", "size"),
    [
        ("openai/whisper-small", "small"),
        ("openai/whisper-large-v3", "large"),
        ("openai/whisper-large-v3-turbo", "turbo"),
        ("bundled:tiny.en", "tiny"),
        ("bundled:base", "base"),
        ("ct2:/models/faster-whisper-medium", "medium"),
        ("/data/models/whisper-small-sw/", "small"),
    ],
)
def test_model_references_resolve_to_sizes(ref: str, size: str) -> None:
    dims = dims_for(ref)
    assert dims is not None and dims.name == size


def test_unknown_model_is_not_guessed() -> None:
    assert dims_for("my-org/asr-model") is None
    plan = plan_memory(PlanInput("my-org/asr-model", 1, 1, 8, gpu_memory_gib=24))
    assert plan.verdict == "unknown-model" and plan.allowed and "not a recognised" in plan.notes[0]


def test_model_states_follow_deepspeeds_zero_estimators() -> None:
    # DeepSpeed: ZeRO-2 without offload = 2N (fp16 weights, not partitioned) + (2+12)N/G,
    # ZeRO-2 with optimizer offload = 2N on the GPU.
    d = SIZES["small"]
    n = d.params
    inp = PlanInput("small", train_workers=8, gpus_per_pod=1, batch_per_worker=1)
    gpu, cpu = model_states_gib(d, inp, 2, False, False)
    assert gpu == pytest.approx((2 * n + 14 * n / 8) / GIB)
    assert cpu == 0
    gpu_off, cpu_off = model_states_gib(d, inp, 2, True, False)
    assert gpu_off == pytest.approx(2 * n / GIB)
    assert cpu_off > 0
    # ZeRO-3 partitions the weights too, plus the largest tensor gathered whole.
    gpu3, _ = model_states_gib(d, inp, 3, False, False)
    assert gpu3 == pytest.approx((16 * n / 8 + 4 * d.largest_tensor_params) / GIB)
    # Stage 0 keeps everything: 16 bytes per parameter.
    gpu0, _ = model_states_gib(d, inp, 0, False, False)
    assert gpu0 == pytest.approx(16 * n / GIB)


def test_frozen_encoder_trains_only_the_decoder() -> None:
    d = SIZES["small"]
    full = model_states_gib(d, PlanInput("small", 1, 1, 1), 0, False, False)[0]
    frozen = model_states_gib(d, PlanInput("small", 1, 1, 1, freeze_encoder=True), 0, False, False)[
        0
    ]
    assert frozen == pytest.approx((2 * d.params + 14 * d.decoder_params) / GIB)
    assert frozen < full


def test_whisper_small_batch_16_matches_what_users_report() -> None:
    """Users report about 36 GB for whisper-small without gradient checkpointing."""
    est = estimate(SIZES["small"], PlanInput("small", 1, 1, 16), 2, False, False)
    assert 30 < est.upper_gib < 42
    assert est.lower_gib < est.upper_gib
    ckpt = estimate(
        SIZES["small"], PlanInput("small", 1, 1, 16, gradient_checkpointing=True), 2, False, False
    )
    assert ckpt.upper_gib < est.upper_gib / 3


def test_auto_prefers_plain_zero2_when_it_fits() -> None:
    plan = plan_memory(
        PlanInput("openai/whisper-small", 2, 1, 8, gradient_checkpointing=True, gpu_memory_gib=24)
    )
    assert (plan.stage, plan.offload_optimizer, plan.offload_params, plan.verdict) == (
        2,
        False,
        False,
        "fits",
    )


def test_auto_escalates_to_zero3_then_offload_for_large_models() -> None:
    # whisper-large (1.54 B): ZeRO-2 on 2 x 16 GiB keeps 2N of weights + 14N/2 of
    # state per GPU (13 GiB) - too much; ZeRO-3 partitions the weights (11.8 GiB).
    two = plan_memory(
        PlanInput(
            "openai/whisper-large-v3",
            2,
            1,
            2,
            gradient_checkpointing=True,
            gpu_memory_gib=16,
            pod_memory_gib=64,
        )
    )
    assert (two.stage, two.offload_optimizer, two.verdict) == (3, False, "fits")
    # With 4 GPUs plain ZeRO-2 fits again, and is preferred (less communication).
    four = plan_memory(
        PlanInput(
            "openai/whisper-large-v3",
            4,
            1,
            2,
            gradient_checkpointing=True,
            gpu_memory_gib=16,
            pod_memory_gib=64,
        )
    )
    assert (four.stage, four.offload_optimizer) == (2, False)
    # On one 24 GiB GPU only offloading the optimizer state fits.
    one = plan_memory(
        PlanInput(
            "openai/whisper-large-v3",
            1,
            1,
            1,
            gradient_checkpointing=True,
            gpu_memory_gib=24,
            pod_memory_gib=128,
        )
    )
    assert one.allowed and one.offload_optimizer and not one.offload_params


def test_refuses_what_cannot_fit_with_advice() -> None:
    plan = plan_memory(
        PlanInput("openai/whisper-large-v3", 8, 1, 64, gpu_memory_gib=24, pod_memory_gib=32)
    )
    assert plan.verdict == "wont-fit" and not plan.allowed
    assert "will not fit" in plan.notes[0] and "24 GiB" in plan.notes[0]
    assert "gradientCheckpointing" in plan.notes[1]


def test_explicit_settings_are_checked_not_changed() -> None:
    inp = PlanInput(
        "openai/whisper-medium", 1, 1, 16, gpu_memory_gib=24, explicit=(0, False, False)
    )
    plan = plan_memory(inp)
    assert (plan.stage, plan.offload_optimizer) == (0, False)
    assert plan.verdict == "wont-fit"
    fits = plan_memory(
        PlanInput("openai/whisper-tiny", 1, 1, 4, gpu_memory_gib=80, explicit=(1, True, False))
    )
    assert (fits.stage, fits.offload_optimizer, fits.verdict) == (1, True, "fits")


def test_tight_plans_run_with_a_warning() -> None:
    plan = plan_memory(PlanInput("openai/whisper-small", 1, 1, 16, gpu_memory_gib=24))
    assert plan.verdict == "tight" and plan.allowed
    assert "may not fit" in plan.notes[-1] and "gradientCheckpointing" in plan.notes[-1]


def test_offloaded_state_must_fit_the_pods_memory() -> None:
    roomy = plan_memory(
        PlanInput(
            "openai/whisper-large-v3",
            1,
            1,
            1,
            gradient_checkpointing=True,
            gpu_memory_gib=24,
            pod_memory_gib=256,
        )
    )
    cramped = plan_memory(
        PlanInput(
            "openai/whisper-large-v3",
            1,
            1,
            1,
            gradient_checkpointing=True,
            gpu_memory_gib=24,
            pod_memory_gib=8,
        )
    )
    assert roomy.allowed and not cramped.allowed
    assert "the pod has 8 GiB" in cramped.notes[0] and "spec.resources.memory" in cramped.notes[1]


def test_cpu_workers_are_not_planned() -> None:
    plan = plan_memory(PlanInput("openai/whisper-small", 2, 1, 8))
    assert plan.verdict == "cpu-only" and plan.allowed and plan.stage == 2


def test_more_gpus_never_need_more_memory_per_gpu() -> None:
    d = SIZES["medium"]
    for stage in (1, 2, 3):
        sizes = [
            estimate(d, PlanInput("m", g, 1, 4), stage, False, False).upper_gib
            for g in (1, 2, 4, 8, 16)
        ]
        assert sizes == sorted(sizes, reverse=True)
