"""Per-GPU memory of one training strategy, component by component.

Model states follow DeepSpeed's own ZeRO estimators
(``estimate_zero2_model_states_mem_needs`` / ``estimate_zero3_...``): with
mixed precision every trainable parameter costs 2 bytes of weights, 2 of
gradient and 12 of optimizer state (fp32 master copy + Adam m and v); ZeRO
stage 1 partitions the optimizer state over the G data-parallel GPUs, stage 2
also the gradients, stage 3 also the weights (plus the largest tensor gathered
whole); offloading moves the partitioned state to CPU memory. Frozen weights
(a frozen encoder, or the whole base model under LoRA) cost only their 16-bit
copy. Activations come from ``activations.py``; ``strategy.py`` searches the
strategies and ``bench/planner.py`` measures the error of both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import lru_cache
from types import SimpleNamespace
from typing import Any, Literal, cast

from whisperft.operator.planning.activations import Activations, activations
from whisperft.operator.planning.whisper_sizes import (
    DECODER_POSITIONS,
    ENCODER_POSITIONS,
    WhisperDims,
)

GIB = 1024**3
CUDA_OVERHEAD_GIB = 1.5  # CUDA context, NCCL buffers, allocator workspace
USABLE_FRACTION = 0.92  # fragmentation headroom
DECODER_TOKENS = 128  # typical padded label length; Common Voice sentences are short
CPU_OFFLOAD_BUFFER = 1.5  # DeepSpeed's additional_buffer_factor for offloaded state
HOST_OFFLOAD_SHARE = 0.8  # offloaded state may use this share of the pod's memory

Precision = Literal["auto", "fp32", "bf16", "fp16"]
Verdict = Literal["fits", "tight", "wont-fit", "unknown-model", "cpu-only"]


@dataclass(frozen=True)
class LoraShape:
    rank: int
    targets: tuple[str, ...]


@dataclass(frozen=True)
class PlanInput:
    """What the resource asks for, as the planner sees it."""

    model_name: str
    train_workers: int  # data-parallel ranks: one per GPU (or per pod on CPU)
    gpus_per_pod: int
    batch_per_worker: int
    grad_accum: int = 1
    gradient_checkpointing: bool = False
    freeze_encoder: bool = False
    train_top_encoder_layers: int = 0
    precision: Precision = "auto"
    gpu_memory_gib: float | None = None  # None: CPU workers
    pod_memory_gib: float | None = None
    explicit: tuple[int, bool, bool] | None = None  # (stage, offload optimizer, offload params)
    label_tokens: int = DECODER_TOKENS
    lora: LoraShape | None = None  # the adapters' shape when LoRA may be used
    lora_mode: Literal["off", "on", "auto"] = "off"


@dataclass(frozen=True)
class Strategy:
    """One way to run the request: what the trainer is told to do."""

    micro_batch: int
    grad_accum: int
    gradient_checkpointing: bool
    stage: int
    offload_optimizer: bool = False
    offload_params: bool = False
    lora: bool = False

    def describe(self) -> str:
        parts = [f"micro-batch {self.micro_batch} x {self.grad_accum} accumulation"]
        parts.append(
            "gradient checkpointing" if self.gradient_checkpointing else "no checkpointing"
        )
        parts.append(f"ZeRO-{self.stage}")
        if self.offload_optimizer:
            parts.append("optimizer offload")
        if self.offload_params:
            parts.append("parameter offload")
        if self.lora:
            parts.append("LoRA")
        return ", ".join(parts)


@dataclass(frozen=True)
class Breakdown:
    """GiB per GPU (host GiB per pod for the offloaded state) of one strategy."""

    weights_gib: float
    gradients_gib: float
    optimizer_gib: float
    activations_upper: Activations  # bytes; eager attention keeps its probabilities
    activations_lower: Activations  # bytes; fused SDPA keeps none
    overhead_gib: float
    cpu_offload_gib: float
    trainable_params: int
    total_params: int
    # the largest moment (weights, gradients, optimizer at once): at most their sum
    model_states_peak_gib: float | None = None

    @property
    def model_states_gib(self) -> float:
        if self.model_states_peak_gib is not None:
            return self.model_states_peak_gib
        return self.weights_gib + self.gradients_gib + self.optimizer_gib

    @property
    def activations_upper_gib(self) -> float:
        return self.activations_upper.total / GIB

    @property
    def activations_lower_gib(self) -> float:
        return self.activations_lower.total / GIB

    @property
    def upper_gib(self) -> float:
        return self.model_states_gib + self.activations_upper_gib + self.overhead_gib

    @property
    def lower_gib(self) -> float:
        return self.model_states_gib + self.activations_lower_gib + self.overhead_gib


Estimate = Breakdown  # the name decide.py and older callers use


@dataclass(frozen=True)
class Plan:
    stage: int
    offload_optimizer: bool
    offload_params: bool
    verdict: Verdict
    estimate: Breakdown | None
    gpu_memory_gib: float | None
    notes: list[str] = field(default_factory=list)
    strategy: Strategy | None = None
    reasons: list[str] = field(default_factory=list)

    @property
    def allowed(self) -> bool:
        """Whether the operator may ask for GPUs with this plan."""
        return self.verdict != "wont-fit"

    @property
    def headroom_gib(self) -> float | None:
        if self.estimate is None or self.gpu_memory_gib is None:
            return None
        return round(self.gpu_memory_gib * USABLE_FRACTION - self.estimate.upper_gib, 2)


def bytes_per_param(precision: str) -> tuple[int, int]:
    """(weight/gradient bytes, optimizer bytes) per trainable parameter under ZeRO 1-3.

    DeepSpeed keeps an fp32 master partition even for an fp32 model (a clone), so
    the optimizer costs 12 bytes (master + Adam m, v) at every precision.
    """
    return (4 if precision == "fp32" else 2), 12


# DeepSpeed's own defaults for what the trainer's JSON leaves unset (deepspeed 0.19:
# runtime/engine.py MEMORY_OPT_ALLREDUCE_SIZE, runtime/zero/config.py); bench/planner.py
# checks them against the installed DeepSpeed.
DEEPSPEED_DEFAULTS: dict[str, int] = {
    "allreduce_bucket_size": 500_000_000,  # ZeRO-0's buffered all-reduce, elements
    "reduce_bucket_size": 500_000_000,
    "allgather_bucket_size": 500_000_000,
    "stage3_prefetch_bucket_size": 50_000_000,
    "stage3_max_reuse_distance": 1_000_000_000,
    "sub_group_size": 1_000_000_000,
}


@dataclass(frozen=True)
class ZeroBuffers:
    """The sizes (elements) that give DeepSpeed's buffers their size, from the trainer's JSON."""

    reduce_bucket: int
    reduce_buffers: int  # ZeRO-1/2 double-buffer the reduce bucket with overlap_comm
    allreduce_bucket: int
    prefetch_bucket: int
    max_reuse_distance: int
    sub_group: int


@lru_cache(maxsize=64)
def zero_buffers(
    stage: int, offload_optimizer: bool, offload_params: bool, cuda: bool
) -> ZeroBuffers:
    """Bucket sizes of the DeepSpeed JSON the trainer writes (trainer/deepspeed_config.py):
    one source of truth, read through the same function the trainer calls."""
    from whisperft.trainer.deepspeed_config import build_deepspeed_config

    stub = SimpleNamespace(  # what build_deepspeed_config reads of a TrainConfig
        training=SimpleNamespace(
            learning_rate=1e-5,
            weight_decay=0.0,
            adam_beta1=0.9,
            adam_beta2=0.999,
            adam_epsilon=1e-8,
            max_grad_norm=1.0,
            deepspeed=SimpleNamespace(overrides={}),
        ),
        runtime=SimpleNamespace(
            deepspeed=SimpleNamespace(
                stage=stage, offload_optimizer=offload_optimizer, offload_params=offload_params
            )
        ),
        micro_batch=1,
        grad_accum=1,
    )
    zero = build_deepspeed_config(cast(Any, stub), world_size=1, precision="bf16", cuda=cuda)[
        "zero_optimization"
    ]

    def get(key: str) -> int:
        return int(zero.get(key, DEEPSPEED_DEFAULTS[key]))

    return ZeroBuffers(
        reduce_bucket=get("reduce_bucket_size"),
        reduce_buffers=2 if zero.get("overlap_comm", False) else 1,
        allreduce_bucket=DEEPSPEED_DEFAULTS["allreduce_bucket_size"],
        prefetch_bucket=get("stage3_prefetch_bucket_size"),
        max_reuse_distance=get("stage3_max_reuse_distance"),
        sub_group=get("sub_group_size"),
    )


def _linear_shapes(d: int, cross: bool) -> dict[str, list[tuple[int, int]]]:
    """(in, out) of each adaptable linear of one layer, by module name."""
    attn = [(d, d)] * (2 if cross else 1)
    return {
        "q_proj": attn,
        "k_proj": attn,
        "v_proj": attn,
        "out_proj": attn,
        "fc1": [(d, 4 * d)],
        "fc2": [(4 * d, d)],
    }


def lora_params(dims: WhisperDims, inp: PlanInput) -> int:
    """Adapter parameters: r·(in+out) per adapted linear, none in a frozen encoder prefix."""
    assert inp.lora is not None
    r, d, targets = inp.lora.rank, dims.d_model, inp.lora.targets

    def per_layer(cross: bool) -> int:
        shapes = _linear_shapes(d, cross)
        return sum(r * (i + o) for t in targets for i, o in shapes[t])

    enc_layers = inp.train_top_encoder_layers if inp.freeze_encoder else dims.encoder_layers
    return enc_layers * per_layer(False) + dims.decoder_layers * per_layer(True)


def trainable_params(dims: WhisperDims, inp: PlanInput, lora: bool) -> int:
    """The trained parameters: adapters under LoRA, else what the freezing leaves (Whisper's
    encoder positions are never trained: transformers freezes them)."""
    if lora:
        return lora_params(dims, inp)
    return sum(trainable_tensors(dims, inp, lora))


def _layer_tensors(d: int, cross: bool) -> list[int]:
    """Tensor sizes of one Whisper layer in parameter order (k_proj has no bias)."""
    attn = [d * d, d * d, d, d * d, d, d * d, d, d, d]  # k, v(+b), q(+b), out(+b), norm
    mlp = [4 * d * d, 4 * d, 4 * d * d, d, d, d]  # fc1, fc2, final norm
    return attn + (attn if cross else []) + mlp


def trainable_tensors(dims: WhisperDims, inp: PlanInput, lora: bool) -> list[int]:
    """Sizes of the trained tensors in the order DeepSpeed flattens them (model.parameters()).

    Only ZeRO-1/2's partition boundaries depend on it (a tensor that straddles one keeps
    its whole gradient on the rank); the total matches ``trainable_params`` up to the
    few bias terms the closed-form count rounds.
    """
    d = dims.d_model
    if lora:
        assert inp.lora is not None
        r, targets = inp.lora.rank, inp.lora.targets

        def adapters(cross: bool) -> list[int]:
            shapes = _linear_shapes(d, cross)
            return [x for t in targets for i, o in shapes[t] for x in (r * i, o * r)]

        enc_layers = inp.train_top_encoder_layers if inp.freeze_encoder else dims.encoder_layers
        return [x for _ in range(enc_layers) for x in adapters(False)] + [
            x for _ in range(dims.decoder_layers) for x in adapters(True)
        ]
    out: list[int] = []
    if not inp.freeze_encoder:
        out += [d * dims.n_mels * 3, d, d * d * 3, d]  # conv1, conv2 (positions are frozen)
    enc_layers = inp.train_top_encoder_layers if inp.freeze_encoder else dims.encoder_layers
    out += [x for _ in range(enc_layers) for x in _layer_tensors(d, False)]
    if enc_layers:
        out += [d, d]  # encoder layer norm
    out += [dims.vocab * d, DECODER_POSITIONS * d]
    out += [x for _ in range(dims.decoder_layers) for x in _layer_tensors(d, True)]
    return [*out, d, d]


def partition_span(sizes: list[int], g: int) -> int:
    """The most elements one of ``g`` equal ZeRO-1/2 partitions touches, counting every
    tensor that overlaps it whole (its gradient stays whole until the optimizer step)."""
    total = sum(sizes)
    if g <= 1:
        return total
    part = math.ceil(total / g)
    spans = [0] * g
    offset = 0
    for n in sizes:
        first, last = offset // part, min(g - 1, (offset + n - 1) // part)
        for r in range(first, last + 1):
            spans[r] += n
        offset += n
    return max(spans)


def backward_params(dims: WhisperDims, inp: PlanInput, lora: bool, trainable: int) -> int:
    """Parameters of the modules the backward runs through: what ZeRO-3 keeps gathered
    from the end of the forward into the backward (a frozen prefix is not revisited)."""
    if not lora:
        return trainable
    layers = inp.train_top_encoder_layers if inp.freeze_encoder else dims.encoder_layers
    base = dims.decoder_params + layers * dims.encoder_layer_params + 2 * dims.d_model
    return base + trainable


Moment = tuple[float, float, float]  # (weights, gradients, optimizer) bytes at one moment


def state_moments(
    dims: WhisperDims, inp: PlanInput, s: Strategy, *, cuda: bool | None = None
) -> tuple[dict[str, Moment], float, int, int]:
    """GPU bytes per GPU at each moment where DeepSpeed holds the most, the host bytes per
    pod for offloaded state, and the (trainable, total) parameters.

    What DeepSpeed 0.19 holds, with the trainer's JSON (``zero_buffers``); t trained
    parameters, n in all, g data-parallel ranks, w bytes per weight (2, or 4 in fp32),
    p = t/g the partition:

    - ZeRO-0 (engine + torch AdamW; 16-bit: ``FP16_UnfusedOptimizer``): w·n weights,
      Adam's m and v (8·t) plus, in 16-bit, an fp32 master copy (4·t). In the all-reduce
      the w·t gradients and their flattened bucket (w·min(t, 5e8)); at the step, in
      16-bit, the w·t gradients and their fp32 copies (4·t).
    - ZeRO-1/2: w·n weights, 12·p optimizer (fp32 master partition, m, v). In the
      backward's epilogue the reduce bucket(s) (``reduce_bucket_size`` elements, two
      with ``overlap_comm``) beside the gradients; at the step the gradients of every
      tensor that touches the partition (``partition_span``), their flattened copy (w·p)
      and its fp32 conversion (4·p, 16-bit only).
    - ZeRO-3: w·n/g weight partitions, 12·p optimizer; the gradient partition buffer
      (w·p) and one reduce bucket always; at the end of the forward, on more than one
      rank, the parameters the backward reuses within ``stage3_max_reuse_distance``
      stay gathered (at most half that distance plus a prefetch bucket and the largest
      tensor); at the step, per sub-group, the flattened gradients and their fp32 copy.
    - Offloading moves the optimizer state and fp32 gradients (and the weight
      partitions) to the host, times DeepSpeed's ``additional_buffer_factor``.
    """
    cuda = inp.gpu_memory_gib is not None if cuda is None else cuda
    w = bytes_per_param(inp.precision)[0]
    half = w == 2
    sizes = trainable_tensors(dims, inp, s.lora)
    t = trainable_params(dims, inp, s.lora)
    n = dims.params + (t if s.lora else 0)
    g = max(1, inp.train_workers)
    p = math.ceil(t / g)
    zb = zero_buffers(s.stage, s.offload_optimizer, s.offload_params, cuda)
    host = 0.0
    moments: dict[str, Moment]
    if s.stage == 0:
        optim = (12 if half else 8) * t
        moments = {
            "allreduce": (w * n, w * t + w * min(t, zb.allreduce_bucket), optim),
            "step": (w * n, w * t + (4 * t if half else 0), optim),
        }
    elif s.stage in (1, 2):
        held = w * partition_span(sizes, g)
        buckets = zb.reduce_buffers * zb.reduce_bucket * w
        optim = 12 * p
        convert = held + w * p + (4 * p if half else 0)
        if s.offload_optimizer:  # the fp32 partition gradients and the step live on the host
            host += 16 * p * inp.gpus_per_pod * CPU_OFFLOAD_BUFFER
            optim, convert = 0, held
        moments = {
            "backward": (w * n, buckets + held, optim),
            "step": (w * n, convert, optim),
        }
    else:
        part_w = w * math.ceil(n / g)
        live = zb.max_reuse_distance // 2 + zb.prefetch_bucket + dims.largest_tensor_params
        gathered = w * min(backward_params(dims, inp, s.lora, t), live) if g > 1 else 0
        sub = min(p, zb.sub_group)
        resident = w * p + w * zb.reduce_bucket
        optim = 12 * p
        convert = w * sub + (4 * sub if half else 0)
        if s.offload_optimizer:
            host += 16 * p * inp.gpus_per_pod * CPU_OFFLOAD_BUFFER
            optim, convert = 0, 0
        if s.offload_params:
            host += part_w * inp.gpus_per_pod * CPU_OFFLOAD_BUFFER
            part_w = 0
            gathered = w * min(backward_params(dims, inp, s.lora, t), live)
        moments = {
            "forward": (part_w + gathered, resident, optim),
            "step": (part_w, resident + convert, optim),
        }
    return moments, host, t, n


def model_states(
    dims: WhisperDims, inp: PlanInput, s: Strategy, *, cuda: bool | None = None
) -> tuple[float, float, float, float, int, int]:
    """(weights, gradients, optimizer, host offload) bytes and (trainable, total) params.

    Each GPU component at its own peak over ``state_moments`` (per GPU); the host bytes
    are per pod (all its GPUs' shares). The largest moment is ``model_states_peak``.
    """
    moments, host, t, n = state_moments(dims, inp, s, cuda=cuda)
    w, gr, o = (max(m[i] for m in moments.values()) for i in range(3))
    return float(w), float(gr), float(o), host, t, n


def model_states_peak(
    dims: WhisperDims, inp: PlanInput, s: Strategy, *, cuda: bool | None = None
) -> float:
    """Bytes per GPU of the largest moment (weights + gradients + optimizer at once)."""
    moments, _, _, _ = state_moments(dims, inp, s, cuda=cuda)
    return float(max(sum(m) for m in moments.values()))


def model_states_gib(
    dims: WhisperDims, inp: PlanInput, stage: int, off_opt: bool, off_par: bool
) -> tuple[float, float]:
    """(GPU GiB, CPU GiB per pod) for weights, gradients and optimizer state as requested."""
    s = requested(inp, stage, off_opt, off_par)
    _, _, _, host, _, _ = model_states(dims, inp, s)
    return model_states_peak(dims, inp, s) / GIB, host / GIB


def requested(
    inp: PlanInput, stage: int = 2, off_opt: bool = False, off_par: bool = False
) -> Strategy:
    """The strategy exactly as the resource wrote it (with the given ZeRO setting)."""
    return Strategy(
        micro_batch=inp.batch_per_worker,
        grad_accum=inp.grad_accum,
        gradient_checkpointing=inp.gradient_checkpointing,
        stage=stage,
        offload_optimizer=off_opt,
        offload_params=off_par,
        lora=inp.lora_mode == "on",
    )


def activation_bytes(dims: WhisperDims, inp: PlanInput, s: Strategy, *, sdpa: bool) -> Activations:
    return activations(
        dims,
        batch=s.micro_batch,
        label_tokens=inp.label_tokens,
        precision=inp.precision,
        gradient_checkpointing=s.gradient_checkpointing,
        frozen_encoder=inp.freeze_encoder,
        lora=s.lora,
        sdpa=sdpa,
    )


def breakdown(dims: WhisperDims, inp: PlanInput, s: Strategy) -> Breakdown:
    w, gr, o, host, t, n = model_states(dims, inp, s)
    return Breakdown(
        weights_gib=round(w / GIB, 3),
        gradients_gib=round(gr / GIB, 3),
        optimizer_gib=round(o / GIB, 3),
        activations_upper=activation_bytes(dims, inp, s, sdpa=False),
        activations_lower=activation_bytes(dims, inp, s, sdpa=True),
        overhead_gib=CUDA_OVERHEAD_GIB if inp.gpu_memory_gib is not None else 0.0,
        cpu_offload_gib=round(host / GIB, 3),
        trainable_params=t,
        total_params=n,
        model_states_peak_gib=round(model_states_peak(dims, inp, s) / GIB, 3),
    )


def estimate(
    dims: WhisperDims, inp: PlanInput, stage: int, off_opt: bool, off_par: bool
) -> Breakdown:
    """The breakdown of the request as written, at the given ZeRO setting."""
    return breakdown(dims, inp, requested(inp, stage, off_opt, off_par))


def verdict(est: Breakdown, inp: PlanInput) -> Verdict:
    assert inp.gpu_memory_gib is not None
    usable = inp.gpu_memory_gib * USABLE_FRACTION
    cpu_ok = (
        inp.pod_memory_gib is None or est.cpu_offload_gib <= HOST_OFFLOAD_SHARE * inp.pod_memory_gib
    )
    if est.upper_gib <= usable and cpu_ok:
        return "fits"
    if est.lower_gib <= usable and cpu_ok:
        return "tight"
    return "wont-fit"


def with_strategy(inp: PlanInput, s: Strategy) -> PlanInput:
    """The request rewritten as the strategy runs it (for callers that plan again)."""
    return replace(
        inp,
        batch_per_worker=s.micro_batch,
        grad_accum=s.grad_accum,
        gradient_checkpointing=s.gradient_checkpointing,
        explicit=(s.stage, s.offload_optimizer, s.offload_params),
        lora_mode="on" if s.lora else "off",
    )


__all__ = [
    "ENCODER_POSITIONS",
    "GIB",
    "Breakdown",
    "Estimate",
    "LoraShape",
    "Plan",
    "PlanInput",
    "Strategy",
    "breakdown",
    "estimate",
    "model_states",
    "model_states_gib",
    "model_states_peak",
    "state_moments",
    "verdict",
    "zero_buffers",
]
