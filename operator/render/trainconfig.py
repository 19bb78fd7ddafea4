"""What the operator resolves for one attempt (the trainer's Runtime), beside the
spec it passes on unchanged, so the operator and the trainer cannot disagree
about a field: there is no copy of one."""

from __future__ import annotations

import math

from whisperft import names
from whisperft.operator.api.resource import ObjectMeta, WhisperFineTune
from whisperft.operator.api.spec import WhisperFineTuneSpec
from whisperft.operator.planning.memory import Plan
from whisperft.operator.render.meta import Meta, output_dir
from whisperft.trainer.config import ResolvedDeepSpeed, Runtime, TrainConfig

CACHE_DIR = f"{names.CHECKPOINT_MOUNT_DIR}/.cache"


def dataset_path(spec: WhisperFineTuneSpec) -> str:
    if spec.dataset.claim_name:
        return f"{names.DATA_MOUNT_DIR}/{spec.dataset.path.lstrip('/')}".rstrip("/")
    return spec.dataset.path


def train_workers(spec: WhisperFineTuneSpec) -> int:
    """Ray Train workers: one per GPU, or one per pod for CPU workers."""
    gpus = spec.resources.effective_gpus_per_worker
    return spec.resources.workers * gpus if gpus else spec.resources.workers


def build_runtime(spec: WhisperFineTuneSpec, meta: Meta, plan: Plan, pod_cpus: float) -> Runtime:
    gpus = spec.resources.effective_gpus_per_worker
    return Runtime(
        workers=train_workers(spec),
        use_gpu=gpus > 0,
        cpus_per_worker=float(max(1, math.floor(pod_cpus / max(gpus, 1)))),
        deepspeed=ResolvedDeepSpeed(
            stage=plan.stage,
            offload_optimizer=plan.offload_optimizer,
            offload_params=plan.offload_params,
        ),
        data_path=dataset_path(spec),
        storage_path=names.CHECKPOINT_MOUNT_DIR,
        output_dir=output_dir(meta.name),
        model_cache_dir=f"{CACHE_DIR}/models",
        feature_cache_dir=f"{CACHE_DIR}/features",
    )


def admitted_resource(spec: WhisperFineTuneSpec, meta: Meta) -> WhisperFineTune:
    """The resource as the trainer reads it: name, namespace and the spec, nothing else."""
    return WhisperFineTune(metadata=ObjectMeta(name=meta.name, namespace=meta.namespace), spec=spec)


def build_train_config(
    spec: WhisperFineTuneSpec, meta: Meta, plan: Plan, pod_cpus: float
) -> TrainConfig:
    return TrainConfig.build(
        admitted_resource(spec, meta), build_runtime(spec, meta, plan, pod_cpus)
    )
