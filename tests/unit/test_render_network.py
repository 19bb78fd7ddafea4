"""Issue 14 (security) in the rendered attempt: the NetworkPolicies fencing its Ray
pods, Ray token auth on its RayCluster, and which pod holds which token.

The policies' whole text is pinned by the golden files (test_render_golden.py);
here are the properties that must hold whatever the golden files say."""

from __future__ import annotations

from typing import Any

import pytest

from whisperft import names
from whisperft.operator.api.resource import parse_resource
from whisperft.operator.render.bundle import Rendered, render_attempt
from whisperft.operator.render.meta import Meta
from whisperft.operator.render.network import (
    DASHBOARD_PORT,
    NAMESPACE_NAME_LABEL,
    RAY_NODE_TYPE_LABEL,
    head_policy_name,
    render_network_policies,
    workers_policy_name,
)
from whisperft.operator.render.pods import HF_TOKEN_ENV
from whisperft.operator.settings import Settings, load_settings

pytestmark = pytest.mark.unit

UID = "7d2c1a4e-0000-4000-8000-000000000002"


def _render(attempt: int = 1, settings: Settings | None = None, **spec: Any) -> Rendered:
    body: dict[str, Any] = {
        "apiVersion": names.API_VERSION,
        "kind": names.KIND,
        "metadata": {"name": "fenced", "namespace": "ml", "uid": UID},
        "spec": {
            "dataset": {"path": "bundled:en"},
            "training": {"maxSteps": 10},
            "resources": {"accelerator": "nvidia-l4", "workers": 2},
            # ReadWriteMany: the two workers may then be on two nodes (test_claim_access.py).
            "checkpoints": {"size": "10Gi", "accessMode": "ReadWriteMany"},
            **spec,
        },
    }
    res = parse_resource(body)
    out = render_attempt(res.spec, Meta("fenced", "ml", UID), settings or Settings(), attempt)
    assert out.problem is None, out.problem
    return out


def _matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Kubernetes label-selector semantics (matchLabels and In/NotIn/Exists)."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for e in selector.get("matchExpressions", []):
        key, op = e["key"], e["operator"]
        if op == "In" and labels.get(key) not in e["values"]:
            return False
        if op == "NotIn" and labels.get(key) in e["values"]:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def _pods(out: Rendered) -> dict[str, dict[str, Any]]:
    """The three pod templates, labelled as KubeRay labels the pods it makes from
    them (it adds ray.io/node-type to Ray nodes, nothing to the submitter's)."""
    (job,) = out.of_kind("RayJob")
    rc = job["spec"]["rayClusterSpec"]
    head, worker = rc["headGroupSpec"]["template"], rc["workerGroupSpecs"][0]["template"]
    sub = job["spec"]["submitterPodTemplate"]
    return {
        "head": {**head, "labels": {**head["metadata"]["labels"], RAY_NODE_TYPE_LABEL: "head"}},
        "worker": {
            **worker,
            "labels": {**worker["metadata"]["labels"], RAY_NODE_TYPE_LABEL: "worker"},
        },
        "submitter": {**sub, "labels": dict(sub["metadata"]["labels"])},
    }


def _policies(out: Rendered) -> dict[str, dict[str, Any]]:
    return {p["metadata"]["name"]: p for p in out.of_kind("NetworkPolicy")}


def _admits(policy: dict[str, Any], labels: dict[str, str], namespace: str = "ml") -> bool:
    """Whether some ingress rule admits a pod with `labels` in `namespace` (any port)."""
    for rule in policy["spec"]["ingress"]:
        for peer in rule["from"]:
            ns_sel, pod_sel = peer.get("namespaceSelector"), peer.get("podSelector")
            ns_ok = (
                _matches(ns_sel, {NAMESPACE_NAME_LABEL: namespace})
                if ns_sel is not None
                else namespace == "ml"
            )
            if ns_ok and (pod_sel is None or _matches(pod_sel, labels)):
                return True
    return False


def test_two_policies_before_the_rayjob_owned_like_the_other_children() -> None:
    out = _render()
    kinds = [c["kind"] for c in out.children]
    assert kinds[-3:] == ["NetworkPolicy", "NetworkPolicy", "RayJob"]
    policies = _policies(out)
    assert set(policies) == {head_policy_name("fenced", 1), workers_policy_name("fenced", 1)}
    (job,) = out.of_kind("RayJob")
    for p in policies.values():
        assert p["apiVersion"] == "networking.k8s.io/v1"
        assert p["metadata"]["namespace"] == "ml"
        assert p["metadata"]["ownerReferences"] == job["metadata"]["ownerReferences"]
        assert p["metadata"]["labels"][names.LABEL_ATTEMPT] == "1"
        assert p["spec"]["policyTypes"] == ["Ingress"]  # egress stays open (API server, hub)


def test_each_policy_selects_exactly_its_pods() -> None:
    out = _render()
    pods, policies = _pods(out), _policies(out)
    head_p, workers_p = policies["fenced-1-ray-head"], policies["fenced-1-ray-workers"]
    selected = {
        name: [k for k, pod in pods.items() if _matches(p["spec"]["podSelector"], pod["labels"])]
        for name, p in (("head", head_p), ("workers", workers_p))
    }
    assert selected == {"head": ["head"], "workers": ["worker"]}


