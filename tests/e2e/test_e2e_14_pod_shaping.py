"""Scenario 14: pods a platform team shapes through the chart's values.

`helm install` of the chart with trainer.pods (env, labels, annotations, a real
PriorityClass, an image pull Secret, worker and head node affinity) and
trainer.serviceAccount.annotations; the operator runs as the chart's Deployment
describes it (its settings ConfigMap, its ServiceAccount's token, the RayJob
admission policy on). A WhisperFineTune then gets:

* on the head and worker pods the real KubeRay made: the env (after the
  operator's, with KubeRay's Ray token variables untouched), the labels next to
  the operator's own, the annotations, the PriorityClass (resolved by the API
  server's Priority admission to its value), the pull Secret and the node
  affinity;
* workers placed by the real scheduler on the one node both the pool's
  nodeSelector and the affinity allow (the affinity also names a node of
  another pool, which the pool's nodeSelector still excludes: merged, not
  replaced); the head on the node its affinity names;
* the job submitter pod: labels, annotations, PriorityClass, pull Secret and
  the head's affinity, no platform env;
* the fine-tune's trainer ServiceAccount: the workload-identity annotations.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from e2e_harness.cluster import ControlPlane
from e2e_harness.kube import Kube, phase
from e2e_harness.nodes import POOLS, PRODUCT_LABEL, pool
from e2e_harness.operator_proc import OperatorProcess
from e2e_harness.resources import CHART, dump, finetune
from test_e2e_01_helm import RELEASE, _deployment_as_process

from whisperft import names
from whisperft.operator.render.meta import rayjob_name, trainer_account_name

pytestmark = [pytest.mark.e2e]

NAMESPACE = "pod-shaping-system"
PRIORITY_CLASS = "wft-e2e-training"
PRIORITY = 100000
PULL_SECRET = "corp-registry"
HOSTNAME = "kubernetes.io/hostname"
L4 = pool("gpu-l4")
WORKER_NODE = f"{L4.name}-1"  # of the pool's two nodes, the only one the affinity allows
ENV = [
    {"name": "HTTPS_PROXY", "value": "http://proxy.corp.invalid:3128"},
    # apiVersion given, as the API server defaults it.
    {
        "name": "NODE_IP",
        "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.hostIP"}},
    },
]
LABELS = {"team": "speech", "example.com/cost-center": "4711"}
ANNOTATIONS = {"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"}
SA_ANNOTATIONS = {
    "iam.gke.io/gcp-service-account": "trainer@proj.iam.gserviceaccount.com",
    "eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/trainer",
}
WORKER_AFFINITY = {
    "requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [
            # gpu-a100-0 is allowed here, but not by the L4 pool's nodeSelector.
            {"matchExpressions": [
                {"key": HOSTNAME, "operator": "In", "values": [WORKER_NODE, "gpu-a100-0"]}
            ]}
        ]
    }
}  # fmt: skip
HEAD_AFFINITY = {
    "requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [
            {"matchExpressions": [{"key": "cloud.google.com/gke-nodepool", "operator": "In",
                                   "values": ["cpu"]}]}
        ]
    },
    "preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 10, "preference": {"matchExpressions": [{"key": "type", "operator": "Exists"}]}}
    ],
}  # fmt: skip


def _values(tmp: Path) -> Path:
    pools = [
        {
            "accelerator": p.accelerator,
            "nodeSelector": {PRODUCT_LABEL: p.product},
            "tolerations": p.tolerations,
            "gpuMemoryGiB": 24 if p.gpus == 4 else 80,
        }
        for p in POOLS
        if p.accelerator
    ]
    values = {
        "nodePools": pools,
        # Claims that can be ReadWriteMany: the head may then go where its own
        # affinity says, apart from the workers (one-node placement: test_e2e_15).
        "readWriteManyStorageClasses": [""],
        "trainer": {
            "image": {"repository": "registry.invalid/e2e/whisperft-trainer", "tag": "e2e"},
            "pods": {
                "env": ENV,
                "labels": LABELS,
                "annotations": ANNOTATIONS,
                "priorityClassName": PRIORITY_CLASS,
                "imagePullSecrets": [{"name": PULL_SECRET}],
                "workerNodeAffinity": WORKER_AFFINITY,
                "headNodeAffinity": HEAD_AFFINITY,
            },
            "serviceAccount": {"annotations": SA_ANNOTATIONS},
        },
    }
    path = tmp / "values.json"
    path.write_text(json.dumps(values))
    return path


def _container(pod: dict[str, Any]) -> dict[str, Any]:
    (container,) = pod["spec"]["containers"]
    return dict(container)


def _assert_shaped(pod: dict[str, Any], affinity: dict[str, Any], component: str) -> None:
    md, spec = pod["metadata"], pod["spec"]
    what = f"{component} pod {md['name']}"
    assert LABELS.items() <= md["labels"].items(), what
    # The operator's own labels (NetworkPolicy and status selectors) are intact.
    assert md["labels"][names.LABEL_FINETUNE] == "shaped", what
    assert md["labels"][names.LABEL_COMPONENT] == component, what
    assert md["labels"][names.LABEL_ATTEMPT] == "1", what
    assert ANNOTATIONS.items() <= (md.get("annotations") or {}).items(), what
    assert spec["priorityClassName"] == PRIORITY_CLASS, what
    assert spec["priority"] == PRIORITY, f"{what}: the PriorityClass was not resolved"
    assert spec["imagePullSecrets"] == [{"name": PULL_SECRET}], what
    assert spec["affinity"] == {"nodeAffinity": affinity}, what


def test_chart_values_shape_the_ray_pods_kuberay_makes(
    cluster: ControlPlane,
    kube: Kube,
    operator_factory: Callable[..., OperatorProcess],
    tmp_path: Path,
) -> None:
    priority_class = {
        "apiVersion": "scheduling.k8s.io/v1",
        "kind": "PriorityClass",
        "metadata": {"name": PRIORITY_CLASS},
        "value": PRIORITY,
        "description": "whisperft e2e: training pods",
    }
    cluster.kubectl("apply", "-f", "-", input=dump(priority_class))
    ns = kube.namespace(
        NAMESPACE,
        labels={
            "pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/enforce-version": "latest",
        },
    )
    try:
        _scenario(cluster, kube, ns, operator_factory, tmp_path)
    finally:
        # While the operator still runs with the chart's RBAC, so it removes its finalizers.
        cluster.kubectl("delete", "wft", "--all", "-n", ns, "--timeout=60s", check=False)
        cluster.helm("uninstall", RELEASE, "-n", ns, "--wait", check=False, timeout=120)
        kube.delete_namespace(ns)
        cluster.kubectl("delete", "priorityclass", PRIORITY_CLASS, "--ignore-not-found")


def _scenario(
    cluster: ControlPlane,
    kube: Kube,
    ns: str,
    operator_factory: Callable[..., OperatorProcess],
    tmp_path: Path,
) -> None:
    cluster.kubectl(
        "create", "secret", "docker-registry", PULL_SECRET, "-n", ns,
        "--docker-server=registry.invalid", "--docker-username=e2e", "--docker-password=e2e",
    )  # fmt: skip
    cluster.helm(
        "install", RELEASE, str(CHART), "-n", ns, "-f", str(_values(tmp_path)), timeout=180
    )
    args, env, sa = _deployment_as_process(cluster, kube, ns, tmp_path / "pod")
    token_kc = cluster.service_account_kubeconfig(ns, sa, tmp_path / "sa.kubeconfig")
    operator_factory("shaping", [ns], kubeconfig=token_kc, run_args=args, extra_env=env)

    name = "shaped"
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=dump(finetune(name)))
    job = rayjob_name(name, 1)
    kube.wait("the RayJob, admitted by the chart's policy", lambda: kube.rayjob(ns, job), 90)

    account = kube.wait(
        "the trainer ServiceAccount",
        lambda: kube.get("serviceaccount", ns, trainer_account_name(name)),
        timeout=30,
    )
    assert SA_ANNOTATIONS.items() <= (account["metadata"].get("annotations") or {}).items()

    rc = kube.wait("RayCluster", partial(kube.rayjob_cluster, ns, job), timeout=90)

    def scheduled(node_type: str) -> dict[str, Any] | None:
        pods = kube.items("pods", ns, f"ray.io/cluster={rc},ray.io/node-type={node_type}")
        return pods[0] if len(pods) == 1 and pods[0]["spec"].get("nodeName") else None

    worker = kube.wait("the worker pod scheduled", partial(scheduled, "worker"), timeout=90)
    head = kube.wait("the head pod scheduled", partial(scheduled, "head"), timeout=90)

    _assert_shaped(worker, WORKER_AFFINITY, "ray-worker")
    _assert_shaped(head, HEAD_AFFINITY, "ray-head")
    # Merged with the pool's selection, never instead of it.
    assert worker["spec"]["nodeSelector"] == {PRODUCT_LABEL: L4.product}
    assert any(t.get("key") == "nvidia.com/gpu" for t in worker["spec"]["tolerations"])
    assert worker["spec"]["nodeName"] == WORKER_NODE, worker["spec"]["nodeName"]
    assert head["spec"]["nodeName"] == "cpu-0", head["spec"]["nodeName"]

    for pod in (head, worker):
        container_env = _container(pod)["env"]
        by_name = {e["name"]: e for e in container_env}
        for e in ENV:
            assert by_name[e["name"]] == e, (pod["metadata"]["name"], e["name"])
        order = [e["name"] for e in container_env]
        assert order.index(names.ENV_FINETUNE_NAME) < order.index("HTTPS_PROXY")
        # KubeRay's token authentication is on the same containers, untouched.
        assert by_name["RAY_AUTH_MODE"]["value"] == "token"
        assert "secretKeyRef" in by_name["RAY_AUTH_TOKEN"]["valueFrom"]

    submitter = kube.wait(
        "the submitter pod",
        lambda: next(iter(kube.items("pods", ns, f"batch.kubernetes.io/job-name={job}")), None),
        timeout=120,
    )
    _assert_shaped(submitter, HEAD_AFFINITY, "ray-job-submitter")
    sub_env = {e["name"] for e in _container(submitter).get("env") or []}
    assert not sub_env & {e["name"] for e in ENV}, sub_env

    kube.wait("phase Running", lambda: phase(kube.wft(ns, name)) == "Running", timeout=120)
    cluster.kubectl("delete", "wft", name, "-n", ns, "--timeout=60s")
    kube.wait("RayJob deleted", lambda: kube.rayjob(ns, job) is None, timeout=60)
