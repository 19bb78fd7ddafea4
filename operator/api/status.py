"""`WhisperFineTune.status`: written by the operator, except `progress`,
`lastCheckpoint` and `model`, which the trainer's rank 0 merge-patches."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from whisperft.operator.api.base import ApiModel
from whisperft.operator.api.phase import ConditionStatus, ConditionType, Phase
from whisperft.operator.api.types import OutputFormat


class Condition(ApiModel):
    type: ConditionType = Field(strict=False, description="Condition type.")
    status: ConditionStatus = Field(strict=False, description="True, False or Unknown.")
    reason: str = Field(max_length=128, description="CamelCase machine-readable reason.")
    message: str = Field("", max_length=4096, description="Human-readable explanation.")
    last_transition_time: str | None = Field(
        None, max_length=64, description="When status last changed (RFC 3339)."
    )
    observed_generation: int | None = Field(
        None, ge=0, description="metadata.generation this condition was computed from."
    )


class Progress(ApiModel):
    """Published by the trainer's rank 0; the operator never writes it (it clears it
    when a new attempt starts)."""

    attempt: int | None = Field(
        None,
        ge=1,
        description="The attempt whose trainer reported this (older reports are ignored).",
    )
    step: int | None = Field(None, ge=0, description="Optimizer steps done.")
    total_steps: int | None = Field(None, ge=0, description="Optimizer steps planned.")
    epoch: float | None = Field(None, ge=0, description="Passes over the train split so far.")
    loss: float | None = Field(None, description="Recent training loss.")
    eval_wer: float | None = Field(
        None, ge=0, description="WER (a fraction) on the eval split at the last evaluation."
    )
    best_eval_wer: float | None = Field(
        None, ge=0, description="Lowest eval-split WER so far (a fraction)."
    )
    best_step: int | None = Field(None, ge=0, description="Step of the lowest eval-split WER.")
    test_wer_before: float | None = Field(
        None, ge=0, description="WER (a fraction) of the starting model on the test split."
    )
    test_wer_after: float | None = Field(
        None, ge=0, description="WER (a fraction) of the fine-tuned model on the test split."
    )
    samples_per_second: float | None = Field(
        None, ge=0, description="Training throughput over all workers."
    )
    preempted_at_step: int | None = Field(
        None,
        ge=0,
        description=(
            "The trainer checkpointed this step because its pods were being stopped (spot "
            "reclaim, node drain): the next attempt resumes there and spends no restart."
        ),
    )
    updated_at: str | None = Field(
        None, max_length=64, description="When the trainer last reported (RFC 3339)."
    )


class ExportedModel(ApiModel):
    """The fine-tuned model the trainer exported, published by rank 0 when it is written."""

    attempt: int | None = Field(None, ge=1, description="The attempt that exported it.")
    path: str = Field(max_length=1024, description="Directory of the HF-format model.")
    step: int = Field(ge=0, description="Optimizer step whose weights were exported.")
    checkpoint: str | None = Field(
        None, max_length=1024, description="Checkpoint holding the same weights (for resuming)."
    )
    selected: Literal["bestEval", "last"] | None = Field(
        None,
        description=(
            "bestEval: the checkpoint with the lowest eval WER (evaluation ran); last: the "
            "final weights (no earlier checkpoint evaluated better, or none was kept)."
        ),
    )
    formats: list[OutputFormat] | None = Field(
        None,
        max_length=2,
        description="What was exported: hf in model/, ct2 in ct2/ beside it.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )


class Plan(ApiModel):
    """The memory plan the operator made before asking for GPUs."""

    zero_stage: int = Field(ge=0, le=3, description="ZeRO stage used.")
    offload_optimizer: bool = Field(description="Optimizer states in CPU memory.")
    offload_params: bool = Field(description="Parameters in CPU memory.")
    estimated_gpu_memory_gib: float | None = Field(
        None, ge=0, alias="estimatedGpuMemoryGiB", description="Estimated peak memory per GPU."
    )
    gpu_memory_gib: float | None = Field(
        None, ge=0, alias="gpuMemoryGiB", description="Memory of one GPU in the node pool."
    )
    train_workers: int = Field(
        ge=1, description="Ray Train workers (one per GPU, or one per pod on CPU)."
    )
    fits: bool = Field(description="Whether the estimate fits the GPU with headroom.")
    micro_batch: int | None = Field(None, ge=1, description="Micro-batch per worker the run uses.")
    grad_accum: int | None = Field(None, ge=1, description="Accumulation the run uses.")
    gradient_checkpointing: bool | None = Field(
        None, description="Whether activations are recomputed."
    )
    lora: bool | None = Field(None, description="Whether LoRA adapters are trained.")
    reasons: list[str] = Field(
        default_factory=list, max_length=16, description="Why the planner chose each setting."
    )
    notes: list[str] = Field(
        default_factory=list, max_length=16, description="Assumptions and advice."
    )


class WhisperFineTuneStatus(ApiModel):
    phase: Phase | None = Field(
        None,
        strict=False,
        description="Pending, Planning, Running, Succeeded, Failed or Suspended.",
    )
    message: str | None = Field(None, max_length=4096, description="Latest human-readable state.")
    conditions: list[Condition] = Field(
        default_factory=list,
        max_length=16,
        description="Ready, Running, Succeeded, Failed, Suspended, Planned, UpdatePending.",
    )
    observed_generation: int | None = Field(
        None, ge=0, description="metadata.generation the operator last acted on."
    )
    attempt: int | None = Field(None, ge=1, description="Current attempt number.")
    preemptions: int | None = Field(
        None,
        ge=0,
        description="Attempts stopped from outside after a preemption checkpoint (not restarts).",
    )
    restarts: int | None = Field(
        None, ge=0, description="Failed attempts that were retried (counted once the next exists)."
    )
    startup_problem_since: str | None = Field(
        None,
        max_length=64,
        description="Since when the current attempt's pods report why they cannot start (RFC 3339).",
    )
    create_failed_at: str | None = Field(
        None, max_length=64, description="When creating the current attempt's children last failed."
    )
    create_failures: int | None = Field(
        None, ge=0, description="Consecutive failed tries to create the current attempt's children."
    )
    ray_job_name: str | None = Field(
        None, max_length=253, description="RayJob of the current attempt."
    )
    ray_cluster_name: str | None = Field(
        None, max_length=253, description="RayCluster KubeRay made for it."
    )
    dashboard_url: str | None = Field(
        None, max_length=1024, alias="dashboardURL", description="Ray dashboard address."
    )
    ray_job_status: str | None = Field(
        None, max_length=64, description="RayJob status.jobStatus as last seen."
    )
    ray_job_deployment_status: str | None = Field(
        None, max_length=64, description="RayJob status.jobDeploymentStatus as last seen."
    )
    checkpoint_claim: str | None = Field(
        None, max_length=253, description="Claim holding the checkpoints."
    )
    checkpoint_path: str | None = Field(
        None,
        max_length=1024,
        description="The run's checkpoints: on the claim, or the bucket prefix of a bucket output; the same for every attempt.",
    )
    plan: Plan | None = Field(None, description="Memory plan.")
    progress: Progress | None = Field(
        None, description="Training progress reported by the trainer."
    )
    progress_text: str | None = Field(
        None, max_length=64, description="step/total (percent), for kubectl get."
    )
    last_checkpoint: str | None = Field(
        None, max_length=1024, description="Latest checkpoint written by the trainer."
    )
    model: ExportedModel | None = Field(
        None, description="The exported model of the current attempt (written by the trainer)."
    )
    start_time: str | None = Field(
        None, max_length=64, description="When the first attempt started (RFC 3339)."
    )
    completion_time: str | None = Field(
        None, max_length=64, description="When it reached Succeeded or Failed (RFC 3339)."
    )
