"""TrainConfig: one run of the trainer, as the WhisperFineTune spec plus what the
platform resolved for it.

There is one schema. What to train is the resource's `spec`, used as it is
(never copied field by field); `Runtime` holds only what the operator or the
local runner decides from the platform: how many Ray workers and where, the
ZeRO stage the planner picked, and the paths as this machine sees them. The
operator writes both into the attempt's ConfigMap (`finetune.yaml`,
`runtime.yaml`); the trainer saves the whole TrainConfig in every checkpoint.
This module imports only pydantic and yaml so the operator can use it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError

from whisperft.operator.api.base import ApiModel
from whisperft.operator.api.resource import (
    SpecError,
    WhisperFineTune,
    dump_yaml,
    load_resource_file,
    parse_yaml,
    read_text,
)
from whisperft.operator.api.spec import (
    DatasetSpec,
    ModelSpec,
    WhisperFineTuneSpec,
)
from whisperft.operator.api.spec_training import LoraSpec, TrainingSpec
from whisperft.operator.api.types import ZeroStage
from whisperft.validation import describe_errors

ConfigError = SpecError  # one error type for a resource, its runtime and its overrides


class ResolvedDeepSpeed(ApiModel):
    """The ZeRO settings a run uses: the spec's when explicit, the planner's when auto."""

    stage: ZeroStage = Field(description="ZeRO stage 0-3.")
    offload_optimizer: bool = Field(False, description="Optimizer states in CPU memory.")
    offload_params: bool = Field(False, description="Parameters in CPU memory (stage 3 only).")


class ResolvedStrategy(ApiModel):
    """The memory strategy the planner chose with deepspeed.mode auto; None: as in the spec."""

    micro_batch: int | None = Field(None, gt=0, description="Micro-batch per worker.")
    grad_accum: int | None = Field(None, gt=0, description="Micro-batches per optimizer step.")
    gradient_checkpointing: bool | None = Field(None, description="Recompute activations.")
    lora: bool = Field(False, description="LoRA adapters (spec.training.lora.mode auto).")
    predicted_gpu_gib: float | None = Field(
        None, ge=0, alias="predictedGpuGiB", description="The planner's peak per GPU (upper bound)."
    )
    reasons: list[str] = Field(
        default_factory=list, max_length=16, description="Why each choice was made."
    )


class Runtime(ApiModel):
    """What the platform resolved for one run; never written by a user.

    Every field here is a platform decision (tests/unit/test_train_config.py
    holds the list): a knob of the recipe belongs on the resource instead.
    """

    workers: int = Field(gt=0, le=4096, description="Ray Train workers (one per GPU on GPUs).")
    use_gpu: bool = Field(description="Workers ask Ray for a GPU each.")
    cpus_per_worker: float = Field(gt=0, description="CPUs Ray reserves per worker.")
    max_failures: int = Field(
        2, ge=-1, description="Worker failures Ray Train restarts in place (-1: forever)."
    )
    deepspeed: ResolvedDeepSpeed
    strategy: ResolvedStrategy = Field(default_factory=ResolvedStrategy)
    data_path: str = Field(min_length=1, description="The dataset, as this machine sees it.")
    storage_path: str = Field(
        min_length=1, description="Ray Train storage; the run directory is <storagePath>/<name>."
    )
    output_dir: str = Field(min_length=1, description="Final model, results.json and plots.")
    output_uri: str | None = Field(
        None,
        description="Bucket prefix the outputs are uploaded to (output_dir is then scratch).",
    )
    checkpoint_uri: str | None = Field(
        None,
        description=(
            "Bucket prefix of this run's checkpoints (storage_path is then node-local scratch; "
            "a resume downloads from here)."
        ),
    )
    shared_scratch: bool = Field(
        True,
        description=(
            "Every worker sees the driver's storage_path and feature cache (one machine, or a "
            "shared claim); False: each pod prepares its own inputs."
        ),
    )
    model_cache_dir: str | None = Field(None, description="Converted weights (default: cache).")
    feature_cache_dir: str | None = Field(None, description="Log-mel features (default: cache).")
    cache_max_gib: float | None = Field(
        None,
        gt=0,
        description=(
            "Bound of the feature and encoder caches (least recently used entries go first); "
            "the operator sets what the claim has left after checkpoints and the model."
        ),
    )


class TrainConfig(ApiModel):
    """Everything one fine-tuning run needs; saved in every checkpoint."""

    name: str = Field(min_length=1, description="The WhisperFineTune's metadata.name.")
    spec: WhisperFineTuneSpec
    runtime: Runtime

    @property
    def model(self) -> ModelSpec:
        return self.spec.model

    @property
    def dataset(self) -> DatasetSpec:
        return self.spec.dataset

    @property
    def training(self) -> TrainingSpec:
        return self.spec.training

    @property
    def micro_batch(self) -> int:
        return self.runtime.strategy.micro_batch or self.training.batch_size_per_worker

    @property
    def grad_accum(self) -> int:
        return self.runtime.strategy.grad_accum or self.training.grad_accum

    @property
    def gradient_checkpointing(self) -> bool:
        chosen = self.runtime.strategy.gradient_checkpointing
        return self.training.gradient_checkpointing if chosen is None else chosen

    @property
    def lora(self) -> LoraSpec | None:
        """The adapters to train, or None for a full fine-tune."""
        lora = self.training.lora
        if lora.mode == "on" or (lora.mode == "auto" and self.runtime.strategy.lora):
            return lora
        return None

    @property
    def zero_stage(self) -> int:
        return self.runtime.deepspeed.stage

    @classmethod
    def build(cls, resource: WhisperFineTune, runtime: Runtime) -> TrainConfig:
        return cls(name=resource.metadata.name, spec=resource.spec, runtime=runtime)

    @classmethod
    def from_dict(cls, raw: Any, *, source: str = "config") -> TrainConfig:
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            raise ConfigError(describe_errors(exc, source)) from None

    def to_yaml(self) -> str:
        return dump_yaml(self.to_wire())


def load_runtime(path: str | Path) -> Runtime:
    """A runtime.yaml the operator rendered."""
    docs = parse_yaml(read_text(path), source=str(path))
    try:
        return Runtime.model_validate(docs[0] if docs else {})
    except ValidationError as exc:
        raise ConfigError(describe_errors(exc, str(path))) from None


def config_from_files(
    finetune_yaml: str, runtime_yaml: str, *, source: str = "configmap"
) -> TrainConfig:
    """The TrainConfig of an attempt from its ConfigMap's two files."""
    from whisperft.operator.api.resource import load_resources

    resource = load_resources(finetune_yaml, source=f"{source}/finetune.yaml")[0]
    docs = parse_yaml(runtime_yaml, source=f"{source}/runtime.yaml")
    try:
        runtime = Runtime.model_validate(docs[0] if docs else {})
    except ValidationError as exc:
        raise ConfigError(describe_errors(exc, f"{source}/runtime.yaml")) from None
    return TrainConfig.build(resource, runtime)


__all__ = [
    "ConfigError",
    "ResolvedDeepSpeed",
    "ResolvedStrategy",
    "Runtime",
    "TrainConfig",
    "config_from_files",
    "load_resource_file",
    "load_runtime",
]
