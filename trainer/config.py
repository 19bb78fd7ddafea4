"""TrainConfig: the one typed contract between the operator and the trainer.

The operator renders this model into a ConfigMap; the trainer reads it back
and saves it inside every checkpoint. This module imports only pydantic and
yaml so the operator can use it without the trainer's stack.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from whisperft.validation import describe_errors

Precision = Literal["auto", "fp32", "bf16", "fp16"]
ZeroStage = Literal[0, 1, 2, 3]
DataFormat = Literal["commonvoice", "hf", "manifest"]
Task = Literal["transcribe", "translate"]
LrSchedule = Literal["linear", "cosine", "constant"]

# Whisper's decoder has 448 positions; labels longer than this cannot train.
WHISPER_MAX_LABEL_TOKENS = 448
# Whisper's feature extractor pads or cuts every input to 30 s.
WHISPER_MAX_AUDIO_SECONDS = 30.0


class ConfigError(ValueError):
    """A config file that cannot be used, with every problem named."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


class ModelConfig(_Strict):
    name: str = Field(
        "bundled:tiny.en",
        description=(
            "Model reference: a hub id (openai/whisper-small), a local HF directory, "
            "'ct2:PATH' for a faster-whisper/CTranslate2 directory, or bundled:tiny.en / "
            "bundled:base for the offline weights that ship as Python packages."
        ),
        min_length=1,
    )
    language: str | None = Field(
        "en", description="Language code for the prefix tokens (None for English-only models)."
    )
    task: Task = "transcribe"
    cache_dir: str | None = Field(
        None, description="Where converted weights are cached (default: ~/.cache/whisperft/models)."
    )


class DataConfig(_Strict):
    format: DataFormat = "commonvoice"
    path: str = Field(
        "bundled:en",
        min_length=1,
        description="Dataset directory, or bundled:en / bundled:sw for the sample corpus.",
    )
    train_split: str = "train"
    eval_split: str = "dev"
    test_split: str = "test"
    min_duration_s: float = Field(0.1, ge=0.0)
    max_duration_s: float = Field(WHISPER_MAX_AUDIO_SECONDS, gt=0.0, le=WHISPER_MAX_AUDIO_SECONDS)
    max_label_tokens: int = Field(WHISPER_MAX_LABEL_TOKENS, gt=0, le=WHISPER_MAX_LABEL_TOKENS)
    max_train_examples: int | None = Field(None, gt=0)
    max_eval_examples: int | None = Field(None, gt=0)
    normalize_text: bool = Field(
        False,
        description="Train on normalised transcripts (lowercase, no punctuation) instead of raw ones.",
    )
    feature_cache_dir: str | None = Field(
        None,
        description="Where log-mel features are cached (default: ~/.cache/whisperft/features).",
    )

    @model_validator(mode="after")
    def _durations(self) -> DataConfig:
        if self.min_duration_s >= self.max_duration_s:
            raise ValueError(
                f"min_duration_s ({self.min_duration_s}) must be below max_duration_s "
                f"({self.max_duration_s})"
            )
        return self


class DeepSpeedConfig(_Strict):
    stage: ZeroStage = Field(2, description="ZeRO stage 0-3.")
    offload_optimizer: bool = Field(False, description="Keep optimizer states in CPU memory.")
    offload_params: bool = Field(False, description="Keep parameters in CPU memory (stage 3 only).")
    overrides: dict[str, Any] = Field(
        default_factory=dict,
        description="Raw keys merged last into the generated DeepSpeed JSON (expert use).",
    )

    @model_validator(mode="after")
    def _offload(self) -> DeepSpeedConfig:
        if self.offload_params and self.stage != 3:
            raise ValueError("offload_params needs ZeRO stage 3")
        if self.offload_optimizer and self.stage == 0:
            raise ValueError("offload_optimizer needs ZeRO stage 1, 2 or 3")
        return self


