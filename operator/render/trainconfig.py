"""The trainer's own TrainConfig, built from the spec and the memory plan, so the
operator and the trainer cannot disagree about a field."""

from __future__ import annotations

import math

from whisperft import names
from whisperft.operator.api.spec import WhisperFineTuneSpec
from whisperft.operator.planning.memory import Plan
from whisperft.operator.render.meta import Meta, output_dir
from whisperft.trainer.config import (
    DataConfig,
    DeepSpeedConfig,
    ModelConfig,
    RunConfig,
    ScalingConfig,
    TrainConfig,
    TrainingConfig,
)

CACHE_DIR = f"{names.CHECKPOINT_MOUNT_DIR}/.cache"


def dataset_path(spec: WhisperFineTuneSpec) -> str:
    if spec.dataset.claim_name:
        return f"{names.DATA_MOUNT_DIR}/{spec.dataset.path.lstrip('/')}".rstrip("/")
    return spec.dataset.path


def train_workers(spec: WhisperFineTuneSpec) -> int:
    """Ray Train workers: one per GPU, or one per pod for CPU workers."""
    gpus = spec.resources.effective_gpus_per_worker
    return spec.resources.workers * gpus if gpus else spec.resources.workers


def build_train_config(
    spec: WhisperFineTuneSpec, meta: Meta, plan: Plan, pod_cpus: float
) -> TrainConfig:
    gpus = spec.resources.effective_gpus_per_worker
    t = spec.training
    d = spec.dataset
    return TrainConfig(
        model=ModelConfig(
            name=spec.model.name,
            language=spec.model.language,
            task=spec.model.task,
            cache_dir=f"{CACHE_DIR}/models",
        ),
        data=DataConfig(
            format=d.format,
            path=dataset_path(spec),
            train_split=d.train_split,
            eval_split=d.eval_split,
            test_split=d.test_split,
            min_duration_s=d.min_duration_seconds,
            max_duration_s=d.max_duration_seconds,
            max_label_tokens=d.max_label_tokens,
            max_train_examples=d.max_train_examples,
            max_eval_examples=d.max_eval_examples,
            normalize_text=d.normalize_text,
            feature_cache_dir=f"{CACHE_DIR}/features",
        ),
        training=TrainingConfig(
            max_steps=t.max_steps,
            epochs=t.epochs,
            batch_size_per_worker=t.batch_size_per_worker,
            grad_accum=t.grad_accum,
            learning_rate=t.learning_rate,
            weight_decay=t.weight_decay,
            warmup_steps=t.warmup_steps,
            lr_schedule=t.lr_schedule,
            precision=t.precision,
            gradient_checkpointing=t.gradient_checkpointing,
            freeze_encoder=t.freeze_encoder,
            spec_augment=t.spec_augment,
            deepspeed=DeepSpeedConfig(
                stage=plan.stage,
                offload_optimizer=plan.offload_optimizer,
                offload_params=plan.offload_params,
            ),
            eval_every=t.eval_every,
            save_every=t.save_every,
            keep_checkpoints=t.keep_checkpoints,
            seed=t.seed,
        ),
        scaling=ScalingConfig(
            workers=train_workers(spec),
            use_gpu=gpus > 0,
            cpus_per_worker=float(max(1, math.floor(pod_cpus / max(gpus, 1)))),
            gpus_per_worker=1.0 if gpus else 0.0,
        ),
        run=RunConfig(
            name=meta.name,
            storage_path=names.CHECKPOINT_MOUNT_DIR,
            output_dir=output_dir(meta.name),
        ),
    )
