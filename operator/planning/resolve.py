"""From a spec and the operator settings to what will run: the node pool, pod
sizes and the memory plan, or the reason nothing may be created."""

from __future__ import annotations

from dataclasses import dataclass

from kubernetes.utils.quantity import parse_quantity

from whisperft.operator.api.phase import Reason
from whisperft.operator.api.spec import WhisperFineTuneSpec
from whisperft.operator.planning import admission
from whisperft.operator.planning.memory import Plan, PlanInput, plan_memory
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
    return PlanInput(
        model_name=spec.model.name,
        train_workers=r.workers * gpus if gpus else r.workers,
        gpus_per_pod=max(gpus, 1),
        batch_per_worker=spec.training.batch_size_per_worker,
        gradient_checkpointing=spec.training.gradient_checkpointing,
        freeze_encoder=spec.training.freeze_encoder,
        precision=spec.training.precision,
        gpu_memory_gib=gpu_memory_gib,
        pod_memory_gib=pod_memory_gib,
        explicit=explicit,
    )


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
    problem: Problem | None = None
    refused = (
        admission.language_problem(spec)
        or admission.cluster_problem(spec)
        or admission.image_problem(spec, settings)
        or admission.scheduling_problem(spec, pool)
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
    elif not plan.allowed:
        problem = Problem(Reason.PLAN_WILL_NOT_FIT, "; ".join(plan.notes))
    return Resolution(pool, worker, head, shm, plan, problem)
