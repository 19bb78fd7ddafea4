"""Chart values that shape the Ray pods (trainer.pods), the trainer ServiceAccount
(trainer.serviceAccount) and the pod sizes' ephemeral storage: they reach the
operator's settings unchanged, the defaults add nothing, and values.schema.json
refuses what the operator would refuse, naming the field."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from toolbin import CHART_DIR, helm_template, helm_template_text, require_tool

from whisperft.operator.settings import Settings
from whisperft.operator.settings_pods import (
    KUBERAY_ENV,
    OPERATOR_ENV,
    OPERATOR_LABELS,
    RESERVED_ENV_PREFIXES,
)

pytestmark = pytest.mark.unit

AFFINITY = {
    "requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}
        ]
    },
    "preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 20, "preference": {"matchExpressions": [{"key": "spot", "operator": "Exists"}]}}
    ],
}
PODS: dict[str, Any] = {
    "env": [
        {"name": "HTTPS_PROXY", "value": "http://proxy:3128"},
        {"name": "DD_AGENT_HOST", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
        {"name": "WANDB_API_KEY", "valueFrom": {"secretKeyRef": {"name": "wb", "key": "k"}}},
    ],
    "labels": {"team": "speech", "example.com/cost-center": "4711"},
    "annotations": {"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"},
    "priorityClassName": "training-high",
    "imagePullSecrets": [{"name": "corp-registry"}],
    "workerNodeAffinity": AFFINITY,
    "headNodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "pool", "operator": "In", "values": ["cpu"]}]}]
    }},
}  # fmt: skip
SA = {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/trainer"}}


@pytest.fixture(scope="module")
def helm() -> Path:
    return require_tool("helm")


def settings_of(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (cm,) = [d for d in docs if d["kind"] == "ConfigMap"]
    parsed: dict[str, Any] = yaml.safe_load(cm["data"]["settings.yaml"])
    return parsed


def test_defaults_add_no_pod_shaping_settings(helm: Path) -> None:
    """Nothing new in the default settings file (manifests/ stay as generated)."""
    raw = settings_of(helm_template(helm))
    assert "rayPods" not in raw and "trainerServiceAccount" not in raw
    assert raw["headDefaults"] == {"cpu": "2", "memory": "8Gi"}
    defaults = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    assert defaults["trainer"]["pods"] == {
        "env": [],
        "labels": {},
        "annotations": {},
        "priorityClassName": "",
        "imagePullSecrets": [],
        "workerNodeAffinity": {},
        "headNodeAffinity": {},
    }
    assert defaults["trainer"]["serviceAccount"] == {"annotations": {}}


def test_pod_shaping_values_reach_the_operator_settings(helm: Path) -> None:
    values = {
        "trainer": {"pods": PODS, "serviceAccount": SA},
        "defaults": {"headResources": {"ephemeralStorage": "20Gi"}},
    }
    raw = settings_of(helm_template(helm, values))
    assert raw["rayPods"] == PODS
    assert raw["trainerServiceAccount"] == SA
    assert raw["headDefaults"] == {"cpu": "2", "memory": "8Gi", "ephemeralStorage": "20Gi"}
    settings = Settings.model_validate(raw)
    pods = settings.ray_pods
    assert [e.to_wire() for e in pods.env] == PODS["env"]
    assert (pods.labels, pods.annotations) == (PODS["labels"], PODS["annotations"])
    assert pods.priority_class_name == "training-high"
    assert pods.worker_node_affinity is not None and pods.head_node_affinity is not None
    assert pods.worker_node_affinity.to_wire() == AFFINITY
    assert pods.head_node_affinity.to_wire() == PODS["headNodeAffinity"]
    assert settings.trainer_service_account.annotations == SA["annotations"]
    assert settings.head_defaults.ephemeral_storage == "20Gi"


def test_only_the_values_set_are_passed_on(helm: Path) -> None:
    raw = settings_of(helm_template(helm, {"trainer": {"pods": {"priorityClassName": "batch"}}}))
    assert raw["rayPods"] == {"priorityClassName": "batch"}
    assert "trainerServiceAccount" not in raw


def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((CHART_DIR / "values.schema.json").read_text())
    return schema


def _valid(values: dict[str, Any]) -> bool:
    return jsonschema.Draft7Validator(_schema()).is_valid(values)


def _env(name: str) -> dict[str, Any]:
    return {"trainer": {"pods": {"env": [{"name": name, "value": "x"}]}}}


def _labels(field: str, key: str) -> dict[str, Any]:
    return {"trainer": {"pods": {field: {key: "x"}}}}


def test_schema_refuses_every_env_name_the_operator_refuses() -> None:
    """The schema's pattern and settings_pods.py list the same reserved names."""
    names = sorted(OPERATOR_ENV | KUBERAY_ENV) + [p + "X" for p in RESERVED_ENV_PREFIXES]
    names += ["ray_auth_mode", "Whisperft_x"]
    accepted = [n for n in names if _valid(_env(n))]
    assert accepted == [], f"values.schema.json accepts reserved env names {accepted}"
    assert _valid(_env("HTTPS_PROXY")) and _valid(_env("RAY_DEDUP_LOGS"))


