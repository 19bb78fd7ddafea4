"""Scenario 2: `kubectl apply` of the minimal example -> ConfigMap, claim and
RayJob with owner references -> the real KubeRay creates the RayCluster -> the
real scheduler puts head and workers on the right kwok pools -> the resource
reports Running with the RayJob/RayCluster names. An accelerator with no
nodes is never scheduled elsewhere; one the pool table lacks is refused."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
from e2e_harness.cluster import ControlPlane
from e2e_harness.kube import Kube, condition, owned_by, phase
from e2e_harness.nodes import GPU_RESOURCE, pool
from e2e_harness.operator_proc import OperatorProcess
from e2e_harness.resources import dump, finetune

from whisperft import names
from whisperft.operator.render.meta import checkpoint_claim_name, config_map_name, rayjob_name

pytestmark = [pytest.mark.e2e]


def _pods(kube: Kube, ns: str, cluster_name: str, node_type: str) -> list[dict[str, Any]]:
    return kube.items("pods", ns, f"ray.io/cluster={cluster_name},ray.io/node-type={node_type}")


def _gpus(pod: dict[str, Any]) -> int:
    return sum(
        int(c.get("resources", {}).get("limits", {}).get(GPU_RESOURCE, 0))
        for c in pod["spec"]["containers"]
    )


def test_apply_example_runs_on_the_l4_pool(
    cluster: ControlPlane,
    kube: Kube,
    namespace: str,
    operator_factory: Callable[..., OperatorProcess],
) -> None:
    op = operator_factory("flow", [namespace])
    name = "minimal"
    cluster.kubectl(
        "apply", "-n", namespace, "-f", "-", input=dump(finetune(name, resources={"workers": 2}))
    )

    wft = kube.wait("the resource to be read back", lambda: kube.wft(namespace, name))
    job = rayjob_name(name, 1)
    rayjob = kube.wait(f"RayJob {job}", lambda: kube.rayjob(namespace, job), timeout=60)
    configmap = kube.get("configmap", namespace, config_map_name(name, 1))
    claim = kube.get("pvc", namespace, checkpoint_claim_name(name))
    assert configmap is not None and claim is not None
    for child in (rayjob, configmap, claim):
        assert owned_by(child, wft), (
            f"{child['kind']} {child['metadata']['name']} lacks the owner reference"
        )

    # KubeRay (real, out of cluster) makes the RayCluster from rayClusterSpec.
    cluster_name = kube.wait(
        "KubeRay to name the RayCluster",
        partial(kube.rayjob_cluster, namespace, job),
        timeout=60,
    )
    raycluster = kube.wait(
        f"RayCluster {cluster_name}", lambda: kube.raycluster(namespace, cluster_name)
    )
    assert owned_by(raycluster, rayjob)

    # The real scheduler binds every pod; the claim is bound by kwok's volume stages first.
    l4 = pool("gpu-l4")

    def scheduled_workers() -> list[dict[str, Any]] | None:
        pods = [
            p for p in _pods(kube, namespace, cluster_name, "worker") if p["spec"].get("nodeName")
        ]
        return pods if len(pods) == 2 else None

    workers = kube.wait("2 worker pods scheduled", scheduled_workers, timeout=90)
    for w in workers:
        assert w["spec"]["nodeName"].startswith(f"{l4.name}-"), f"worker on {w['spec']['nodeName']}"
        assert _gpus(w) >= 1
        # The operator's pool table (e2e_settings) selects exactly these labels.
        assert l4.node_selector.items() <= w["spec"].get("nodeSelector", {}).items()
        assert any(t.get("key") == GPU_RESOURCE for t in w["spec"].get("tolerations", []))
    head = kube.wait(
        "head pod scheduled",
        lambda: next(
            (p for p in _pods(kube, namespace, cluster_name, "head") if p["spec"].get("nodeName")),
            None,
        ),
        timeout=60,
    )
    assert _gpus(head) == 0
    assert not head["spec"]["nodeName"].startswith("gpu-"), (
        "the head (no GPUs) landed on a GPU node"
    )

    # Status: Running with the names, once KubeRay says the job is deployed.
    def running() -> dict[str, Any] | None:
        obj = kube.wft(namespace, name)
        return obj if phase(obj) == "Running" else None

    wft = kube.wait("phase Running", running, timeout=120)
    status = wft["status"]
    assert status["rayJobName"] == job
    assert status["rayClusterName"] == cluster_name
    assert (condition(wft, "Running") or {}).get("status") == "True"
    printed = cluster.kubectl("get", "wft", name, "-n", namespace).stdout
    assert "Running" in printed, printed

    # Kopf's bookkeeping lives under our group, never under kopf.zalando.org.
    md = wft["metadata"]
    assert md.get("finalizers") == [f"{names.GROUP}/finalizer"]
    assert any(k.startswith(f"{names.GROUP}/") for k in md.get("annotations", {}))
    assert not [k for k in md.get("annotations", {}) if "kopf.zalando.org" in k]

    # Prometheus metrics reflect what just happened.
    def scraped() -> str | None:
        text = op.metrics()
        return text if 'whisperft_finetunes{phase="Running"} 1.0' in text else None

    text = kube.wait("the phase gauge to count it Running", scraped, timeout=30)
    assert "whisperft_attempts_started_total 1.0" in text, text
    assert 'whisperft_phase_transitions_total{phase="Running"} 1.0' in text, text
    assert "whisperft_reconciles_total{" in text


def test_accelerator_without_nodes_is_not_scheduled_elsewhere(
    cluster: ControlPlane,
    kube: Kube,
    namespace: str,
    operator_factory: Callable[..., OperatorProcess],
) -> None:
    """nvidia-h100-80gb is in the operator's pool table but no node has it."""
    operator_factory("no-nodes", [namespace])
    name = "wants-h100"
    cluster.kubectl(
        "apply", "-n", namespace, "-f", "-",
        input=dump(finetune(name, resources={"accelerator": "nvidia-h100-80gb"})),
    )  # fmt: skip
    job = rayjob_name(name, 1)
    cluster_name = kube.wait(
        "RayCluster named",
        partial(kube.rayjob_cluster, namespace, job),
        timeout=90,
    )

    def unschedulable_worker() -> dict[str, Any] | None:
        for p in _pods(kube, namespace, cluster_name, "worker"):
            conds = {c["type"]: c for c in p.get("status", {}).get("conditions", [])}
            if conds.get("PodScheduled", {}).get("reason") == "Unschedulable":
                return p
        return None

    worker = kube.wait("the H100 worker reported Unschedulable", unschedulable_worker, timeout=90)
    assert not worker["spec"].get("nodeName")
    assert phase(kube.wft(namespace, name)) != "Running"
