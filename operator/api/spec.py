"""`WhisperFineTune.spec`: the typed source of truth for the CRD's spec schema.

Every cross-field rule is written twice on purpose: as CEL (`crd_extra`) so the
API server refuses a bad object with a message naming the field, and as a
pydantic validator so `whisperft render` refuses the same file offline. The
unit tests check that each CEL rule has a pydantic twin.
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from whisperft.operator.api.base import (
    DNS_SUBDOMAIN_PATTERN,
    IMMUTABLE,
    QUANTITY_PATTERN,
    ApiModel,
    cel,
    crd_extra,
)
from whisperft.operator.api.spec_resources import ResourcesSpec
from whisperft.operator.api.spec_training import TrainingSpec
from whisperft.operator.api.types import (
    WHISPER_MAX_AUDIO_SECONDS,
    WHISPER_MAX_LABEL_TOKENS,
    DataFormat,
    Task,
)

MAX_RESTARTS_LIMIT = 100  # keeps `<name>-<attempt>` inside KubeRay's 47-character RayJob name
NAME_MAX_LENGTH = 40
# DNS-1035: KubeRay makes Services from the RayJob name, which starts with ours.
NAME_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
LANGUAGE_PATTERN = r"^[a-z]{2,3}(-[A-Za-z0-9]+)?$"


class ModelSpec(ApiModel):
    model_config = ConfigDict(
        json_schema_extra=crd_extra(
            IMMUTABLE,
            cel(
                "!(self.name.endsWith('.en') && self.task == 'translate')",
                "task translate needs a multilingual model; English-only (.en) models only transcribe",
                field_path=".task",
            ),
        )
    )

    name: str = Field(
        "openai/whisper-small",
        min_length=1,
        max_length=512,
        description=(
            "Model to fine-tune: a hub id (openai/whisper-small), a directory inside the image or "
            "on the dataset claim, 'ct2:PATH' for faster-whisper weights, or bundled:tiny.en / "
            "bundled:base. Immutable."
        ),
    )
    language: str | None = Field(
        "en",
        min_length=2,
        max_length=16,
        pattern=LANGUAGE_PATTERN,
        description=(
            "Language of the speech (e.g. en, sw). It picks Whisper's language token, unless "
            "trainAsLanguage names another, and the text normaliser (CER is reported as well "
            "for scripts written without spaces)."
        ),
    )
    train_as_language: str | None = Field(
        None,
        min_length=2,
        max_length=16,
        pattern=LANGUAGE_PATTERN,
        description=(
            "For a language the model has no token for: the existing language token to train "
            "and evaluate under (usually a related language, e.g. sw for Luganda). Recorded in "
            "the results and the exported model's generation config."
        ),
    )
    task: Task = Field("transcribe", description="transcribe or translate (to English).")

    @model_validator(mode="after")
    def _task(self) -> ModelSpec:
        if self.name.endswith(".en") and self.task == "translate":
            raise ValueError(
                "task translate needs a multilingual model; English-only (.en) models only transcribe"
            )
        return self


class DatasetSpec(ApiModel):
    model_config = ConfigDict(
        json_schema_extra=crd_extra(
            cel(
                "self.minDurationSeconds < self.maxDurationSeconds",
                "minDurationSeconds must be below maxDurationSeconds",
                field_path=".minDurationSeconds",
            ),
        )
    )

    format: DataFormat = Field(
        "commonvoice",
        description="Layout of the dataset: commonvoice, hf (saved dataset) or manifest (JSONL).",
    )
    path: str = Field(
        min_length=1,
        max_length=1024,
        description=(
            "Where the dataset is: relative to the claim when claimName is set (mounted read-only "
            "at /data), else a path inside the image or bundled:en / bundled:sw."
        ),
    )
    claim_name: str | None = Field(
        None,
        max_length=253,
        pattern=DNS_SUBDOMAIN_PATTERN,
        description="PersistentVolumeClaim holding the dataset, mounted read-only on every pod.",
    )
    train_split: str = Field(
        "train", min_length=1, max_length=128, description="Split to train on."
    )
    eval_split: str = Field(
        "dev", min_length=1, max_length=128, description="Split evaluated during training."
    )
    test_split: str = Field(
        "test", min_length=1, max_length=128, description="Split for the final WER."
    )
    min_duration_seconds: float = Field(
        0.1, ge=0.0, description="Clips shorter than this are skipped."
    )
    max_duration_seconds: float = Field(
        WHISPER_MAX_AUDIO_SECONDS,
        gt=0.0,
        le=WHISPER_MAX_AUDIO_SECONDS,
        description="Clips longer than this are skipped (Whisper sees at most 30 s).",
    )
    max_label_tokens: int = Field(
        WHISPER_MAX_LABEL_TOKENS,
        gt=0,
        le=WHISPER_MAX_LABEL_TOKENS,
        description="Transcripts longer than this many tokens are skipped (the decoder has 448 positions).",
    )
    max_train_examples: int | None = Field(
        None, gt=0, description="Use at most this many training clips."
    )
    max_eval_examples: int | None = Field(
        None, gt=0, description="Evaluate on at most this many clips."
    )
    normalize_text: bool = Field(
        False, description="Train on normalised transcripts (lowercase, no punctuation)."
    )

    @model_validator(mode="after")
    def _durations(self) -> DatasetSpec:
        if self.min_duration_seconds >= self.max_duration_seconds:
            raise ValueError("minDurationSeconds must be below maxDurationSeconds")
        return self


class CheckpointsSpec(ApiModel):
    model_config = ConfigDict(
        json_schema_extra=crd_extra(
            IMMUTABLE,
            cel(
                "has(self.claimName) != has(self.size)",
                "set exactly one of checkpoints.claimName (a claim you bring) or checkpoints.size (the operator creates the claim, optionally with storageClass)",
                field_path=".claimName",
            ),
            cel(
                "!has(self.storageClass) || has(self.size)",
                "checkpoints.storageClass needs checkpoints.size",
                field_path=".storageClass",
            ),
            cel(
                "!has(self.claimName) || !self.keepClaim",
                "keepClaim applies to a claim the operator creates; a claim you bring is never deleted",
                field_path=".keepClaim",
            ),
        )
    )

    claim_name: str | None = Field(
        None,
        max_length=253,
        pattern=DNS_SUBDOMAIN_PATTERN,
        description="Existing PersistentVolumeClaim for checkpoints (ReadWriteMany when workers span nodes); never deleted by the operator.",
    )
    storage_class: str | None = Field(
        None,
        max_length=253,
        pattern=DNS_SUBDOMAIN_PATTERN,
        description="StorageClass of the claim the operator creates (default: the cluster's).",
    )
    size: str | None = Field(
        None,
        max_length=32,
        pattern=QUANTITY_PATTERN,
        description="Size of the claim the operator creates, e.g. 50Gi.",
    )
    access_mode: Literal["ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"] = Field(
        "ReadWriteMany",
        description="Access mode of the created claim; every Ray pod mounts it, so ReadWriteMany unless all run on one node.",
    )
    keep_claim: bool = Field(
        False,
        description="Keep the created claim (and the checkpoints and model on it) when the WhisperFineTune is deleted.",
    )

    @model_validator(mode="after")
    def _rules(self) -> CheckpointsSpec:
        if (self.claim_name is None) == (self.size is None):
            raise ValueError(
                "set exactly one of checkpoints.claimName (a claim you bring) or checkpoints.size "
                "(the operator creates the claim, optionally with storageClass)"
            )
        if self.storage_class and not self.size:
            raise ValueError("checkpoints.storageClass needs checkpoints.size")
        if self.claim_name and self.keep_claim:
            raise ValueError(
                "keepClaim applies to a claim the operator creates; a claim you bring is never deleted"
            )
        return self


class OutputSpec(ApiModel):
    location: str | None = Field(
        None,
        min_length=1,
        max_length=1024,
        description=(
            "Where the final model, results.json and plots go. Unset: on the checkpoint claim "
            "(cluster) or runs/<name> (whisperft train). A local directory is for whisperft "
            "train only; the operator refuses one."
        ),
    )


class SecretKeyRef(ApiModel):
    """A key in a Secret in the same namespace; secrets are never inline."""

    name: str = Field(
        min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN, description="Secret name."
    )
    key: str = Field("token", min_length=1, max_length=253, description="Key inside the Secret.")


class WhisperFineTuneSpec(ApiModel):
    model_config = ConfigDict(json_schema_extra=crd_extra())

    model: ModelSpec = Field(
        default_factory=ModelSpec,
        description="The Whisper checkpoint to start from.",
        json_schema_extra={"default": {}},
    )
    dataset: DatasetSpec = Field(description="Training and evaluation data.")
    training: TrainingSpec = Field(
        description="Optimisation settings; exactly one of maxSteps or epochs."
    )
    resources: ResourcesSpec = Field(
        default_factory=ResourcesSpec,
        description="Workers, GPUs and the node pool.",
        json_schema_extra={"default": {}},
    )
    checkpoints: CheckpointsSpec = Field(
        description=(
            "Persistent volume for checkpoints and the final model; training resumes from it. "
            "Immutable. whisperft train keeps checkpoints under the output location instead."
        )
    )
    output: OutputSpec = Field(
        default_factory=OutputSpec,
        description="Where the finished model goes.",
        json_schema_extra={"default": {}},
    )
    hf_token_secret_ref: SecretKeyRef | None = Field(
        None,
        description="Hugging Face token for private models/datasets, by Secret reference only.",
    )
    image: str | None = Field(
        None,
        min_length=1,
        max_length=512,
        description="Trainer image (default from operator settings).",
    )
    suspend: bool = Field(
        False,
        description="true: stop the Ray cluster and free the GPUs; false: resume from the last checkpoint.",
    )
    max_restarts: int = Field(
        2,
        ge=0,
        le=MAX_RESTARTS_LIMIT,
        description="Failed attempts retried (each resumes from the last checkpoint).",
    )
    active_deadline_seconds: int | None = Field(
        None, ge=60, le=60 * 60 * 24 * 90, description="Fail an attempt that runs longer than this."
    )
    startup_deadline_seconds: int | None = Field(
        None,
        ge=60,
        le=60 * 60 * 24,
        description=(
            "Fail an attempt whose Ray cluster is not running within this (RayJob "
            "preRunningDeadlineSeconds). Apart from it, pods that report they cannot start (an "
            "image that cannot be pulled, no node, a claim that does not bind) end the resource "
            "Failed with that reason after this long (default 900 s)."
        ),
    )
    ttl_seconds_after_finished: int = Field(
        60,
        ge=0,
        le=60 * 60 * 24 * 30,
        description=(
            "Seconds the finished Ray cluster (and its GPUs) is kept for inspection before it is "
            "deleted; the model and results stay on the checkpoint claim."
        ),
    )
    queue_name: str | None = Field(
        None,
        max_length=63,
        pattern=DNS_SUBDOMAIN_PATTERN,
        description="Kueue LocalQueue to submit through.",
    )
