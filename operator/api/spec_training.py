"""`spec.training`: the recipe and its DeepSpeed settings (part of WhisperFineTune.spec)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from whisperft.operator.api.base import (
    ApiModel,
    cel,
    crd_extra,
)
from whisperft.operator.api.types import WHISPER_MAX_LABEL_TOKENS, LrSchedule, Precision


class DeepSpeedSpec(ApiModel):
    model_config = ConfigDict(
        json_schema_extra=crd_extra(
            cel(
                "self.mode == 'explicit' || (!has(self.stage) && !has(self.offloadOptimizer) && !has(self.offloadParams))",
                "stage, offloadOptimizer and offloadParams are chosen by the planner when mode is auto; set mode: explicit to choose them",
                field_path=".mode",
            ),
            cel(
                "self.mode == 'auto' || has(self.stage)",
                "mode explicit needs stage (0-3)",
                field_path=".stage",
            ),
            cel(
                "!has(self.offloadParams) || !self.offloadParams || (has(self.stage) && self.stage == 3)",
                "offloadParams needs ZeRO stage 3",
                field_path=".offloadParams",
            ),
            cel(
                "!has(self.offloadOptimizer) || !self.offloadOptimizer || (has(self.stage) && self.stage > 0)",
                "offloadOptimizer needs ZeRO stage 1, 2 or 3",
                field_path=".offloadOptimizer",
            ),
        )
    )

    mode: Literal["auto", "explicit"] = Field(
        "auto",
        description=(
            "auto: the memory planner picks the cheapest strategy that fits the node pool's GPUs "
            "(micro-batch, gradient checkpointing, ZeRO stage, offload, and LoRA when lora.mode "
            "is auto; docs/planning.md); explicit: the training and ZeRO settings are used as "
            "written, or refused with the numbers when they cannot fit."
        ),
    )
    stage: Literal[0, 1, 2, 3] | None = Field(None, description="ZeRO stage (explicit mode only).")
    offload_optimizer: bool | None = Field(
        None, description="Keep optimizer states in CPU memory (explicit mode, stage >= 1)."
    )
    offload_params: bool | None = Field(
        None, description="Keep parameters in CPU memory (explicit mode, stage 3)."
    )
    overrides: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "Expert use: raw keys merged last into the generated DeepSpeed JSON (e.g. "
            "zero_optimization.reduce_bucket_size). The memory plan does not see them."
        ),
        json_schema_extra={"type": "object", "x-kubernetes-preserve-unknown-fields": True},
    )

    @model_validator(mode="after")
    def _rules(self) -> DeepSpeedSpec:
        explicit_fields = (self.stage, self.offload_optimizer, self.offload_params)
        if self.mode == "auto" and any(v is not None for v in explicit_fields):
            raise ValueError(
                "stage, offloadOptimizer and offloadParams are chosen by the planner when mode is "
                "auto; set mode: explicit to choose them"
            )
        if self.mode == "explicit" and self.stage is None:
            raise ValueError("mode explicit needs stage (0-3)")
        if self.offload_params and self.stage != 3:
            raise ValueError("offloadParams needs ZeRO stage 3")
        if self.offload_optimizer and not self.stage:
            raise ValueError("offloadOptimizer needs ZeRO stage 1, 2 or 3")
        return self


LoraTarget = Literal["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]
LORA_DEFAULT_TARGETS: tuple[LoraTarget, ...] = (
    "q_proj",
    "k_proj",
    "v_proj",
    "out_proj",
    "fc1",
    "fc2",
)


class LoraSpec(ApiModel):
    """Low-rank adapters (the ``peft`` library) instead of training every weight."""

    mode: Literal["off", "on", "auto"] = Field(
        "off",
        description=(
            "off: train the weights themselves; on: train LoRA adapters; auto: the planner turns "
            "LoRA on only when no full fine-tuning strategy fits the GPUs."
        ),
    )
    rank: int = Field(32, ge=1, le=512, description="Adapter rank r.")
    alpha: int = Field(
        64, ge=1, le=4096, description="Scaling numerator: updates scale by alpha/r."
    )
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="Dropout on the adapter input.")
    target_modules: list[LoraTarget] = Field(
        default_factory=lambda: list(LORA_DEFAULT_TARGETS),
        min_length=1,
        max_length=6,
        description=(
            "Linear layers that get adapters, by Whisper's module names (attention q/k/v/out "
            "projections and the MLP fc1/fc2), in the encoder and the decoder alike."
        ),
        json_schema_extra={"default": list(LORA_DEFAULT_TARGETS)},
    )

    @property
    def may_train(self) -> bool:
        return self.mode != "off"


class TrainingSpec(ApiModel):
    model_config = ConfigDict(
        json_schema_extra=crd_extra(
            cel(
                "has(self.maxSteps) != has(self.epochs)",
                "set exactly one of training.maxSteps or training.epochs",
                field_path=".maxSteps",
            ),
            cel(
                "self.trainTopEncoderLayers == 0 || self.freezeEncoder",
                "trainTopEncoderLayers applies to a frozen encoder: set freezeEncoder: true",
                field_path=".trainTopEncoderLayers",
            ),
        )
    )

    max_steps: int | None = Field(
        None, gt=0, le=10_000_000, description="Optimizer steps to train; exclusive with epochs."
    )
    epochs: float | None = Field(
        None, gt=0, le=10_000, description="Passes over the train split; exclusive with maxSteps."
    )
    batch_size_per_worker: int = Field(
        8,
        gt=0,
        le=1024,
        description=(
            "Micro-batch per GPU (per Ray Train worker). With deepspeed.mode auto the planner may "
            "lower it, raising the accumulation so the global batch stays the same."
        ),
    )
    grad_accum: int = Field(
        1, gt=0, le=1024, description="Micro-batches accumulated per optimizer step."
    )
    learning_rate: float = Field(1e-5, gt=0.0, le=1.0, description="Peak learning rate.")
    weight_decay: float = Field(0.0, ge=0.0, le=1.0, description="AdamW weight decay.")
    adam_beta1: float = Field(0.9, gt=0.0, lt=1.0, description="AdamW's first-moment decay.")
    adam_beta2: float = Field(
        0.999,
        gt=0.0,
        lt=1.0,
        description=(
            "AdamW's second-moment decay (torch's and the Hugging Face recipe's default; on the "
            "bundled corpus it beat 0.98 at 120 steps, 1.1% against 1.5% test WER)."
        ),
    )
    adam_epsilon: float = Field(1e-8, gt=0.0, le=1.0, description="AdamW's epsilon.")
    warmup_steps: int = Field(0, ge=0, le=10_000_000, description="Linear warm-up steps.")
    lr_schedule: LrSchedule = Field(
        "linear", description="Decay after warm-up: linear, cosine or constant."
    )
    precision: Precision = Field(
        "auto",
        description=(
            "auto, fp32, bf16 or fp16. On GPUs auto is bf16 where the GPU has it, else fp16. On "
            "CPUs bf16 is autocast over fp32 weights and optimizer, and auto picks it where the "
            "CPU multiplies bf16 in hardware (AMX, AVX512-BF16), else fp32; fp16 trains in fp32."
        ),
    )
    gradient_checkpointing: bool = Field(
        False,
        description=(
            "Recompute activations in backward: much less memory, about 30% slower. With "
            "deepspeed.mode auto the planner turns it on when the activations do not fit."
        ),
    )
    freeze_encoder: bool = Field(
        False,
        description=(
            "Freeze the conv stem and the encoder layers below trainTopEncoderLayers (the "
            "encoder is about 80% of the compute)."
        ),
    )
    train_top_encoder_layers: int = Field(
        0,
        ge=0,
        le=64,
        description="With freezeEncoder: how many top encoder layers still train (0: decoder only).",
    )
    cache_encoder_outputs: bool = Field(
        True,
        description=(
            "With freezeEncoder and no specAugment: compute the frozen encoder prefix once per "
            "clip and train only the rest (its outputs are cached next to the features)."
        ),
    )
    spec_augment: bool = Field(False, description="SpecAugment masking on the input features.")
    audio_context_margin_seconds: float | None = Field(
        None,
        ge=0.0,
        le=30.0,
        description=(
            "Unset: the encoder trains on the padded 30-s window, as Whisper was pretrained. A "
            "number: each training batch is cut to its longest clip plus this margin (rounded up "
            "to a whole second), so the encoder's cost follows the speech, not the padding (for "
            "3-s clips about 7x less). Evaluation and the exported model still read 30-s windows."
        ),
    )
    lora: LoraSpec = Field(
        default_factory=LoraSpec,
        description="LoRA adapters (off by default; auto lets the planner use them when nothing else fits).",
        json_schema_extra={"default": {}},
    )
    deepspeed: DeepSpeedSpec = Field(
        default_factory=DeepSpeedSpec,
        description="DeepSpeed ZeRO settings.",
        json_schema_extra={"default": {}},
    )
    max_grad_norm: float = Field(
        1.0, gt=0.0, le=1000.0, description="Gradient clipping: the global L2 norm's ceiling."
    )
    eval_every: int = Field(
        0,
        ge=0,
        le=10_000_000,
        description="Evaluate the eval split every N steps (0: at the end only; the test split is scored before and after).",
    )
    save_every: int = Field(
        0, ge=0, le=10_000_000, description="Checkpoint every N steps (0: at the end only)."
    )
    log_every: int = Field(
        10, gt=0, le=10_000_000, description="One log line (and status update) every N steps."
    )
    keep_checkpoints: int = Field(
        2, ge=1, le=100, description="Checkpoints kept (the best eval one is kept as well)."
    )
    eval_batch_size: int = Field(
        16, gt=0, le=1024, description="Clips per decoding batch in evaluation (per worker)."
    )
    max_new_tokens: int = Field(
        128,
        gt=0,
        le=WHISPER_MAX_LABEL_TOKENS,
        description="Cap on greedy decoding length in evaluation; decodes that hit it are counted.",
    )
    seed: int = Field(0, ge=0, le=2**31 - 1, description="Random seed.")

    @model_validator(mode="after")
    def _length(self) -> TrainingSpec:
        if (self.max_steps is None) == (self.epochs is None):
            raise ValueError("set exactly one of training.maxSteps or training.epochs")
        if self.train_top_encoder_layers and not self.freeze_encoder:
            raise ValueError(
                "trainTopEncoderLayers applies to a frozen encoder: set freezeEncoder: true"
            )
        return self
