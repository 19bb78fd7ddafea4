"""Scenario 10: the status tells the truth under faults, on the real API server:
a 20 kB failure message still ends the resource Failed (bounded), a claim that
does not exist reaches a condition, and a create the API server refuses (a
quota) does not spend a restart."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from e2e_harness.cluster import ControlPlane
from e2e_harness.kube import Kube, condition, phase
from e2e_harness.operator_proc import OperatorProcess
from e2e_harness.resources import dump, finetune

from whisperft.operator.render.meta import rayjob_name

pytestmark = [pytest.mark.e2e]

FAILED = {"jobDeploymentStatus": "Failed", "jobStatus": "FAILED", "reason": "AppFailed"}


def _cond(kube: Kube, ns: str, name: str, kind: str) -> dict[str, Any] | None:
    return condition(kube.wft(ns, name), kind)


def test_a_20k_failure_message_ends_failed_with_a_bounded_message(
    cluster: ControlPlane,
    kube: Kube,
    namespace: str,
    operator_factory: Callable[..., OperatorProcess],
) -> None:
    operator_factory("bounded", [namespace])
    name = "huge"
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=dump(finetune(name, maxRestarts=0)))
    job = rayjob_name(name, 1)
    kube.wait(f"RayJob {job}", lambda: kube.rayjob(namespace, job), timeout=90)
    tail = "error: the last line the trainer printed"
    message = (
        "Job entrypoint command failed with exit code 1, last available logs (truncated to "
        "20,000 chars):\n" + "x" * 20_000 + "\n" + tail
    )
    kube.set_rayjob_status(namespace, job, {**FAILED, "message": message})
    obj = kube.wait(
        "phase Failed",
        lambda: o if phase(o := kube.wft(namespace, name)) == "Failed" else None,
        timeout=60,
    )
    st = obj["status"]
    assert len(st["message"]) <= 4096 and tail in st["message"]
    assert "characters omitted" in st["message"]
    failed = condition(obj, "Failed")
    assert failed is not None and failed["status"] == "True" and len(failed["message"]) <= 4096


def test_a_claim_that_does_not_exist_reaches_a_condition(
    cluster: ControlPlane,
    kube: Kube,
    namespace: str,
    operator_factory: Callable[..., OperatorProcess],
) -> None:
    operator_factory("claim", [namespace])
    name = "noclaim"
    doc = finetune(name)
    doc["spec"]["checkpoints"] = {"claimName": "does-not-exist"}
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=dump(doc))

    def ready_says_why() -> dict[str, Any] | None:
        c = _cond(kube, namespace, name, "Ready")
        return c if c and c["reason"] == "ClaimNotBound" else None

    c = kube.wait("Ready=False naming the claim", ready_says_why, timeout=60)
    assert c["status"] == "False" and "does-not-exist" in c["message"]
    obj = kube.wft(namespace, name)
    assert obj is not None and phase(obj) == "Pending"
    assert "does-not-exist" in obj["status"]["message"]


def test_a_refused_create_does_not_spend_a_restart(
    cluster: ControlPlane,
    kube: Kube,
    namespace: str,
    operator_factory: Callable[..., OperatorProcess],
) -> None:
    operator_factory("quota", [namespace])
    name = "quota"
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=dump(finetune(name, maxRestarts=1)))
    job_1 = rayjob_name(name, 1)
    kube.wait(f"RayJob {job_1}", lambda: kube.rayjob(namespace, job_1), timeout=90)
    # One RayJob per namespace: attempt 2 cannot be created while attempt 1 exists.
    quota = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "one-rayjob", "namespace": namespace},
        "spec": {"hard": {"count/rayjobs.ray.io": "1"}},
    }
    cluster.kubectl("apply", "-f", "-", input=dump(quota))
    kube.wait(
        "the quota's usage computed",
        lambda: (
            (kube.get("resourcequota", namespace, "one-rayjob") or {})
            .get("status", {})
            .get("used", {})
            .get("count/rayjobs.ray.io")
            == "1"
        ),
        timeout=60,
    )
    kube.set_rayjob_status(namespace, job_1, FAILED)

    def refused() -> dict[str, Any] | None:
        c = _cond(kube, namespace, name, "Ready")
        return c if c and c["reason"] == "CreateFailed" else None

    c = kube.wait("Ready=False: the create was refused", refused, timeout=60)
    assert "exceeded quota" in c["message"] or "forbidden" in c["message"].lower(), c
    st = kube.wft(namespace, name)["status"]  # type: ignore[index]
    assert (st["attempt"], st.get("restarts", 0)) == (1, 0), st
    assert phase(kube.wft(namespace, name)) != "Failed"
    cluster.kubectl("delete", "resourcequota", "one-rayjob", "-n", namespace)
    job_2 = rayjob_name(name, 2)
    kube.wait(f"RayJob {job_2}", lambda: kube.rayjob(namespace, job_2), timeout=90)
    obj = kube.wait(
        "attempt 2 in status",
        lambda: (
            o
            if ((o := kube.wft(namespace, name)) or {}).get("status", {}).get("attempt") == 2
            else None
        ),
        timeout=60,
    )
    assert obj["status"]["restarts"] == 1  # one failed attempt retried: one restart
    kube.wait("attempt 1 deleted", lambda: kube.rayjob(namespace, job_1) is None, timeout=60)


def test_a_claim_holding_another_fine_tunes_run_is_refused(
    cluster: ControlPlane,
    kube: Kube,
    namespace: str,
    operator_factory: Callable[..., OperatorProcess],
) -> None:
    """A claim is a trust boundary: naming another fine-tune's claim (one it named, or
    the one the operator made for it) is refused before anything mounts it."""
    operator_factory("claims", [namespace])
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=dump(finetune("alice")))
    kube.wait("alice's RayJob", lambda: kube.rayjob(namespace, rayjob_name("alice", 1)), 90)
    kube.wait(
        "alice's claim",
        lambda: kube.get("persistentvolumeclaim", namespace, "alice-checkpoints"),
        timeout=30,
    )
    thief = finetune("mallory")
    thief["spec"]["checkpoints"] = {"claimName": "alice-checkpoints"}
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=dump(thief))

    def refused() -> dict[str, Any] | None:
        c = _cond(kube, namespace, "mallory", "Planned")
        return c if c and c["reason"] == "ClaimInUse" else None

    c = kube.wait("Planned=False ClaimInUse", refused, timeout=60)
    assert "spec.checkpoints.claimName" in c["message"] and "'alice'" in c["message"]
    assert phase(kube.wft(namespace, "mallory")) == "Failed"
    assert kube.rayjob(namespace, rayjob_name("mallory", 1)) is None
