"""Model states in the planner benchmark: the engines' measurements (``planner_engine``)
next to the planner's predictions, and DeepSpeed's own estimators next to the planner
for tiny ... large-v3."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from planner_common import LORA_TARGETS, MIB, rel
from planner_engine import StateCase, measure_states, state_cases

from whisperft.operator.planning.memory import (
    DEEPSPEED_DEFAULTS,
    LoraShape,
    PlanInput,
    Strategy,
    model_states,
    model_states_peak,
)
from whisperft.operator.planning.whisper_sizes import SIZES

STATE_KEYS = ("weights", "gradients", "optimizer", "total")


def check_deepspeed_defaults() -> dict[str, int]:
    """The defaults the planner assumes for what the trainer's JSON leaves unset, checked
    against the installed DeepSpeed (a newer release may change them)."""
    from deepspeed.runtime import engine
    from deepspeed.runtime.zero.config import DeepSpeedZeroConfig

    zero = DeepSpeedZeroConfig()
    installed = {
        "allreduce_bucket_size": int(engine.MEMORY_OPT_ALLREDUCE_SIZE),
        "reduce_bucket_size": int(zero.reduce_bucket_size),
        "allgather_bucket_size": int(zero.allgather_bucket_size),
        "stage3_prefetch_bucket_size": int(zero.prefetch_bucket_size),
        "stage3_max_reuse_distance": int(zero.max_reuse_distance),
        "sub_group_size": int(zero.sub_group_size),
    }
    if installed != DEEPSPEED_DEFAULTS:
        raise SystemExit(f"DeepSpeed's defaults changed: {installed} != {DEEPSPEED_DEFAULTS}")
    return installed


def _plan_input(case: StateCase, workers: int) -> PlanInput:
    return PlanInput(
        model_name=case.model,
        train_workers=workers,
        gpus_per_pod=1,
        batch_per_worker=1,
        freeze_encoder=case.frozen_encoder,
        precision=case.precision,
        lora=LoraShape(32, LORA_TARGETS) if case.lora else None,
        lora_mode="on" if case.lora else "off",
    )


def predict_states(case: StateCase, workers: int, *, cuda: bool = False) -> dict[str, float]:
    """The planner's components (each at its peak) and total (the largest moment), for the
    DeepSpeed JSON the trainer writes on the CPU (``cuda=False``: no ``overlap_comm``)."""
    inp = _plan_input(case, workers)
    s = Strategy(
        micro_batch=1, grad_accum=1, gradient_checkpointing=False, stage=case.stage, lora=case.lora
    )
    dims = SIZES[case.model]
    w, g, o, _host, _t, _n = model_states(dims, inp, s, cuda=cuda)
    total = model_states_peak(dims, inp, s, cuda=cuda)
    return {"weights": w, "gradients": g, "optimizer": o, "total": total}


def run_states(quick: bool, log: Callable[[str], None]) -> list[dict[str, Any]]:
    cases = state_cases(quick)
    rows = []
    for world in (1, 2):
        t0 = time.perf_counter()
        measured = measure_states(cases, world)
        log(
            f"model states on {world} worker(s): {len(cases)} engines "
            f"in {time.perf_counter() - t0:.0f} s"
        )
        for m in measured:
            case = StateCase(**m["case"])
            moments = m["moments"]
            # each component at its own peak; the total is the largest moment's sum
            meas = {
                k: max(mm[k] for mm in moments.values())
                for k in ("weights", "gradients", "optimizer", "other")
            }
            name, top = max(moments.items(), key=lambda kv: sum(kv[1].values()))
            meas["total"] = sum(top.values())
            pred = predict_states(case, world)
            rows.append(
                {
                    "case": asdict(case),
                    "label": case.label,
                    "workers": world,
                    "trainable_params": m["trainable_params"],
                    "total_params": m["total_params"],
                    "peak_moment": name,  # where the total peaks
                    "moments_mib": {
                        k: {c: round(v / MIB, 2) for c, v in mm.items()}
                        for k, mm in moments.items()
                    },
                    "measured_mib": {k: round(meas[k] / MIB, 2) for k in (*STATE_KEYS, "other")},
                    "predicted_mib": {k: round(pred[k] / MIB, 2) for k in STATE_KEYS},
                    "error": {k: rel(pred[k], meas[k]) for k in STATE_KEYS},
                }
            )
    return rows


ESTIMATOR_MODELS = ("tiny", "base", "small", "medium", "large")


def run_estimators() -> list[dict[str, Any]]:
    """DeepSpeed's ZeRO-2/3 estimates (no offload; what ``estimate_zero2_model_states_mem_needs_
    all_live`` / ``..._all_cold`` print) next to the planner's largest moment on GPUs (the
    trainer's CUDA JSON), bf16, full fine-tuning, 1 and 8 GPUs."""
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

    rows = []
    for name in ESTIMATOR_MODELS:
        d = SIZES[name]
        for gpus in (1, 8):
            for stage in (2, 3):
                if stage == 2:
                    _cpu, ds_gpu = estimate_zero2_model_states_mem_needs(
                        d.params, num_gpus_per_node=gpus, cpu_offload=False
                    )
                else:
                    _cpu, ds_gpu, _ = estimate_zero3_model_states_mem_needs(
                        d.params,
                        d.largest_tensor_params,
                        num_gpus_per_node=gpus,
                        cpu_offload=False,
                        cpu_offload_params=False,
                    )
                pred = predict_states(StateCase(name, stage, "bf16"), gpus, cuda=True)["total"]
                rows.append(
                    {
                        "model": "large-v3" if name == "large" else name,
                        "params": d.params,
                        "stage": stage,
                        "gpus": gpus,
                        "deepspeed_gib": round(ds_gpu / 2**30, 3),
                        "planner_gib": round(pred / 2**30, 3),
                        "planner_vs_deepspeed": rel(pred, ds_gpu),
                    }
                )
    return rows
