"""Operator settings that shape the Ray pods (`rayPods`) and the trainer ServiceAccount
(`trainerServiceAccount`), and the keys in them the operator keeps for itself.

Only a platform team sets these (the chart's `trainer.pods` and
`trainer.serviceAccount` values); a WhisperFineTune cannot. A reserved key is
refused when the settings load, so the operator does not start with it.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from whisperft import names
from whisperft.operator.api.base import ApiModel
from whisperft.operator.render.meta import KUEUE_QUEUE_LABEL


class SettingsModel(ApiModel):
    """Settings come from the chart's values and from env strings (WHISPERFT_*), so
    unlike a user's resource a quoted number is read as the number."""

    model_config = ConfigDict(strict=False)


# Env the operator sets on the Ray containers (render/pods.py; a unit test checks
# that every name it renders is here), and what KubeRay sets for Ray itself.
OPERATOR_ENV = frozenset(
    {
        names.ENV_FINETUNE_NAME,
        names.ENV_FINETUNE_NAMESPACE,
        names.ENV_CONFIG_PATH,
        names.ENV_ATTEMPT,
        "HF_HOME",
        "HF_TOKEN",
    }
)
KUBERAY_ENV = frozenset(
    {
        "RAY_CLUSTER_NAME",
        "RAY_CLUSTER_NAMESPACE",
        "RAY_IP",
        "FQ_RAY_IP",
        "RAY_PORT",
        "RAY_ADDRESS",
        "RAY_REDIS_ADDRESS",
        "REDIS_PASSWORD",
        "REDIS_USERNAME",
        "RAY_CLOUD_INSTANCE_ID",
        "RAY_NODE_TYPE_NAME",
        "RAY_DASHBOARD_ADDRESS",
        "RAY_JOB_SUBMISSION_ID",
    }
)
# Prefixes: the trainer's own variables, Ray token authentication (RAY_AUTH_MODE,
# RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH, and Ray's lower-case config spelling), KubeRay's.
RESERVED_ENV_PREFIXES = ("WHISPERFT_", "RAY_AUTH_", "RAY_ENABLE_K8S_TOKEN_AUTH", "KUBERAY_")
# Label and annotation domains (and their subdomains): the operator's (NetworkPolicy
# and status selectors), KubeRay's (its Services and our NetworkPolicies select
# ray.io/node-type and ray.io/cluster) and Kueue's (queue-name makes a pod a workload).
RESERVED_DOMAINS = (names.GROUP, "ray.io", "kueue.x-k8s.io")
OPERATOR_LABELS = frozenset(
    {
        names.LABEL_NAME,
        names.LABEL_INSTANCE,
        names.LABEL_COMPONENT,
        names.LABEL_PART_OF,
        names.LABEL_MANAGED_BY,
        KUEUE_QUEUE_LABEL,
    }
)

_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_ENV_NAME = re.compile(r"^[^=\s]+$")


def env_reserved(name: str) -> bool:
    """Compared case-insensitively: Ray also reads lower-case spellings of its config."""
    upper = name.upper()
    return upper in OPERATOR_ENV | KUBERAY_ENV or upper.startswith(RESERVED_ENV_PREFIXES)


def _listed_env() -> set[str]:
    """The exact reserved names no prefix covers (for messages)."""
    return {n for n in OPERATOR_ENV | KUBERAY_ENV if not n.startswith(RESERVED_ENV_PREFIXES)}


def key_reserved(key: str) -> bool:
    prefix = key.rpartition("/")[0]
    return key in OPERATOR_LABELS or any(
        prefix == d or prefix.endswith("." + d) for d in RESERVED_DOMAINS
    )


def _qualified(key: str) -> bool:
    """A Kubernetes qualified name: an optional DNS-subdomain prefix, '/', a name."""
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not _SUBDOMAIN.match(prefix)):
        return False
    return len(name) <= 63 and bool(_NAME.match(name))


def check_keys(keys: dict[str, str], what: str, *, label_values: bool = False) -> dict[str, str]:
    for key, value in keys.items():
        if not _qualified(key):
            raise ValueError(f"{key!r} is not a valid {what} key (a qualified name)")
        if key_reserved(key):
            raise ValueError(
                f"{what} {key!r} is reserved: the operator, KubeRay and Kueue select pods by "
                f"the {', '.join(RESERVED_DOMAINS)} domains and the app.kubernetes.io keys "
                "the operator sets"
            )
        if label_values and value and (len(value) > 63 or not _NAME.match(value)):
            raise ValueError(
                f"value {value!r} of label {key!r} is not a valid label value "
                "(up to 63 letters, digits, '-', '_', '.')"
            )
    return keys


class KeyRef(SettingsModel):
    name: str = Field(min_length=1)
    key: str = Field(min_length=1)
    optional: bool | None = None


class FieldRef(SettingsModel):
    field_path: str = Field(min_length=1)
    api_version: str | None = None


class ResourceFieldRef(SettingsModel):
    resource: str = Field(min_length=1)
    container_name: str | None = None
    divisor: str | None = None


