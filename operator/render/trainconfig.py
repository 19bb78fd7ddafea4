"""What the operator resolves for one attempt (the trainer's Runtime), beside the
spec it passes on unchanged, so the operator and the trainer cannot disagree
about a field: there is no copy of one."""

from __future__ import annotations

import math

from whisperft import names
from whisperft.operator.api.resource import ObjectMeta, WhisperFineTune
from whisperft.operator.api.spec import WhisperFineTuneSpec
from whisperft.operator.planning.disk import DiskPlan
from whisperft.operator.planning.memory import Plan
from whisperft.operator.render.meta import Meta, output_dir
from whisperft.trainer.config import ResolvedDeepSpeed, ResolvedStrategy, Runtime, TrainConfig
from whisperft.trainer.storage.uri import checkpoint_prefix, is_uri

CACHE_DIR = f"{names.CHECKPOINT_MOUNT_DIR}/.cache"


def dataset_path(spec: WhisperFineTuneSpec) -> str:
    if spec.dataset.claim_name:
        return f"{names.DATA_MOUNT_DIR}/{spec.dataset.path.lstrip('/')}".rstrip("/")
    return spec.dataset.path


def train_workers(spec: WhisperFineTuneSpec) -> int:
    """Ray Train workers: one per GPU, or one per pod for CPU workers."""
    gpus = spec.resources.effective_gpus_per_worker
    return spec.resources.workers * gpus if gpus else spec.resources.workers


def resolved(plan: Plan) -> tuple[ResolvedDeepSpeed, ResolvedStrategy]:
    """The planner's choices as the trainer reads them (operator and local runs alike)."""
    ds = ResolvedDeepSpeed(
        stage=plan.stage,
        offload_optimizer=plan.offload_optimizer,
        offload_params=plan.offload_params,
    )
    s = plan.strategy
    if s is None:
        return ds, ResolvedStrategy()
    return ds, ResolvedStrategy(
        micro_batch=s.micro_batch,
        grad_accum=s.grad_accum,
        gradient_checkpointing=s.gradient_checkpointing,
        lora=s.lora,
        predicted_gpu_gib=round(plan.estimate.upper_gib, 2) if plan.estimate else None,
        reasons=[r[:1024] for r in plan.reasons[:16]],
    )


def build_runtime(
    spec: WhisperFineTuneSpec,
    meta: Meta,
    plan: Plan,
    pod_cpus: float,
    *,
    workers_share: bool = True,
    disk: DiskPlan | None = None,
) -> Runtime:
    gpus = spec.resources.effective_gpus_per_worker
    deepspeed, strategy = resolved(plan)
    bucket = spec.output.location if is_uri(spec.output.location) else None
    return Runtime(
        workers=train_workers(spec),
        use_gpu=gpus > 0,
        cpus_per_worker=float(max(1, math.floor(pod_cpus / max(gpus, 1)))),
        deepspeed=deepspeed,
        strategy=strategy,
        data_path=dataset_path(spec),
        storage_path=names.CHECKPOINT_MOUNT_DIR,
        output_dir=output_dir(meta.name),
        model_cache_dir=f"{CACHE_DIR}/models",
        feature_cache_dir=f"{CACHE_DIR}/features",
        output_uri=bucket,
        checkpoint_uri=checkpoint_prefix(bucket, meta.name) if bucket else None,
        shared_scratch=workers_share,
        cache_max_gib=cache_bound_gib(disk),
    )


def cache_bound_gib(disk: DiskPlan | None) -> float | None:
    """What the claim has left for the caches once the checkpoints it keeps, the
    converted model and the export are counted; None when the claim's size is unknown."""
    if disk is None or disk.claim_gib is None:
        return None
    left = disk.claim_gib - (
        disk.checkpoint_gib * disk.checkpoints_on_disk + disk.model_cache_gib + disk.export_gib
    )
    return round(max(left, 1.0), 2)


def admitted_resource(spec: WhisperFineTuneSpec, meta: Meta) -> WhisperFineTune:
    """The resource as the trainer reads it: name, namespace and the spec, nothing else."""
    return WhisperFineTune(metadata=ObjectMeta(name=meta.name, namespace=meta.namespace), spec=spec)


def build_train_config(
    spec: WhisperFineTuneSpec,
    meta: Meta,
    plan: Plan,
    pod_cpus: float,
    *,
    workers_share: bool = True,
    disk: DiskPlan | None = None,
) -> TrainConfig:
    return TrainConfig.build(
        admitted_resource(spec, meta),
        build_runtime(spec, meta, plan, pod_cpus, workers_share=workers_share, disk=disk),
    )
