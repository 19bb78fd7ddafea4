"""The automatic memory strategy: the cheapest way to run a request that fits
the pool's GPUs with the safety margin, and why each lever was pulled.

Levers are tried in a fixed, documented order (docs/planning.md), cheapest
first; a lever further down the list is pulled only when every combination of
the ones above it fails:

1. a smaller micro-batch, with more accumulation so the global batch stays,
   down to ``MICRO_BATCH_FLOOR``: below it a GPU idles more than recompute costs;
2. gradient checkpointing, with the micro-batch again from the requested one down to 1;
3. ZeRO stage 3 (ZeRO-2 first: less communication);
4. optimizer offload to CPU memory;
5. parameter offload (ZeRO-3 only);
6. LoRA, only with ``training.lora.mode: auto``.

A strategy that fits the upper activation bound beats any that fits only the
lower one. ``deepspeed.mode: explicit`` is checked as written, never changed.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from whisperft.operator.planning.memory import (
    USABLE_FRACTION,
    Breakdown,
    Plan,
    PlanInput,
    Strategy,
    Verdict,
    breakdown,
    requested,
    verdict,
)
from whisperft.operator.planning.whisper_sizes import WhisperDims, dims_for

# (stage, offload optimizer, offload params), least communication / CPU traffic first.
ZERO_LADDER: tuple[tuple[int, bool, bool], ...] = (
    (2, False, False),
    (3, False, False),
    (2, True, False),
    (3, True, False),
    (3, True, True),
)


MICRO_BATCH_FLOOR = 4


def micro_batches(inp: PlanInput, floor: int = 1) -> list[int]:
    """Micro-batches that keep the global batch: divisors of batch x accumulation, largest first."""
    per_step = inp.batch_per_worker * inp.grad_accum
    low = min(floor, inp.batch_per_worker)
    return [m for m in range(inp.batch_per_worker, low - 1, -1) if per_step % m == 0]


def candidates(inp: PlanInput) -> Iterator[Strategy]:
    """Every strategy the auto mode may use, cheapest first (the module's order)."""
    per_step = inp.batch_per_worker * inp.grad_accum
    loras = {"off": [False], "on": [True], "auto": [False, True]}[inp.lora_mode]
    checkpointing = [True] if inp.gradient_checkpointing else [False, True]
    for lora in loras:
        for stage, off_opt, off_par in ZERO_LADDER:
            for gc in checkpointing:
                floor = 1 if gc else MICRO_BATCH_FLOOR
                for m in micro_batches(inp, floor):
                    yield Strategy(m, per_step // m, gc, stage, off_opt, off_par, lora)


def _gib(x: float) -> str:
    return f"{x:.1f} GiB"


def _reasons(inp: PlanInput, first: Breakdown, chosen: Strategy, est: Breakdown) -> list[str]:
    """Why the chosen strategy differs from the request, lever by lever."""
    assert inp.gpu_memory_gib is not None
    usable = inp.gpu_memory_gib * USABLE_FRACTION
    base = requested(inp, *(inp.explicit or ZERO_LADDER[0]))
    if chosen == base:
        return [
            f"as requested: {chosen.describe()} ({_gib(est.upper_gib)} of {_gib(usable)} usable)"
        ]
    out = [
        f"as requested ({base.describe()}) needs {_gib(first.upper_gib)} per GPU, "
        f"{_gib(usable)} usable of {inp.gpu_memory_gib:g} GiB"
    ]
    if chosen.micro_batch != base.micro_batch:
        out.append(
            f"micro-batch {base.micro_batch} -> {chosen.micro_batch} with accumulation "
            f"{base.grad_accum} -> {chosen.grad_accum}: the global batch stays "
            f"{base.micro_batch * base.grad_accum * max(1, inp.train_workers)}"
        )
    if chosen.gradient_checkpointing != base.gradient_checkpointing:
        out.append(
            "gradient checkpointing on: activations are recomputed in backward (~30% slower)"
        )
    if chosen.stage != base.stage:
        out.append(f"ZeRO-{chosen.stage}: the weights are partitioned over the GPUs")
    if chosen.offload_optimizer:
        out.append(f"optimizer state offloaded: {_gib(est.cpu_offload_gib)} of CPU memory per pod")
    if chosen.offload_params:
        out.append("parameters offloaded to CPU memory")
    if chosen.lora and not base.lora:
        out.append(
            f"LoRA (training.lora.mode auto): {est.trainable_params / 1e6:.1f}M trainable "
            f"parameters instead of {first.trainable_params / 1e6:.0f}M"
        )
    out.append(f"chosen: {chosen.describe()}, {_gib(est.upper_gib)} per GPU")
    return out


def advice(inp: PlanInput) -> list[str]:
    tips = []
    if not inp.gradient_checkpointing:
        tips.append("enable training.gradientCheckpointing")
    if inp.batch_per_worker > 1:
        tips.append("lower training.batchSizePerWorker (raise gradAccum to keep the global batch)")
    if inp.explicit is not None:
        tips.append("use training.deepspeed.mode auto")
    if not inp.freeze_encoder:
        tips.append("set training.freezeEncoder")
    if inp.lora_mode == "off":
        tips.append("allow LoRA with training.lora.mode auto")
    tips.append("choose an accelerator with more memory")
    return tips


def _unplanned(inp: PlanInput, verdict_: Verdict, note: str, dims: WhisperDims | None) -> Plan:
    # One CPU worker has nothing to partition: ZeRO-1/2 would only add flat copies and
    # reduce buckets (measured: 0.4 GB more RSS and slower steps for tiny.en on 2 cores).
    default = (0, False, False) if cpu_single(inp) else (2, False, False)
    stage, oo, op = inp.explicit or default
    s = requested(inp, stage, oo, op)
    est = breakdown(dims, inp, s) if dims is not None else None
    return Plan(stage, oo, op, verdict_, est, inp.gpu_memory_gib, [note], s)


def cpu_single(inp: PlanInput) -> bool:
    """A run of one CPU worker (a laptop, the demo): no GPU memory to plan, no shards."""
    return inp.gpu_memory_gib is None and inp.train_workers <= 1


def plan_memory(inp: PlanInput) -> Plan:
    """Pick (auto) or check (explicit) the whole memory strategy against the pool's GPUs."""
    dims = dims_for(inp.model_name)
    if inp.gpu_memory_gib is None:
        return _unplanned(inp, "cpu-only", "CPU workers: no GPU memory to plan", dims)
    if dims is None:
        return _unplanned(
            inp,
            "unknown-model",
            f"model {inp.model_name!r} is not a recognised Whisper size; memory not checked",
            None,
        )
    first = breakdown(dims, inp, requested(inp, *(inp.explicit or ZERO_LADDER[0])))
    pool = [requested(inp, *inp.explicit)] if inp.explicit else list(candidates(inp))
    scored = [(s, breakdown(dims, inp, s)) for s in pool]
    header = f"whisper-{dims.name}: {dims.params / 1e6:.0f}M parameters"
    for wanted in ("fits", "tight"):
        for s, est in scored:
            if verdict(est, inp) != wanted:
                continue
            notes = [header]
            if wanted == "tight":
                notes.append(
                    f"may not fit: {est.lower_gib:.1f}-{est.upper_gib:.1f} GiB per GPU estimated "
                    f"for {inp.gpu_memory_gib:g} GiB; consider: " + "; ".join(advice(inp))
                )
            reasons = _reasons(inp, first, s, est)
            return Plan(
                s.stage, s.offload_optimizer, s.offload_params, wanted, est,
                inp.gpu_memory_gib, notes, s, reasons,
            )  # fmt: skip
    return _refusal(inp, dims, scored)


def _refusal(inp: PlanInput, dims: WhisperDims, scored: list[tuple[Strategy, Breakdown]]) -> Plan:
    assert inp.gpu_memory_gib is not None
    usable = inp.gpu_memory_gib * USABLE_FRACTION
    gpu_ok = [(s, e) for s, e in scored if e.lower_gib <= usable]
    if gpu_ok and inp.pod_memory_gib is not None:
        # The GPU would cope, but only by offloading more than the pod's memory holds.
        s, est = min(gpu_ok, key=lambda se: se[1].cpu_offload_gib)
        need = est.cpu_offload_gib / 0.8
        msg = (
            f"will not fit: whisper-{dims.name} fits the {inp.gpu_memory_gib:g} GiB GPUs only with "
            f"ZeRO stage {s.stage} offloading to CPU memory, which needs "
            f"{est.cpu_offload_gib:.1f} GiB per worker pod; the pod has {inp.pod_memory_gib:g} GiB"
        )
        tips = f"try: set spec.resources.memory to at least {math.ceil(need)}Gi; " + "; ".join(
            advice(inp)
        )
        return Plan(
            s.stage, s.offload_optimizer, s.offload_params, "wont-fit", est,
            inp.gpu_memory_gib, [msg, tips], s,
        )  # fmt: skip
    s, est = min(scored, key=lambda se: se[1].lower_gib)
    what = (
        "this configuration"
        if inp.explicit
        else "any strategy (micro-batch 1, checkpointing, ZeRO-3, offload)"
    )
    msg = (
        f"will not fit: whisper-{dims.name} at batch {inp.batch_per_worker} needs at least "
        f"{est.lower_gib:.1f} GiB per GPU with {what} (best: {s.describe()}), "
        f"the pool's GPUs have {inp.gpu_memory_gib:g} GiB"
    )
    return Plan(
        s.stage, s.offload_optimizer, s.offload_params, "wont-fit", est,
        inp.gpu_memory_gib, [msg, "try: " + "; ".join(advice(inp))], s,
    )  # fmt: skip