class EnvVarSource(SettingsModel):
    field_ref: FieldRef | None = None
    resource_field_ref: ResourceFieldRef | None = None
    config_map_key_ref: KeyRef | None = None
    secret_key_ref: KeyRef | None = None

    @model_validator(mode="after")
    def _one(self) -> EnvVarSource:
        if len(self.model_fields_set) != 1:
            raise ValueError(
                "valueFrom needs exactly one source "
                "(fieldRef, resourceFieldRef, configMapKeyRef or secretKeyRef)"
            )
        return self


class EnvVar(SettingsModel):
    name: str = Field(min_length=1, max_length=256)
    value: str | None = None
    value_from: EnvVarSource | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not _ENV_NAME.match(name):
            raise ValueError(f"env name {name!r} may contain no '=' or whitespace")
        if env_reserved(name):
            raise ValueError(
                f"env {name!r} is reserved: the operator, KubeRay or Ray token authentication "
                f"set it ({', '.join(p + '*' for p in RESERVED_ENV_PREFIXES)}, "
                f"{', '.join(sorted(_listed_env()))})"
            )
        return name

    @model_validator(mode="after")
    def _one(self) -> EnvVar:
        if (self.value is None) == (self.value_from is None):
            raise ValueError(f"env {self.name!r}: set exactly one of value and valueFrom")
        return self


class LocalObjectReference(SettingsModel):
    name: str = Field(min_length=1, max_length=253, pattern=_SUBDOMAIN.pattern)


class NodeSelectorRequirement(SettingsModel):
    key: str = Field(min_length=1, max_length=316)
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"]
    values: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _values(self) -> NodeSelectorRequirement:
        op, n = self.operator, len(self.values)
        if op in ("In", "NotIn") and n == 0:
            raise ValueError(f"{self.key}: operator {op} needs values")
        if op in ("Exists", "DoesNotExist") and n:
            raise ValueError(f"{self.key}: operator {op} takes no values")
        if op in ("Gt", "Lt") and (n != 1 or not self.values[0].lstrip("-").isdigit()):
            raise ValueError(f"{self.key}: operator {op} needs exactly one integer value")
        return self


class NodeSelectorTerm(SettingsModel):
    match_expressions: list[NodeSelectorRequirement] = Field(default_factory=list)
    match_fields: list[NodeSelectorRequirement] = Field(default_factory=list)


class NodeSelector(SettingsModel):
    node_selector_terms: list[NodeSelectorTerm] = Field(min_length=1)


class PreferredSchedulingTerm(SettingsModel):
    weight: int = Field(ge=1, le=100)
    preference: NodeSelectorTerm


class NodeAffinity(SettingsModel):
    """Kubernetes' NodeAffinity. Added next to the pool's nodeSelector, which the
    scheduler requires as well: it narrows a pool, never replaces it."""

    required_during_scheduling_ignored_during_execution: NodeSelector | None = None
    preferred_during_scheduling_ignored_during_execution: list[PreferredSchedulingTerm] = Field(
        default_factory=list
    )

    def to_wire(self) -> dict[str, object]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_defaults=True)


class RayPods(SettingsModel):
    env: list[EnvVar] = Field(
        default_factory=list, description="Extra env on the head and worker containers."
    )
    labels: dict[str, str] = Field(
        default_factory=dict, description="Extra labels on every pod of a RayJob."
    )
    annotations: dict[str, str] = Field(
        default_factory=dict, description="Extra annotations on every pod of a RayJob."
    )
    priority_class_name: str | None = Field(
        None, min_length=1, max_length=253, pattern=_SUBDOMAIN.pattern
    )
    image_pull_secrets: list[LocalObjectReference] = Field(default_factory=list)
    head_node_affinity: NodeAffinity | None = Field(
        None, description="Node affinity of the head and the job submitter."
    )
    worker_node_affinity: NodeAffinity | None = Field(
        None, description="Node affinity of the workers, besides the pool's nodeSelector."
    )

    @field_validator("env")
    @classmethod
    def _unique(cls, env: list[EnvVar]) -> list[EnvVar]:
        seen: set[str] = set()
        for e in env:
            if e.name in seen:
                raise ValueError(f"env {e.name!r} is set twice")
            seen.add(e.name)
        return env

    @field_validator("labels")
    @classmethod
    def _labels(cls, labels: dict[str, str]) -> dict[str, str]:
        return check_keys(labels, "label", label_values=True)

    @field_validator("annotations")
    @classmethod
    def _annotations(cls, annotations: dict[str, str]) -> dict[str, str]:
        return check_keys(annotations, "annotation")


class TrainerServiceAccount(SettingsModel):
    annotations: dict[str, str] = Field(
        default_factory=dict,
        description="Annotations of each fine-tune's trainer ServiceAccount (workload identity).",
    )

    @field_validator("annotations")
    @classmethod
    def _annotations(cls, annotations: dict[str, str]) -> dict[str, str]:
        return check_keys(annotations, "annotation")
