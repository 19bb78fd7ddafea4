"""`spec.resources`: workers, GPUs, node pool and pod sizes (part of WhisperFineTune.spec)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, StringConstraints, model_validator

from whisperft.operator.api.base import (
    DNS_LABEL_PATTERN,
    QUANTITY_PATTERN,
    ApiModel,
    cel,
    crd_extra,
)


class Toleration(ApiModel):
    key: str | None = Field(
        None, max_length=316, description="Taint key to tolerate (empty with Exists: all)."
    )
    operator: Literal["Exists", "Equal"] = Field("Equal", description="Exists or Equal.")
    value: str | None = Field(None, max_length=63, description="Taint value for operator Equal.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        None, description="Taint effect to tolerate (empty: all)."
    )
    toleration_seconds: int | None = Field(
        None, ge=0, description="For NoExecute: how long the pod stays bound."
    )


class HeadSpec(ApiModel):
    cpu: str | None = Field(
        None,
        max_length=32,
        pattern=QUANTITY_PATTERN,
        description="Head pod CPU (default from operator settings).",
    )
    memory: str | None = Field(
        None,
        max_length=32,
        pattern=QUANTITY_PATTERN,
        description="Head pod memory (default from operator settings).",
    )


class ResourcesSpec(ApiModel):
    model_config = ConfigDict(
        json_schema_extra=crd_extra(
            cel(
                "!has(self.accelerator) || !has(self.gpusPerWorker) || self.gpusPerWorker > 0",
                "gpusPerWorker must be > 0 when an accelerator is named",
                field_path=".gpusPerWorker",
            ),
            cel(
                "has(self.accelerator) || !has(self.gpusPerWorker) || self.gpusPerWorker == 0",
                "gpusPerWorker > 0 needs an accelerator (the node pool to run on)",
                field_path=".accelerator",
            ),
        )
    )

    workers: int = Field(
        1,
        ge=1,
        le=256,
        description="Ray worker pods, each running gpusPerWorker training processes (whisperft train: local Ray workers, CPU ones without an accelerator).",
    )
    accelerator: str | None = Field(
        None,
        min_length=1,
        max_length=63,
        pattern=DNS_LABEL_PATTERN,
        description=(
            "GPU type, e.g. nvidia-l4, nvidia-a100-80gb, nvidia-h100-80gb; the operator maps it to "
            "a node pool (nodeSelector, tolerations, GPU memory). Empty: CPU-only workers."
        ),
    )
    gpus_per_worker: int | None = Field(
        None,
        ge=0,
        le=16,
        description="GPUs per worker pod (default 1 with an accelerator, 0 without).",
    )
    cpu: str | None = Field(
        None,
        max_length=32,
        pattern=QUANTITY_PATTERN,
        description="CPU per worker pod (default from operator settings; whisperft train: per local worker, default 1).",
    )
    memory: str | None = Field(
        None,
        max_length=32,
        pattern=QUANTITY_PATTERN,
        description="Memory per worker pod (default from operator settings).",
    )
    shm_size: str | None = Field(
        None,
        max_length=32,
        pattern=QUANTITY_PATTERN,
        description="Size of /dev/shm for NCCL and data loaders (default from operator settings).",
    )
    head: HeadSpec = Field(
        default_factory=HeadSpec,
        description="Resources of the Ray head pod (no GPUs).",
        json_schema_extra={"default": {}},
    )
    node_selector: dict[str, Annotated[str, StringConstraints(max_length=63)]] = Field(
        default_factory=dict,
        max_length=32,
        description="Extra node labels for worker pods, merged over the node pool's.",
    )
    tolerations: list[Toleration] = Field(
        default_factory=list,
        max_length=32,
        description="Extra tolerations for worker pods, added to the node pool's.",
    )

    @model_validator(mode="after")
    def _gpus(self) -> ResourcesSpec:
        if self.accelerator and self.gpus_per_worker == 0:
            raise ValueError("gpusPerWorker must be > 0 when an accelerator is named")
        if not self.accelerator and self.gpus_per_worker:
            raise ValueError("gpusPerWorker > 0 needs an accelerator (the node pool to run on)")
        return self

    @property
    def effective_gpus_per_worker(self) -> int:
        if self.gpus_per_worker is not None:
            return self.gpus_per_worker
        return 1 if self.accelerator else 0