class TrainingConfig(_Strict):
    max_steps: int | None = Field(None, gt=0, description="Optimizer steps; exclusive with epochs.")
    epochs: float | None = Field(None, gt=0, description="Passes over the train split.")
    batch_size_per_worker: int = Field(8, gt=0, le=1024)
    grad_accum: int = Field(1, gt=0, le=1024)
    learning_rate: float = Field(1e-5, gt=0.0, le=1.0)
    weight_decay: float = Field(0.0, ge=0.0, le=1.0)
    warmup_steps: int = Field(0, ge=0)
    lr_schedule: LrSchedule = "linear"
    max_grad_norm: float = Field(1.0, gt=0.0)
    precision: Precision = Field("auto", description="auto = bf16 on GPUs that have it, else fp32.")
    gradient_checkpointing: bool = False
    freeze_encoder: bool = Field(
        False,
        description="Freeze the conv stem and encoder layers (all but train_top_encoder_layers).",
    )
    train_top_encoder_layers: int = Field(
        0, ge=0, le=64, description="With freeze_encoder: how many top encoder layers still train."
    )
    cache_encoder_outputs: bool = Field(
        True,
        description=(
            "With freeze_encoder and no spec_augment: compute the frozen part once per example "
            "and train only the rest (the encoder is ~80% of the FLOPs)."
        ),
    )
    spec_augment: bool = False
    deepspeed: DeepSpeedConfig = Field(default_factory=DeepSpeedConfig)
    eval_every: int = Field(
        0, ge=0, description="Evaluate every N steps (0: only at start and end)."
    )
    save_every: int = Field(0, ge=0, description="Checkpoint every N steps (0: only at the end).")
    keep_checkpoints: int = Field(2, ge=1, le=100)
    eval_batch_size: int = Field(16, gt=0, le=1024)
    max_new_tokens: int = Field(
        128, gt=0, le=WHISPER_MAX_LABEL_TOKENS, description="Cap on greedy decoding length."
    )
    log_every: int = Field(10, gt=0)
    seed: int = 0

    @model_validator(mode="after")
    def _length(self) -> TrainingConfig:
        if (self.max_steps is None) == (self.epochs is None):
            raise ValueError("set exactly one of max_steps or epochs")
        return self


class ScalingConfig(_Strict):
    workers: int = Field(2, gt=0, le=1024)
    use_gpu: bool = False
    cpus_per_worker: float = Field(1.0, gt=0)
    gpus_per_worker: float = Field(1.0, ge=0)
    max_failures: int = Field(
        2,
        ge=-1,
        description="Worker failures Ray Train restarts from the last checkpoint (-1: forever).",
    )


class RunConfig(_Strict):
    name: str = Field("whisperft", min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    storage_path: str = Field(
        "runs", min_length=1, description="Checkpoints and Ray Train state (the persistent volume)."
    )
    output_dir: str = Field(
        "runs/output", min_length=1, description="Final model, results.json, plots."
    )


class TrainConfig(_Strict):
    """Everything one fine-tuning run needs; saved in every checkpoint."""

    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    training: TrainingConfig = Field(default_factory=lambda: TrainingConfig(max_steps=100))
    scaling: ScalingConfig = Field(default_factory=ScalingConfig)
    run: RunConfig = Field(default_factory=RunConfig)

    @classmethod
    def from_dict(cls, raw: Any, *, source: str = "config") -> TrainConfig:
        if not isinstance(raw, dict):
            raise ConfigError(
                f"{source}: expected a mapping at the top level, got {type(raw).__name__}"
            )
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            raise ConfigError(describe_errors(exc, source)) from None

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"{p}: config file not found") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        try:
            raw = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as exc:
            raise ConfigError(f"{p}: cannot parse: {exc}") from None
        return cls.from_dict(raw if raw is not None else {}, source=str(p))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    def dump(self, path: str | Path) -> None:
        Path(path).write_text(self.to_yaml(), encoding="utf-8")
