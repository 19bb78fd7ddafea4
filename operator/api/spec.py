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
    Ct2Quantization,
    DataFormat,
    OutputFormat,
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
    @staticmethod
    def _hub_id_pattern() -> str:
        """A hub dataset id, `name` or `owner/name` (with no "--" or "..", checked apart)."""
        part = "[A-Za-z0-9]([A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
        return f"^{part}(/{part})?$"

    model_config = ConfigDict(
        json_schema_extra=crd_extra(
            cel(
                "self.minDurationSeconds < self.maxDurationSeconds",
                "minDurationSeconds must be below maxDurationSeconds",
                field_path=".minDurationSeconds",
            ),
            cel(
                "self.format == 'hub' || (!has(self.config) && !has(self.revision)"
                " && (!has(self.streaming) || !self.streaming))",
                "dataset.config, dataset.revision and dataset.streaming apply to format hub only",
                field_path=".format",
            ),
            cel(
                "self.format != 'hub' || has(self.claimName) || self.path.startsWith('/')"
                " || self.path.startsWith('./') || self.path.startsWith('../')"
                " || self.path.startsWith('~') || (self.path.matches('" + _hub_id_pattern() + "')"
                " && !self.path.contains('--') && !self.path.contains('..'))",
                "with format hub, dataset.path is a hub dataset id (name or owner/name) or a "
                "local directory laid out as a hub repository (an absolute, ./ or ../ path, or "
                "a path on claimName)",
                field_path=".path",
            ),
        )
    )

    format: DataFormat = Field(
        "commonvoice",
        description=(
            "Layout of the dataset: commonvoice, hf (saved dataset), manifest (JSONL) or hub (a "
            "Hugging Face hub dataset id, or a local directory laid out as a hub repository: "
            "parquet files per config and split, read with the datasets library)."
        ),
    )
    path: str = Field(
        min_length=1,
        max_length=1024,
        description=(
            "Where the dataset is: relative to the claim when claimName is set (mounted read-only "
            "at /data), else a path inside the image or bundled:en / bundled:sw. For format hub, "
            "a hub dataset id (owner/name; the pods reach the hub, with hfTokenSecretRef when "
            "set) or such a local directory."
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
    config: str | None = Field(
        None,
        min_length=1,
        max_length=128,
        description=(
            "Format hub: the dataset's config (subset), e.g. a language code; needed when the "
            "dataset has several. A local repository without configs in its README takes the "
            "folder of that name."
        ),
    )
    revision: str | None = Field(
        None,
        min_length=1,
        max_length=256,
        pattern=r"^\S+$",
        description="Format hub: branch, tag or commit of the hub dataset (default: main).",
    )
    streaming: bool = Field(
        False,
        description=(
            "Format hub: read the splits as streams instead of downloading them whole first; "
            "maxTrainExamples and maxEvalExamples then bound what is read."
        ),
    )

    @model_validator(mode="after")
    def _durations(self) -> DatasetSpec:
        if self.min_duration_seconds >= self.max_duration_seconds:
            raise ValueError("minDurationSeconds must be below maxDurationSeconds")
        return self

    @model_validator(mode="after")
    def _hub(self) -> DatasetSpec:
        import re

        if self.format != "hub":
            if self.config is not None or self.revision is not None or self.streaming:
                raise ValueError(
                    "dataset.config, dataset.revision and dataset.streaming apply to format hub only"
                )
            return self
        path = self.path
        local = path.startswith(("/", "./", "../", "~"))
        hub_id = re.match(self._hub_id_pattern(), path) and "--" not in path and ".." not in path
        if self.claim_name is None and not local and not hub_id:
            raise ValueError(
                f"with format hub, dataset.path is a hub dataset id (name or owner/name) or a "
                f"local directory laid out as a hub repository (an absolute, ./ or ../ path, or "
                f"a path on claimName); got {path!r}"
            )
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
                "!has(self.claimName) || !has(self.keepClaim) || !self.keepClaim",
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
    access_mode: Literal["ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"] | None = Field(
        None,
        description=(
            "Access mode of the claim: the Ray head and every worker mount it. Unset: "
            "ReadWriteMany when the operator settings list the claim's StorageClass as "
            "offering it, else ReadWriteOnce, with every Ray pod placed on one node (a run "
            "needing more GPUs than one node has is refused). For a claim you bring, say "
            "ReadWriteOnce if that is what it is. ReadWriteOncePod is refused (the head and "
            "the workers are separate pods)."
        ),
    )
    keep_claim: bool | None = Field(
        None,
        description=(
            "Keep the created claim (and the checkpoints and model on it) when the "
            "WhisperFineTune is deleted: true always, false never (the model goes with it). "
            "Unset: kept once the run has succeeded with its model only on the claim (no "
            "output.location), so a deletion or a GitOps prune never takes the only copy."
        ),
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
    model_config = ConfigDict(
        json_schema_extra=crd_extra(
            cel(
                "!has(self.formats) || 'hf' in self.formats",
                "output.formats must include hf: the model/ directory is what ct2 is converted from and what whisperft evaluate and resume read",
                field_path=".formats",
            ),
        )
    )

    location: str | None = Field(
        None,
        min_length=1,
        max_length=1024,
        description=(
            "Where the final model, results.json and plots go: a bucket (s3://BUCKET/PREFIX, "
            "gs://BUCKET/PREFIX), which then holds the checkpoints too (checkpoints/<name>/) "
            "and leaves the claim as scratch; or, for whisperft train only, a local directory "
            "(the operator refuses one). Unset: on the checkpoint claim (cluster) or "
            "runs/<name> (whisperft train)."
        ),
    )
    formats: list[OutputFormat] = Field(
        default_factory=lambda: ["hf"],
        min_length=1,
        max_length=2,
        description=(
            "What the output holds: hf (model/, Hugging Face format, always written: the "
            "other formats are converted from it) and ct2 (ct2/, the CTranslate2 model "
            "faster-whisper loads)."
        ),
        json_schema_extra={"default": ["hf"], "x-kubernetes-list-type": "set"},
    )
    ct2_quantization: Ct2Quantization = Field(
        "float16",
        description=(
            "Weight type of the ct2 export: float16 for GPUs, int8 smallest and fastest on "
            "CPUs, int8_float16 in between."
        ),
    )

    @model_validator(mode="after")
    def _formats(self) -> OutputSpec:
        if "hf" not in self.formats:
            raise ValueError(
                "output.formats must include hf: the model/ directory is what ct2 is converted "
                "from and what whisperft evaluate and resume read"
            )
        return self


class SecretKeyRef(ApiModel):
    """A key in a Secret in the same namespace; secrets are never inline."""

    name: str = Field(
        min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN, description="Secret name."
    )
    key: str = Field("token", min_length=1, max_length=253, description="Key inside the Secret.")


class SecretNameRef(ApiModel):
    """A whole Secret in the same namespace, by name; its values never appear in the spec."""

    name: str = Field(
        min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN, description="Secret name."
    )


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
    storage_secret_ref: SecretNameRef | None = Field(
        None,
        description=(
            "A Secret whose keys become the Ray pods' environment for bucket access with static "
            "keys (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, optionally AWS_ENDPOINT_URL_S3, "
            "AWS_REGION). Leave unset with workload identity (GKE Workload Identity, EKS IRSA "
            "or Pod Identity: annotate the trainer ServiceAccount through the chart)."
        ),
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
