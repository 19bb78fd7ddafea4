"""Smoke test of the loopback control plane itself: the API answers with the
pinned version, kwok's GPU nodes are Ready with their GPUs, and the real
scheduler honours GPU requests, node selectors and the GPU taint."""

from __future__ import annotations

import json
from typing import Any

import pytest
from e2e_harness.cluster import REPO, ControlPlane
from e2e_harness.kube import Kube
from e2e_harness.nodes import GPU_RESOURCE, POOL_LABEL, POOLS, pool

pytestmark = [pytest.mark.e2e]


def _pod(name: str, gpus: int, node_selector: dict[str, str], tolerate: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "containers": [
            {
                "name": "main",
                "image": "registry.invalid/never-pulled:0",
                "resources": {"limits": {GPU_RESOURCE: str(gpus)}} if gpus else {},
            }
        ],
        "nodeSelector": node_selector,
    }
    if tolerate:
        spec["tolerations"] = pool("gpu-l4").tolerations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def _get(cluster: ControlPlane, ns: str, kind: str, name: str) -> dict[str, Any]:
    return json.loads(cluster.kubectl("get", kind, name, "-n", ns, "-o", "json").stdout)


def test_api_version_and_gpu_nodes(cluster: ControlPlane) -> None:
    version = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    pinned = dict(
        line.split("=", 1)
        for line in (REPO / "hack" / "controlplane" / "versions.env").read_text().splitlines()
        if line and not line.startswith("#")
    )
    # the build's version ldflags make the server report exactly the pinned release
    assert version["serverVersion"]["gitVersion"] == pinned["KUBERNETES_VERSION"]

    nodes = {
        n["metadata"]["name"]: n
        for n in json.loads(cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    }
    assert len(nodes) == sum(p.nodes for p in POOLS)
    for p in POOLS:
        for i in range(p.nodes):
            node = nodes[f"{p.name}-{i}"]
            ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"]
            assert ready == "True", f"{p.name}-{i} not Ready"
            assert node["metadata"]["labels"][POOL_LABEL] == p.name
            if p.gpus:
                assert node["status"]["allocatable"][GPU_RESOURCE] == str(p.gpus)
                assert {"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"} in node[
                    "spec"
                ]["taints"]


def test_scheduler_places_gpu_pod_on_its_pool(cluster: ControlPlane, kube: Kube) -> None:
    ns = kube.namespace("e2e-smoke")
    try:
        _check_placement(cluster, ns)
    finally:
        kube.delete_namespace(ns)


def _check_placement(cluster: ControlPlane, ns: str) -> None:
    l4 = pool("gpu-l4")
    pods = [
        _pod("fits-l4", 2, l4.node_selector, tolerate=True),
        # More GPUs than any L4 node has: must stay Pending, never land on the A100 pool.
        _pod("too-big-for-l4", 6, l4.node_selector, tolerate=True),
        # No toleration: the GPU taint keeps it off every GPU node.
        _pod("no-toleration", 1, l4.node_selector, tolerate=False),
    ]
    cluster.kubectl(
        "apply",
        "-n",
        ns,
        "-f",
        "-",
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": pods}),
    )

    cluster.wait_until(
        "fits-l4 Running",
        lambda: _get(cluster, ns, "pod", "fits-l4")["status"].get("phase") == "Running",
        timeout=60,
    )
    placed = _get(cluster, ns, "pod", "fits-l4")
    assert placed["spec"]["nodeName"].startswith("gpu-l4-")

    for name in ("too-big-for-l4", "no-toleration"):
        cluster.wait_until(
            f"{name} reported Unschedulable",
            lambda name=name: any(
                c["type"] == "PodScheduled" and c.get("reason") == "Unschedulable"
                for c in _get(cluster, ns, "pod", name)["status"].get("conditions", [])
            ),
            timeout=60,
        )
        assert not _get(cluster, ns, "pod", name)["spec"].get("nodeName")
