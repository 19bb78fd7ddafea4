"""The memory planner: Whisper sizes from dims, ZeRO model-state formulas, the
activation bounds, and the auto choice / refusal before any GPU is allocated."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest

from whisperft.operator.planning.memory import (
    GIB,
    LoraShape,
    Plan,
    PlanInput,
    estimate,
    model_states,
    model_states_gib,
    model_states_peak,
    partition_span,
    requested,
    state_moments,
    trainable_params,
    trainable_tensors,
    zero_buffers,
)
from whisperft.operator.planning.strategy import plan_memory
from whisperft.operator.planning.whisper_sizes import SIZES, dims_for

pytestmark = pytest.mark.unit

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results" / "planner.json"
TARGET = 0.10
MIB = 2**20
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")

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


def _gpu(model: str, workers: int, **kw: object) -> PlanInput:
    return PlanInput(model, workers, 1, 1, gpu_memory_gib=80, **kw)  # type: ignore[arg-type]


def _moments(model: str, inp: PlanInput, stage: int, **kw: bool) -> dict[str, tuple[float, ...]]:
    s = replace(requested(inp, stage), **kw)
    return state_moments(SIZES[model], inp, s)[0]


def test_bucket_sizes_come_from_the_trainers_deepspeed_json() -> None:
    # trainer/deepspeed_config.py: reduce_bucket_size 5e7, overlap_comm on CUDA only
    # (double-buffered reduce bucket), nothing set for the ZeRO-3 reuse distance.
    gpu, cpu = zero_buffers(2, False, False, True), zero_buffers(2, False, False, False)
    assert (gpu.reduce_bucket, gpu.reduce_buffers, cpu.reduce_buffers) == (50_000_000, 2, 1)
    z3 = zero_buffers(3, False, False, True)
    assert (z3.prefetch_bucket, z3.max_reuse_distance) == (50_000_000, 1_000_000_000)


def test_zero_2_holds_buckets_in_the_backward_and_fp32_gradients_at_the_step() -> None:
    # small, 8 bf16 GPUs: the 16-bit gradients of every tensor touching the partition,
    # beside two 5e7-element reduce buckets in the backward, and beside the flattened
    # partition and its fp32 copy (2 + 4 bytes per partition element) at the step;
    # the optimizer is the fp32 master partition + Adam's m, v (12 bytes).
    d = SIZES["small"]
    inp = _gpu("small", 8)
    t = trainable_params(d, inp, False)
    p = math.ceil(t / 8)
    held = 2 * partition_span(trainable_tensors(d, inp, False), 8)
    m = _moments("small", inp, 2)
    assert m["backward"] == (2 * d.params, 2 * 2 * 50_000_000 + held, 12 * p)
    assert m["step"] == (2 * d.params, held + 6 * p, 12 * p)
    assert p <= held / 2 <= p + 2 * d.largest_tensor_params
    # On one GPU nothing straddles: 2 + 2 + 4 bytes of gradient per parameter.
    one = _moments("small", _gpu("small", 1), 2)["step"]
    assert one[1] == 8 * t


def test_fp32_keeps_a_master_copy_under_zero_but_not_at_stage_0() -> None:
    d = SIZES["tiny"]
    inp = replace(_gpu("tiny", 1), precision="fp32")
    t = trainable_params(d, inp, False)
    assert _moments("tiny", inp, 1)["step"][2] == 12 * t  # cloned fp32 partition + m, v
    zero0 = _moments("tiny", inp, 0)
    assert zero0["step"][2] == 8 * t  # torch AdamW on the fp32 weights themselves
    assert zero0["allreduce"][1] == 8 * t  # the gradients + their flattened bucket


def test_zero_0_in_16_bit_copies_the_gradients_to_fp32_for_the_step() -> None:
    d = SIZES["small"]
    inp = _gpu("small", 1, freeze_encoder=True)
    t = trainable_params(d, inp, False)
    assert t < trainable_params(d, _gpu("small", 1), False)  # only the decoder trains
    step = _moments("small", inp, 0)["step"]
    assert step == (2 * d.params, 6 * t, 12 * t)


def test_zero_3_gathers_only_with_more_than_one_rank() -> None:
    d = SIZES["small"]
    one = _moments("small", _gpu("small", 1), 3)
    eight = _moments("small", _gpu("small", 8), 3)
    n = d.params
    assert one["forward"][0] == 2 * n  # one rank: the gathered weights are the partition
    gathered = eight["forward"][0] - 2 * math.ceil(n / 8)
    assert gathered == 2 * trainable_params(d, _gpu("small", 8), False)  # all reused in backward
    assert eight["step"][0] == 2 * math.ceil(n / 8)
    # large-v3 is longer than half the reuse distance: what stays gathered is capped.
    big = _moments("large", _gpu("large", 8), 3)["forward"][0]
    assert big - 2 * math.ceil(SIZES["large"].params / 8) < 2 * SIZES["large"].params / 2


def test_offload_moves_the_optimizer_and_fp32_gradients_to_the_host() -> None:
    d = SIZES["small"]
    inp = _gpu("small", 8)
    gpu, cpu = model_states_gib(d, inp, 2, False, False)
    gpu_off, cpu_off = model_states_gib(d, inp, 2, True, False)
    assert cpu == 0 and cpu_off > 0 and gpu_off < gpu
    # what stays on the GPU: the 16-bit weights, gradients and reduce buckets
    assert _moments("small", inp, 2, offload_optimizer=True)["step"][2] == 0
    assert model_states_gib(d, inp, 3, True, True)[0] < gpu_off


@pytest.mark.parametrize("model", ["tiny", "base", "small", "medium", "large"])
@pytest.mark.parametrize("gpus", [1, 8])
def test_never_below_deepspeeds_own_estimators(model: str, gpus: int) -> None:
    # deepspeed.runtime.zero: estimate_zero2_model_states_mem_needs = 2N + 18N/G (16-bit
    # weights; 16-bit and fp32 gradients, fp32 master, m, v per partition element),
    # estimate_zero3_model_states_mem_needs = 4 * largest layer + 18N/G (no offload);
    # they leave out the reduce buckets, the flattened gradient copy at the step, the
    # straddling tensors and what ZeRO-3 keeps gathered, so the planner is at or above
    # them (bench/README.md compares).
    d = SIZES[model]
    n = d.params
    inp = _gpu(model, gpus)
    z2 = model_states_gib(d, inp, 2, False, False)[0] * GIB
    z3 = model_states_gib(d, inp, 3, False, False)[0] * GIB
    assert z2 >= 0.98 * (2 * n + 18 * n / gpus)
    assert z3 >= 0.98 * (4 * d.largest_tensor_params + 18 * n / gpus)


def test_the_committed_model_state_measurements_are_predicted_within_target() -> None:
    """bench/results/planner.json: real DeepSpeed engines (CPU, gloo); the planner with
    the CPU JSON (no overlap_comm) within 10% per component and total, and under-predicting
    by at most 2% (the closed-form counts round a few biases)."""
    record = json.loads(RESULTS.read_text())
    assert record["model_states"]
    for row in record["model_states"]:
        case = row["case"]
        inp = PlanInput(
            case["model"],
            row["workers"],
            1,
            1,
            freeze_encoder=case["frozen_encoder"],
            precision=case["precision"],
            lora=LoraShape(32, LORA_TARGETS) if case["lora"] else None,
            lora_mode="on" if case["lora"] else "off",
        )
        s = replace(requested(inp, case["stage"]), lora=case["lora"])
        w, g, o, _, _, _ = model_states(SIZES[case["model"]], inp, s)
        total = model_states_peak(SIZES[case["model"]], inp, s)
        pred = {"weights": w, "gradients": g, "optimizer": o, "total": total}
        for key, value in pred.items():
            measured = row["measured_mib"][key] * MIB
            err = (value - measured) / measured
            assert -0.02 <= err <= TARGET, (row["label"], row["workers"], key, err)


def test_whisper_small_batch_16_needs_more_than_a_24_gb_gpu_without_checkpointing() -> None:
    """Users report whisper-small at batch 16 without gradient checkpointing running out
    of memory on 24 GB GPUs. (The bound used to be "30-42 GiB", what users report for the
    HF Trainer with fp32 weights under AMP; the activations measured in
    bench/results/planner.json put the bf16 DeepSpeed run near 26 GiB.)"""
    inp = PlanInput("small", 1, 1, 16, gpu_memory_gib=24)
    est = estimate(SIZES["small"], inp, 2, False, False)
    assert 24 * 0.92 < est.upper_gib < 40 * 0.92
    assert est.lower_gib < est.upper_gib
    ckpt = estimate(SIZES["small"], replace(inp, gradient_checkpointing=True), 2, False, False)
    assert ckpt.activations_upper_gib < est.activations_upper_gib / 3
    assert ckpt.upper_gib < 24 * 0.92 < est.upper_gib


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
    # whisper-large (1.54 B) on 2 GPUs: ZeRO-2 keeps 2N of weights and, at the step,
    # 2 + 2 + 4 bytes of gradient and 12 of optimizer per partition element (17.2 GiB
    # per GPU); ZeRO-3 partitions the weights (15.9 GiB), which fits a 20 GiB GPU but
    # not a 16 GiB one, where only offloading the optimizer state fits.
    def two(gib: int) -> Plan:
        return plan_memory(
            PlanInput(
                "openai/whisper-large-v3",
                2,
                1,
                2,
                gradient_checkpointing=True,
                gpu_memory_gib=gib,
                pod_memory_gib=64,
            )
        )

    assert (two(20).stage, two(20).offload_optimizer, two(20).verdict) == (3, False, "fits")
    sixteen = two(16)
    assert (sixteen.offload_optimizer, sixteen.offload_params, sixteen.verdict) == (
        True,
        False,
        "fits",
    )
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
    # large-v3 on 2 GiB GPUs: even micro-batch 1 with checkpointing and full offload
    # leaves the CUDA context, the gathered layers and the activations above it.
    plan = plan_memory(
        PlanInput("openai/whisper-large-v3", 1, 1, 64, gpu_memory_gib=2, pod_memory_gib=512)
    )
    assert plan.verdict == "wont-fit" and not plan.allowed
    assert "will not fit" in plan.notes[0] and "2 GiB" in plan.notes[0]
    assert "any strategy" in plan.notes[0]
    assert "training.lora.mode auto" in plan.notes[1]


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
    plan = plan_memory(
        PlanInput("openai/whisper-small", 1, 1, 16, gpu_memory_gib=24, explicit=(2, False, False))
    )
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
    # one CPU worker: nothing to partition, so no ZeRO buffers
    one = plan_memory(PlanInput("openai/whisper-small", 1, 1, 8))
    assert one.verdict == "cpu-only" and one.stage == 0
    explicit = plan_memory(PlanInput("openai/whisper-small", 1, 1, 8, explicit=(2, False, False)))
    assert explicit.stage == 2


def test_more_gpus_never_need_more_memory_per_gpu() -> None:
    d = SIZES["medium"]
    for stage in (1, 2, 3):
        sizes = [
            estimate(d, PlanInput("m", g, 1, 4), stage, False, False).upper_gib
            for g in (1, 2, 4, 8, 16)
        ]
        assert sizes == sorted(sizes, reverse=True)
