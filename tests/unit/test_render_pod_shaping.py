"""Pods a platform team shapes through the operator settings (rayPods,
trainerServiceAccount, head resources): what reaches the rendered RayJob and the
trainer ServiceAccount, and what those settings can never change."""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import pytest

from whisperft import names
from whisperft.operator.api.resource import parse_resource
from whisperft.operator.render.bundle import Rendered, render_attempt
from whisperft.operator.render.meta import Meta
from whisperft.operator.settings import Settings
from whisperft.operator.settings_pods import env_reserved

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import kuberay_crd

pytestmark = pytest.mark.unit

ZONE = {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["us-central1-a"]}
SPOT = {"key": "cloud.google.com/gke-spot", "operator": "DoesNotExist"}
WORKER_AFFINITY = {
    "requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [ZONE, SPOT]}]
    }
}
HEAD_AFFINITY = {
    "preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 50, "preference": {"matchExpressions": [{**ZONE, "key": "pool"}]}}
    ]
}
ENV = [
    {"name": "HTTPS_PROXY", "value": "http://proxy.corp:3128"},
    {"name": "NODE_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
]
LABELS = {"team": "speech", "cost-center": "4711"}
ANNOTATIONS = {"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"}
SA_ANNOTATIONS = {
    "iam.gke.io/gcp-service-account": "trainer@proj.iam.gserviceaccount.com",
    "eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/trainer",
}

SHAPED = Settings.model_validate(
    {
        "rayPods": {
            "env": ENV,
            "labels": LABELS,
            "annotations": ANNOTATIONS,
            "priorityClassName": "training-high",
            "imagePullSecrets": [{"name": "corp-registry"}],
            "workerNodeAffinity": WORKER_AFFINITY,
            "headNodeAffinity": HEAD_AFFINITY,
        },
        "trainerServiceAccount": {"annotations": SA_ANNOTATIONS},
        "headDefaults": {"cpu": "2", "memory": "8Gi", "ephemeralStorage": "20Gi"},
        "submitterResources": {"cpu": "500m", "memory": "1Gi", "ephemeralStorage": "1Gi"},
    }
)

BODY: dict[str, Any] = {
    "apiVersion": names.API_VERSION,
    "kind": names.KIND,
    "metadata": {"name": "shaped", "namespace": "ml", "uid": "u-1"},
    "spec": {
        "model": {"name": "bundled:tiny.en"},
        "dataset": {"path": "bundled:en"},
        "training": {"maxSteps": 200},
        "resources": {
            "accelerator": "nvidia-l4",
            "workers": 2,
            "nodeSelector": {"topology.kubernetes.io/region": "us-central1"},
        },
        # ReadWriteMany: the workers may be on two nodes (one-node placement: test_claim_access.py).
        "checkpoints": {"size": "10Gi", "accessMode": "ReadWriteMany"},
        "hfTokenSecretRef": {"name": "hf", "key": "token"},
        "queueName": "team-a",
    },
}


def render(settings: Settings, body: dict[str, Any] = BODY) -> Rendered:
    res = parse_resource(copy.deepcopy(body))
    out = render_attempt(res.spec, Meta("shaped", "ml", "u-1"), settings, 1)
    assert out.problem is None, out.problem
    return out


def templates(out: Rendered) -> dict[str, dict[str, Any]]:
    job = out.of_kind("RayJob")[0]["spec"]
    rc = job["rayClusterSpec"]
    return {
        "head": rc["headGroupSpec"]["template"],
        "worker": rc["workerGroupSpecs"][0]["template"],
        "submitter": job["submitterPodTemplate"],
    }


def test_env_goes_to_the_head_and_workers_after_the_operators() -> None:
    plain, shaped = templates(render(Settings())), templates(render(SHAPED))
    for role in ("head", "worker"):
        (container,) = shaped[role]["spec"]["containers"]
        (before,) = plain[role]["spec"]["containers"]
        assert container["env"] == before["env"] + ENV
    assert "env" not in shaped["submitter"]["spec"]["containers"][0]


def test_labels_and_annotations_on_every_pod_with_the_operators_labels_intact() -> None:
    plain, shaped = templates(render(Settings())), templates(render(SHAPED))
    for role, template in shaped.items():
        own = plain[role]["metadata"]["labels"]
        assert template["metadata"]["labels"] == {**LABELS, **own}, role
        assert template["metadata"]["annotations"] == ANNOTATIONS, role
        assert "annotations" not in plain[role]["metadata"]


def test_priority_class_and_pull_secrets_on_every_pod() -> None:
    for role, template in templates(render(SHAPED)).items():
        spec = template["spec"]
        assert spec["priorityClassName"] == "training-high", role
        assert spec["imagePullSecrets"] == [{"name": "corp-registry"}], role
    for template in templates(render(Settings())).values():
        assert "priorityClassName" not in template["spec"]
        assert "imagePullSecrets" not in template["spec"]


def test_worker_affinity_narrows_the_pool_and_never_replaces_it() -> None:
    plain, shaped = templates(render(Settings())), templates(render(SHAPED))
    worker, before = shaped["worker"]["spec"], plain["worker"]["spec"]
    assert worker["affinity"] == {"nodeAffinity": WORKER_AFFINITY}
    # The pool's selection and the user's extra key stay, as before.
    assert worker["nodeSelector"] == before["nodeSelector"]
    assert worker["nodeSelector"]["nvidia.com/gpu.product"] == "NVIDIA-L4"
    assert worker["nodeSelector"]["topology.kubernetes.io/region"] == "us-central1"
    assert worker["tolerations"] == before["tolerations"]
    for role in ("head", "submitter"):
        assert shaped[role]["spec"]["affinity"] == {"nodeAffinity": HEAD_AFFINITY}, role
        assert "nodeSelector" not in shaped[role]["spec"]
    assert all("affinity" not in t["spec"] for t in plain.values())


def test_security_relevant_fields_are_the_same_with_or_without_shaping() -> None:
    plain, shaped = templates(render(Settings())), templates(render(SHAPED))
    for role in plain:
        a, b = plain[role]["spec"], shaped[role]["spec"]
        for key in ("serviceAccountName", "automountServiceAccountToken", "securityContext"):
            assert a.get(key) == b.get(key), (role, key)
        # Containers differ only in the added env (and the head's ephemeral storage).
        for ca, cb in zip(a["containers"], b["containers"], strict=True):
            same = {k: v for k, v in ca.items() if k not in ("env", "resources")}
            assert same == {k: v for k, v in cb.items() if k not in ("env", "resources")}
        assert a.get("volumes") == b.get("volumes")
    a_np = render(Settings()).of_kind("NetworkPolicy")
    assert a_np == render(SHAPED).of_kind("NetworkPolicy")


def test_every_env_name_the_operator_renders_is_reserved() -> None:
    """The settings refuse what the renderer sets itself, so a platform cannot
    shadow the trainer's contract (the HF token only renders with a secretRef)."""
    for role in ("head", "worker"):
        (container,) = templates(render(Settings()))[role]["spec"]["containers"]
        for e in container["env"]:
            assert env_reserved(e["name"]), e["name"]


def test_trainer_service_account_gets_the_annotations() -> None:
    (sa,) = render(SHAPED).of_kind("ServiceAccount")
    assert sa["metadata"]["annotations"] == SA_ANNOTATIONS
    assert sa["metadata"]["name"] == "shaped-trainer"
    assert sa["automountServiceAccountToken"] is False
    (plain,) = render(Settings()).of_kind("ServiceAccount")
    assert "annotations" not in plain["metadata"]
    # The Role and RoleBinding do not change.
    for kind in ("Role", "RoleBinding"):
        assert render(SHAPED).of_kind(kind) == render(Settings()).of_kind(kind)


def _resources(template: dict[str, Any]) -> dict[str, Any]:
    resources: dict[str, Any] = template["spec"]["containers"][0]["resources"]
    return resources


def _tmp_limit(template: dict[str, Any]) -> str:
    (tmp,) = [v for v in template["spec"]["volumes"] if v["name"] == "tmp"]
    return str(tmp["emptyDir"]["sizeLimit"])


def test_head_and_submitter_ephemeral_storage_from_the_settings() -> None:
    shaped = templates(render(SHAPED))
    head = _resources(shaped["head"])
    assert (
        head["requests"]
        == head["limits"]
        == {
            "cpu": "2",
            "memory": "8Gi",
            "ephemeral-storage": "20Gi",
        }
    )
    sub = _resources(shaped["submitter"])
    assert sub["requests"]["ephemeral-storage"] == sub["limits"]["ephemeral-storage"] == "1Gi"
    # Workers request room to stage one checkpoint in /tmp (its emptyDir's sizeLimit);
    # nothing else asks for ephemeral storage unless the settings do.
    worker = _resources(shaped["worker"])
    assert worker["requests"]["ephemeral-storage"] == _tmp_limit(shaped["worker"])
    assert "ephemeral-storage" not in worker["limits"]
    for role, template in templates(render(Settings())).items():
        if role != "worker":
            assert "ephemeral-storage" not in _resources(template)["requests"]


def test_head_resources_of_the_resource_still_win_over_the_defaults() -> None:
    body = copy.deepcopy(BODY)
    body["spec"]["resources"]["head"] = {"cpu": "3", "memory": "12Gi"}
    head = _resources(templates(render(SHAPED, body))["head"])
    assert head["limits"] == {"cpu": "3", "memory": "12Gi", "ephemeral-storage": "20Gi"}


@pytest.mark.parametrize("accelerator", ["nvidia-l4", None])
def test_worker_ephemeral_storage_follows_the_pool_kind(accelerator: str | None) -> None:
    settings = Settings.model_validate(
        {
            "workerDefaults": {"cpu": "8", "memory": "32Gi", "ephemeralStorage": "100Gi"},
            "cpuWorkerDefaults": {"cpu": "4", "memory": "16Gi", "ephemeralStorage": "30Gi"},
        }
    )
    body = copy.deepcopy(BODY)
    body["spec"]["resources"] = {"accelerator": accelerator} if accelerator else {}
    worker = _resources(templates(render(settings, body))["worker"])
    assert worker["limits"]["ephemeral-storage"] == ("100Gi" if accelerator else "30Gi")


def test_shaped_rayjob_is_valid_for_kuberay() -> None:
    validator = kuberay_crd.rayjob_validator()
    rayjob = render(SHAPED).of_kind("RayJob")[0]
    errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(rayjob)]
    assert not errors, "\n".join(errors)
