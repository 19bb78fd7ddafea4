"""Scenario 15: a platform whose StorageClasses offer no ReadWriteMany (GKE's and
EKS's defaults). The checkpoint claim is ReadWriteOnce, so the real scheduler
must put the Ray head and both workers on one node of the L4 pool (4 GPUs per
kwok node); a run needing more GPUs than one node has is refused before any
GPU is requested, naming the settings to change."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
from e2e_harness.cluster import ControlPlane
from e2e_harness.kube import Kube, condition, phase
from e2e_harness.nodes import pool
from e2e_harness.operator_proc import OperatorProcess, e2e_settings
from e2e_harness.resources import dump, finetune

from whisperft.operator.render.meta import checkpoint_claim_name, rayjob_name

pytestmark = [pytest.mark.e2e]


def test_read_write_once_claim_puts_the_whole_run_on_one_node(
    cluster: ControlPlane,
    kube: Kube,
    namespace: str,
    operator_factory: Callable[..., OperatorProcess],
) -> None:
    # metricsPort 0 here: the harness passes the real one by env.
    operator_factory(
        "one-node", [namespace], settings=e2e_settings([namespace], 0, read_write_many=False)
    )
    l4 = pool("gpu-l4")
    fits = finetune("fits", resources={"workers": 2})
    too_big = finetune("too-big", resources={"workers": 3, "gpusPerWorker": 2})
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=dump(fits, too_big))

    claim = kube.wait(
        "claim", lambda: kube.get("pvc", namespace, checkpoint_claim_name("fits")), timeout=60
    )
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    cluster_name = kube.wait(
        "RayCluster named",
        partial(kube.rayjob_cluster, namespace, rayjob_name("fits", 1)),
        timeout=90,
    )

    def placed() -> list[dict[str, Any]] | None:
        pods = [
            p
            for p in kube.items("pods", namespace, f"ray.io/cluster={cluster_name}")
            if p["spec"].get("nodeName")
        ]
        return pods if len(pods) == 3 else None

    pods = kube.wait("head and 2 workers scheduled", placed, timeout=120)
    nodes = {p["spec"]["nodeName"] for p in pods}
    assert len(nodes) == 1, f"a ReadWriteOnce claim's pods spread over {sorted(nodes)}"
    assert next(iter(nodes)).startswith(f"{l4.name}-")

    refused = kube.wait(
        "too-big refused",
        lambda: condition(kube.wft(namespace, "too-big"), "Planned"),
        timeout=60,
    )
    assert refused["status"] == "False" and refused["reason"] == "WillNotFit"
    assert "need 6 GPUs" in refused["message"] and "has 4" in refused["message"]
    assert "readWriteManyStorageClasses" in refused["message"]
    assert kube.rayjob(namespace, rayjob_name("too-big", 1)) is None
    assert kube.get("pvc", namespace, checkpoint_claim_name("too-big")) is None
    assert phase(kube.wft(namespace, "too-big")) != "Running"
