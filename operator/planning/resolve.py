"""From a spec and the operator settings to what will run: the node pool, pod
sizes and the memory plan, or the reason nothing may be created."""

from __future__ import annotations

from dataclasses import dataclass

from kubernetes.utils.quantity import parse_quantity

from whisperft.operator.api.phase import Reason
from whisperft.operator.api.spec import WhisperFineTuneSpec
from whisperft.operator.planning import admission
from whisperft.operator.planning.claim_access import (
    ClaimAccess,
    access_mode_problem,
    claim_access,
    claim_access_problem,
)
from whisperft.operator.planning.disk import DiskInput, DiskPlan, plan_disk
from whisperft.operator.planning.memory import DECODER_TOKENS, LoraShape, Plan, PlanInput
from whisperft.operator.planning.strategy import plan_memory
from whisperft.operator.planning.whisper_sizes import dims_for
from whisperft.operator.settings import NodePool, Settings

GIB = 1024**3


@dataclass(frozen=True)
class Problem:
    """Why the operator will not create a RayJob for this spec."""

    reason: Reason
    message: str


@dataclass(frozen=True)
class PodSize:
    cpu: str
    memory: str

    @property
    def cpus(self) -> float:
        return float(parse_quantity(self.cpu))

    @property
    def memory_gib(self) -> float:
        return float(parse_quantity(self.memory)) / GIB


@dataclass(frozen=True)
class Resolution:
    pool: NodePool | None
    worker: PodSize
    head: PodSize
    shm_size: str
    plan: Plan
    problem: Problem | None
    claim: ClaimAccess
    disk: DiskPlan | None = None


def _worker_size(spec: WhisperFineTuneSpec, settings: Settings) -> PodSize:
    defaults = (
        settings.worker_defaults if spec.resources.accelerator else settings.cpu_worker_defaults
    )
    return PodSize(spec.resources.cpu or defaults.cpu, spec.resources.memory or defaults.memory)


def plan_input(
    spec: WhisperFineTuneSpec, *, gpu_memory_gib: float | None, pod_memory_gib: float | None
) -> PlanInput:
    """The planner's view of a spec (the operator and local runs plan alike)."""
    r = spec.resources
    ds = spec.training.deepspeed
    explicit = (
        (ds.stage or 0, bool(ds.offload_optimizer), bool(ds.offload_params))
        if ds.mode == "explicit"
        else None
    )
    gpus = r.effective_gpus_per_worker
    t = spec.training
    return PlanInput(
        model_name=spec.model.name,
        train_workers=r.workers * gpus if gpus else r.workers,
        gpus_per_pod=max(gpus, 1),
        batch_per_worker=t.batch_size_per_worker,
        grad_accum=t.grad_accum,
        gradient_checkpointing=t.gradient_checkpointing,
        freeze_encoder=t.freeze_encoder,
        train_top_encoder_layers=t.train_top_encoder_layers,
        # CPU workers keep fp32 weights, gradients and optimizer whatever was asked (bf16
        # there is autocast, whose bf16 activations the fp32 plan bounds from above).
        precision="fp32" if gpu_memory_gib is None else t.precision,
        gpu_memory_gib=gpu_memory_gib,
        pod_memory_gib=pod_memory_gib,
        explicit=explicit,
        label_tokens=min(DECODER_TOKENS, spec.dataset.max_label_tokens),
        lora=LoraShape(t.lora.rank, tuple(t.lora.target_modules)),
        lora_mode=t.lora.mode,
    )


def disk_input(spec: WhisperFineTuneSpec, *, gpus: bool, clips: int | None = None) -> DiskInput:
    t, c = spec.training, spec.checkpoints
    return DiskInput(
        clips=clips,
        keep_checkpoints=t.keep_checkpoints,
        save_every=t.save_every,
        max_steps=t.max_steps,
        encoder_cache=t.freeze_encoder and t.cache_encoder_outputs and not t.spec_augment,
        sixteen_bit=gpus and t.precision != "fp32",
        claim_gib=float(parse_quantity(c.size)) / GIB if c.size and not c.claim_name else None,
    )


def disk_plan(
    spec: WhisperFineTuneSpec, inp: PlanInput, plan: Plan, *, clips: int | None = None
) -> DiskPlan | None:
    dims = dims_for(spec.model.name)
    if dims is None or plan.strategy is None:
        return None
    gpus = inp.gpu_memory_gib is not None
    return plan_disk(dims, inp, plan.strategy, disk_input(spec, gpus=gpus, clips=clips))


def resolve(spec: WhisperFineTuneSpec, settings: Settings) -> Resolution:
    r = spec.resources
    worker = _worker_size(spec, settings)
    head = PodSize(
        r.head.cpu or settings.head_defaults.cpu, r.head.memory or settings.head_defaults.memory
    )
    shm = r.shm_size or settings.shm_size
    pool = settings.pool(r.accelerator)
    inp = plan_input(
        spec,
        gpu_memory_gib=pool.gpu_memory_gib if pool else None,
        pod_memory_gib=worker.memory_gib,
    )
    plan = plan_memory(inp)
    disk = disk_plan(spec, inp, plan)
    problem: Problem | None = None
    access = claim_access(spec, settings)
    refused = (
        admission.language_problem(spec)
        or admission.cluster_problem(spec)
        or admission.image_problem(spec, settings)
        or admission.scheduling_problem(spec, pool)
        or access_mode_problem(spec)
    )
    if refused:
        problem = Problem(Reason.INVALID_SPEC, refused)
    elif r.accelerator and pool is None:
        known = ", ".join(sorted(settings.node_pools)) or "none"
        problem = Problem(
            Reason.UNKNOWN_ACCELERATOR,
            f"no node pool provides accelerator {r.accelerator!r} (configured: {known}); "
            "change spec.resources.accelerator or ask the platform team to add the pool",
        )
    elif why_claim := claim_access_problem(spec, access, pool):
        problem = Problem(Reason.PLAN_WILL_NOT_FIT, why_claim)
    elif not plan.allowed:
        problem = Problem(Reason.PLAN_WILL_NOT_FIT, "; ".join(plan.notes))
    elif disk is not None and (why := disk.refusal()):
        problem = Problem(Reason.PLAN_WILL_NOT_FIT, why)
    return Resolution(pool, worker, head, shm, plan, problem, access, disk)