def test_the_head_admits_its_job_and_kuberay_the_workers_only_their_cluster() -> None:
    out = _render()
    pods, policies = _pods(out), _policies(out)
    head_p, workers_p = policies["fenced-1-ray-head"], policies["fenced-1-ray-workers"]
    for who in ("head", "worker", "submitter"):
        assert _admits(head_p, pods[who]["labels"]), who
    assert _admits(workers_p, pods["head"]["labels"]) and _admits(
        workers_p, pods["worker"]["labels"]
    )
    assert not _admits(workers_p, pods["submitter"]["labels"])
    # The KubeRay operator's namespace reaches the head's dashboard only.
    kuberay_rules = [
        r for r in head_p["spec"]["ingress"] if any("namespaceSelector" in f for f in r["from"])
    ]
    assert kuberay_rules == [
        {
            "from": [
                {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: "kuberay-system"}}}
            ],
            "ports": [{"protocol": "TCP", "port": DASHBOARD_PORT}],
        }
    ]
    assert _admits(head_p, {"app": "kuberay-operator"}, namespace="kuberay-system")
    assert not _admits(workers_p, {"app": "kuberay-operator"}, namespace="kuberay-system")
    # Anything else: another attempt, another fine-tune, an unlabelled pod, another namespace.
    other_attempt = {**pods["worker"]["labels"], names.LABEL_ATTEMPT: "2"}
    other_job = {**pods["worker"]["labels"], names.LABEL_FINETUNE: "other"}
    for labels in (other_attempt, other_job, {}):
        assert not _admits(head_p, labels) and not _admits(workers_p, labels)
    assert not _admits(head_p, pods["worker"]["labels"], namespace="elsewhere")
    assert not _admits(workers_p, pods["worker"]["labels"], namespace="elsewhere")


def test_the_kuberay_namespace_is_a_setting(tmp_path: Any) -> None:
    settings = load_settings({"WHISPERFT_KUBERAY_NAMESPACE": "ray-operator"})
    head_p, _ = render_network_policies(Meta("fenced", "ml", UID), settings, 3)
    assert head_p["metadata"]["name"] == "fenced-3-ray-head"
    assert head_p["spec"]["ingress"][1]["from"] == [
        {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: "ray-operator"}}}
    ]
    assert head_p["spec"]["podSelector"]["matchLabels"][names.LABEL_ATTEMPT] == "3"
    file = tmp_path / "settings.yaml"
    file.write_text("kuberayNamespace: ray-system\n")
    assert load_settings({"WHISPERFT_SETTINGS_FILE": str(file)}).kuberay_namespace == "ray-system"
    with pytest.raises(ValueError, match="kuberayNamespace"):
        load_settings({"WHISPERFT_KUBERAY_NAMESPACE": "Not_A_Namespace"})


def test_ray_token_auth_is_on() -> None:
    (job,) = _render().of_kind("RayJob")
    assert job["spec"]["rayClusterSpec"]["authOptions"] == {"mode": "token"}


@pytest.mark.parametrize("accelerator", ["nvidia-l4", None])
def test_no_train_worker_runs_on_the_head(accelerator: str | None) -> None:
    """Rank 0 patches the status with the trainer's API token, which the head lacks:
    the head offers Ray no CPUs or GPUs, so every Train worker lands on a worker pod
    (the driver and Train's controller need none)."""
    resources = {"workers": 1, "cpu": "1"} | ({"accelerator": accelerator} if accelerator else {})
    (job,) = _render(resources=resources).of_kind("RayJob")
    params = job["spec"]["rayClusterSpec"]["headGroupSpec"]["rayStartParams"]
    assert (params["num-cpus"], params["num-gpus"]) == ("0", "0")


def _env(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for c in template["spec"]["containers"] for e in c.get("env", [])}


@pytest.mark.parametrize("with_hf_token", [True, False])
def test_who_holds_which_token(with_hf_token: bool) -> None:
    spec = {"hfTokenSecretRef": {"name": "hf", "key": "token"}} if with_hf_token else {}
    pods = _pods(_render(**spec))
    head, worker, sub = pods["head"], pods["worker"], pods["submitter"]
    # The Kubernetes API: only the workers (rank 0 patches the status).
    assert head["spec"]["automountServiceAccountToken"] is False
    assert worker["spec"]["automountServiceAccountToken"] is True
    assert sub["spec"]["automountServiceAccountToken"] is False
    # The model hub: only the head, where the driver resolves the model.
    assert (HF_TOKEN_ENV in _env(head)) is with_hf_token
    if with_hf_token:
        assert _env(head)[HF_TOKEN_ENV]["valueFrom"] == {
            "secretKeyRef": {"name": "hf", "key": "token"}
        }
    assert HF_TOKEN_ENV not in _env(worker) and HF_TOKEN_ENV not in _env(sub)
    # The Ray token is KubeRay's to inject (from its Secret), never rendered by us.
    for pod in pods.values():
        assert not {"RAY_AUTH_MODE", "RAY_AUTH_TOKEN"} & set(_env(pod))
