"""Scenario 7: resilience. The operator is SIGKILLed mid-reconcile and
restarted -> no duplicate children and the status converges; the API server
is restarted -> the operator reconnects and carries on."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from functools import partial

import pytest
from e2e_harness.cluster import ControlPlane
from e2e_harness.kube import Kube, phase
from e2e_harness.operator_proc import OperatorProcess
from e2e_harness.resources import dump, finetune

from whisperft import names
from whisperft.operator.render.meta import rayjob_name

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CHILDREN = "rayjobs.ray.io,configmaps,pvc"


def _children(kube: Kube, ns: str) -> Counter[tuple[str, str]]:
    """(finetune, kind) -> how many children of that kind it has."""
    out: Counter[tuple[str, str]] = Counter()
    for obj in kube.items(CHILDREN, ns, names.LABEL_FINETUNE):
        out[(obj["metadata"]["labels"][names.LABEL_FINETUNE], obj["kind"])] += 1
    return out


def _settled(kube: Kube, ns: str, name: str) -> bool:
    return phase(kube.wft(ns, name)) in ("Pending", "Running")


def test_killed_operator_restarts_without_duplicates(
    cluster: ControlPlane,
    kube: Kube,
    namespace: str,
    operator_factory: Callable[..., OperatorProcess],
) -> None:
    op = operator_factory("killed", [namespace])
    batch = [f"crash-{i}" for i in range(8)]
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=dump(*(finetune(n) for n in batch)))
    # Kill as soon as the first child exists: some resources are half done.
    kube.wait(
        "the first child",
        lambda: kube.items(CHILDREN, namespace, names.LABEL_FINETUNE),
        timeout=60,
        interval=0.1,
    )
    op.kill()
    before_kill = _children(kube, namespace)
    op.restart()

    def converged() -> bool:
        return all(kube.rayjob(namespace, rayjob_name(n, 1)) for n in batch)

    kube.wait("every RayJob after the restart", converged, timeout=120)
    counts = _children(kube, namespace)
    dupes = {k: v for k, v in counts.items() if v != 1}
    assert not dupes, f"duplicate children: {dupes}"
    assert {n for n, _ in counts} == set(batch)
    assert {kind for _, kind in counts} == {"RayJob", "ConfigMap", "PersistentVolumeClaim"}
    for n in batch:
        kube.wait(
            f"{n} status converges",
            partial(_settled, kube, namespace, n),
            timeout=60,
        )
        status = (kube.wft(namespace, n) or {})["status"]
        assert status["attempt"] == 1 and status["rayJobName"] == rayjob_name(n, 1)
    print(f"children before the kill: {sum(before_kill.values())} of {3 * len(batch)}")


def test_operator_survives_an_apiserver_restart(
    cluster: ControlPlane,
    kube: Kube,
    namespace: str,
    operator_factory: Callable[..., OperatorProcess],
) -> None:
    op = operator_factory("apiserver-restart", [namespace])
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=dump(finetune("before")))
    kube.wait(
        "RayJob before the restart",
        lambda: kube.rayjob(namespace, rayjob_name("before", 1)),
        timeout=60,
    )

    cluster.restart_apiserver()

    # Existing resources keep being watched ...
    kube.set_rayjob_status(
        namespace,
        rayjob_name("before", 1),
        {"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"},
    )
    kube.wait(
        "status after the restart",
        lambda: phase(kube.wft(namespace, "before")) == "Succeeded",
        timeout=120,
    )
    # ... and new ones are picked up.
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=dump(finetune("after")))
    kube.wait(
        "RayJob created after the restart",
        lambda: kube.rayjob(namespace, rayjob_name("after", 1)),
        timeout=120,
    )
    assert op.proc.alive() and op.proc.restarts == 0
