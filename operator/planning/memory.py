"""Per-GPU memory planner: refuse (or fix, with deepspeed auto) a plan that would hit
CUDA OOM, before any GPU is allocated.

Model states follow DeepSpeed's own ZeRO estimators
(``estimate_zero2_model_states_mem_needs`` / ``estimate_zero3_...``): with
mixed precision every trainable parameter costs 2 bytes of weights, 2 of
gradient and 12 of optimizer state (fp32 master copy + Adam m and v); ZeRO
stage 1 partitions the optimizer state over the G data-parallel GPUs, stage 2
also the gradients, stage 3 also the weights (plus the largest tensor gathered
whole); offloading moves the partitioned state to CPU memory.

Activations use the transformer activation formula of Korthikanti et al.
(2022), s·h·(34 + 5·a·s/h) bytes per layer per sample in 16-bit. The attention
term (5·a·s²) is what fused SDPA kernels avoid, so the estimate *with* it is an
upper bound and the one *without* it a lower bound: a plan is `fits` when the
upper bound fits, `tight` when only the lower bound does, `wont-fit` otherwise.
For whisper-small at batch 16 without gradient checkpointing the upper bound is
about 35 GiB, in line with the "36 GB for whisper-small" users report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from whisperft.operator.planning.whisper_sizes import ENCODER_POSITIONS, WhisperDims, dims_for

GIB = 1024**3
CUDA_OVERHEAD_GIB = 1.5  # CUDA context, NCCL buffers, allocator workspace
USABLE_FRACTION = 0.92  # fragmentation headroom
DECODER_TOKENS = 128  # typical padded label length; Common Voice sentences are short
CPU_OFFLOAD_BUFFER = 1.5  # DeepSpeed's additional_buffer_factor for offloaded state

Verdict = Literal["fits", "tight", "wont-fit", "unknown-model", "cpu-only"]

# Tried in order by `deepspeed: auto`: least communication / CPU traffic first.
AUTO_CANDIDATES: tuple[tuple[int, bool, bool], ...] = (
    (2, False, False),
    (3, False, False),
    (2, True, False),
    (3, True, False),
    (3, True, True),
)


@dataclass(frozen=True)
class PlanInput:
    model_name: str
    train_workers: int  # data-parallel ranks: one per GPU (or per pod on CPU)
    gpus_per_pod: int
    batch_per_worker: int
    gradient_checkpointing: bool = False
    freeze_encoder: bool = False
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    gpu_memory_gib: float | None = None  # None: CPU workers
    pod_memory_gib: float | None = None
    explicit: tuple[int, bool, bool] | None = None  # (stage, offload optimizer, offload params)


@dataclass(frozen=True)
class Estimate:
    model_states_gib: float
    activations_upper_gib: float
    activations_lower_gib: float
    overhead_gib: float
    cpu_offload_gib: float

    @property
    def upper_gib(self) -> float:
        return self.model_states_gib + self.activations_upper_gib + self.overhead_gib

    @property
    def lower_gib(self) -> float:
        return self.model_states_gib + self.activations_lower_gib + self.overhead_gib


@dataclass(frozen=True)
class Plan:
    stage: int
    offload_optimizer: bool
    offload_params: bool
    verdict: Verdict
    estimate: Estimate | None
    gpu_memory_gib: float | None
    notes: list[str] = field(default_factory=list)

    @property
    def allowed(self) -> bool:
        """Whether the operator may ask for GPUs with this plan."""
        return self.verdict != "wont-fit"


def _bytes_per_param(precision: str) -> tuple[int, int]:
    """(weight/gradient bytes, optimizer bytes) per trainable parameter."""
    if precision == "fp32":
        return 4, 8  # fp32 weights; Adam m, v
    return 2, 12  # 16-bit weights; fp32 master + Adam m, v


def model_states_gib(
    dims: WhisperDims, inp: PlanInput, stage: int, off_opt: bool, off_par: bool
) -> tuple[float, float]:
    """(GPU GiB, CPU GiB per pod) for weights, gradients and optimizer state."""
    wbytes, obytes = _bytes_per_param(inp.precision)
    n = dims.params
    t = dims.decoder_params if inp.freeze_encoder else n
    g = max(1, inp.train_workers)
    weights = wbytes * n / g + 4 * dims.largest_tensor_params if stage == 3 else wbytes * n
    if off_par:
        weights = 4 * dims.largest_tensor_params
    grads = wbytes * t / g if stage >= 2 else wbytes * t
    optim = obytes * t / g if stage >= 1 else obytes * t
    cpu = 0.0
    if off_opt:
        cpu += (optim + (grads if stage >= 2 else 0)) * inp.gpus_per_pod * CPU_OFFLOAD_BUFFER
        optim = 0.0
        grads = 0.0 if stage >= 2 else grads
    if off_par:
        cpu += wbytes * n / g * inp.gpus_per_pod * CPU_OFFLOAD_BUFFER
    return (weights + grads + optim) / GIB, cpu / GIB


def activations_gib(dims: WhisperDims, inp: PlanInput) -> tuple[float, float]:
    """(upper, lower) activation memory per GPU for one micro-batch."""
    h, a = dims.d_model, dims.heads
    scale = 2 if inp.precision == "fp32" else 1
    s_e, s_d = ENCODER_POSITIONS, DECODER_TOKENS

    def enc_layer(attn: bool) -> float:
        return s_e * h * (34 + (5 * a * s_e / h if attn else 0))

    def dec_layer(attn: bool) -> float:
        own = s_d * h * (34 + (5 * a * s_d / h if attn else 0))
        cross = s_d * h * 12 + (5 * a * s_d * s_e if attn else 0)
        return own + cross

    logits = s_d * dims.vocab * 4 * 2  # fp32 logits and their gradient

    def total(attn: bool) -> float:
        if inp.freeze_encoder:
            enc = s_e * h * 2 + enc_layer(attn)  # output kept; one layer's transient forward
        elif inp.gradient_checkpointing:
            enc = dims.encoder_layers * s_e * h * 2 + enc_layer(attn)
        else:
            enc = dims.encoder_layers * enc_layer(attn)
        if inp.gradient_checkpointing:
            dec = dims.decoder_layers * s_d * h * 2 + dec_layer(attn)
        else:
            dec = dims.decoder_layers * dec_layer(attn)
        return (enc + dec) * scale + logits

    b = inp.batch_per_worker
    return b * total(True) / GIB, b * total(False) / GIB


def estimate(
    dims: WhisperDims, inp: PlanInput, stage: int, off_opt: bool, off_par: bool
) -> Estimate:
    states, cpu = model_states_gib(dims, inp, stage, off_opt, off_par)
    upper, lower = activations_gib(dims, inp)
    return Estimate(
        round(states, 2), round(upper, 2), round(lower, 2), CUDA_OVERHEAD_GIB, round(cpu, 2)
    )


def _verdict(est: Estimate, inp: PlanInput) -> Verdict:
    assert inp.gpu_memory_gib is not None
    usable = inp.gpu_memory_gib * USABLE_FRACTION
    cpu_ok = inp.pod_memory_gib is None or est.cpu_offload_gib <= 0.8 * inp.pod_memory_gib
    if est.upper_gib <= usable and cpu_ok:
        return "fits"
    if est.lower_gib <= usable and cpu_ok:
        return "tight"
    return "wont-fit"


def _advice(inp: PlanInput) -> list[str]:
    tips = []
    if not inp.gradient_checkpointing:
        tips.append("enable training.gradientCheckpointing")
    if inp.batch_per_worker > 1:
        tips.append("lower training.batchSizePerWorker (raise gradAccum to keep the global batch)")
    if not inp.freeze_encoder:
        tips.append("set training.freezeEncoder")
    tips.append("choose an accelerator with more memory")
    return tips


def plan_memory(inp: PlanInput) -> Plan:
    """Pick (auto) or check (explicit) ZeRO stage/offload against the pool's GPU memory."""
    explicit = inp.explicit
    if inp.gpu_memory_gib is None:
        stage, oo, op = explicit or (2, False, False)
        return Plan(stage, oo, op, "cpu-only", None, None, ["CPU workers: no GPU memory to plan"])
    dims = dims_for(inp.model_name)
    if dims is None:
        stage, oo, op = explicit or (2, False, False)
        return Plan(
            stage,
            oo,
            op,
            "unknown-model",
            None,
            inp.gpu_memory_gib,
            [f"model {inp.model_name!r} is not a recognised Whisper size; memory not checked"],
        )
    candidates = [explicit] if explicit else list(AUTO_CANDIDATES)
    scored = [(c, estimate(dims, inp, *c)) for c in candidates]
    for wanted in ("fits", "tight"):
        for (stage, oo, op), est in scored:
            if _verdict(est, inp) == wanted:
                notes = [f"whisper-{dims.name}: {dims.params / 1e6:.0f}M parameters"]
                if wanted == "tight":
                    notes.append(
                        f"may not fit: {est.lower_gib:.1f}-{est.upper_gib:.1f} GiB per GPU estimated "
                        f"for {inp.gpu_memory_gib:g} GiB; consider: " + "; ".join(_advice(inp))
                    )
                return Plan(stage, oo, op, wanted, est, inp.gpu_memory_gib, notes)
    usable = inp.gpu_memory_gib * USABLE_FRACTION
    gpu_ok = [(c, e) for c, e in scored if e.lower_gib <= usable]
    if gpu_ok and inp.pod_memory_gib is not None:
        # The GPU would cope, but only by offloading more than the pod's memory holds.
        (stage, oo, op), est = min(gpu_ok, key=lambda ce: ce[1].cpu_offload_gib)
        need = est.cpu_offload_gib / 0.8
        msg = (
            f"will not fit: whisper-{dims.name} fits the {inp.gpu_memory_gib:g} GiB GPUs only with ZeRO stage "
            f"{stage} offloading to CPU memory, which needs {est.cpu_offload_gib:.1f} GiB per worker pod; "
            f"the pod has {inp.pod_memory_gib:g} GiB"
        )
        return Plan(
            stage,
            oo,
            op,
            "wont-fit",
            est,
            inp.gpu_memory_gib,
            [
                msg,
                f"try: set spec.resources.memory to at least {math.ceil(need)}Gi; "
                + "; ".join(_advice(inp)),
            ],
        )
    (stage, oo, op), est = min(scored, key=lambda ce: ce[1].lower_gib)
    what = "this ZeRO setting" if explicit else "any ZeRO stage/offload"
    msg = (
        f"will not fit: whisper-{dims.name} at batch {inp.batch_per_worker} needs at least "
        f"{est.lower_gib:.1f} GiB per GPU with {what} (best: stage {stage}"
        f"{', optimizer offload' if oo else ''}{', parameter offload' if op else ''}), "
        f"the pool's GPUs have {inp.gpu_memory_gib:g} GiB"
    )
    return Plan(
        stage, oo, op, "wont-fit", est, inp.gpu_memory_gib, [msg, "try: " + "; ".join(_advice(inp))]
    )