@pytest.mark.parametrize("field", ["labels", "annotations"])
def test_schema_refuses_every_key_the_operator_refuses(field: str) -> None:
    keys = [
        *sorted(OPERATOR_LABELS),
        "whisperft.io/finetune",
        "team.whisperft.io/x",
        "ray.io/node-type",
        "kueue.x-k8s.io/queue-name",
    ]
    accepted = [k for k in keys if _valid(_labels(field, k))]
    assert accepted == [], f"values.schema.json accepts reserved {field} {accepted}"
    assert _valid(_labels(field, "app.kubernetes.io/version"))
    assert _valid(_labels(field, "example.com/team"))
    sa = {"trainer": {"serviceAccount": {"annotations": {"whisperft.io/x": "y"}}}}
    assert not _valid(sa)


# (values, the field path helm must name, a fragment of the reason)
BAD: list[tuple[dict[str, Any], str, str]] = [
    (_env("RAY_AUTH_MODE"), "/trainer/pods/env/0/name", ""),
    ({"trainer": {"pods": {"env": [{"name": "A"}]}}}, "/trainer/pods/env/0", "'oneOf' failed"),
    (
        {"trainer": {"pods": {"env": [{"name": "A", "value": "1", "valueFrom": {}}]}}},
        "/trainer/pods/env/0",
        "",
    ),
    ({"trainer": {"pods": {"env": [{"name": "A", "value": 1}]}}}, "/trainer/pods/env/0/value", ""),
    # A reserved key is named in the path ('/' escaped as ~1).
    (_labels("labels", "whisperft.io/finetune"), "/trainer/pods/labels/whisperft.io~1finetune", ""),
    (
        _labels("annotations", "ray.io/overwrite-container-cmd"),
        "/trainer/pods/annotations/ray.io~1overwrite-container-cmd",
        "",
    ),
    (_labels("labels", "bad key"), "/trainer/pods/labels", "'bad key' not allowed"),
    ({"trainer": {"pods": {"labels": {"team": "has space"}}}}, "/trainer/pods/labels/team", ""),
    ({"trainer": {"pods": {"priorityClassName": "High"}}}, "/trainer/pods/priorityClassName", ""),
    ({"trainer": {"pods": {"imagePullSecrets": ["x"]}}}, "/trainer/pods/imagePullSecrets/0", ""),
    (
        {"trainer": {"pods": {"workerNodeAffinity": {"podAntiAffinity": {}}}}},
        "/trainer/pods/workerNodeAffinity",
        "additional properties 'podAntiAffinity' not allowed",
    ),
    (
        {"trainer": {"pods": {"headNodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 101, "preference": {}}]}}}},
        "/trainer/pods/headNodeAffinity/preferredDuringSchedulingIgnoredDuringExecution/0/weight",
        "maximum",
    ),
    (
        {"trainer": {"pods": {"workerNodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "k", "operator": "Near"}]}]}}}}},
        "/trainer/pods/workerNodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms/0/matchExpressions/0/operator",
        "value must be one of",
    ),
    ({"trainer": {"pods": {"nodeSelector": {}}}}, "/trainer/pods", "additional properties"),
    (
        {"trainer": {"serviceAccount": {"annotations": {"whisperft.io/x": "y"}}}},
        "/trainer/serviceAccount/annotations/whisperft.io~1x",
        "",
    ),
    ({"trainer": {"serviceAccount": {"name": "x"}}}, "/trainer/serviceAccount", "additional"),
    (
        {"defaults": {"headResources": {"ephemeralStorage": "lots"}}},
        "/defaults/headResources/ephemeralStorage",
        "",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("values", "field", "reason"), BAD, ids=[f for _, f, _ in BAD])
def test_schema_refuses_bad_pod_shaping_naming_the_field(
    helm: Path, values: dict[str, Any], field: str, reason: str
) -> None:
    proc = helm_template_text(helm, values, check=False)
    assert proc.returncode != 0, f"accepted bad values {values}"
    assert "values don't meet the specifications of the schema" in proc.stderr
    assert f"- at '{field}'" in proc.stderr, proc.stderr
    assert reason in proc.stderr, proc.stderr
