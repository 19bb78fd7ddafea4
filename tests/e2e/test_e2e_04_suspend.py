"""Scenario 4: suspend -> the RayJob is suspended, KubeRay deletes the Ray
cluster, the pods are gone and their GPUs free; resume -> back to Running."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from e2e_harness.cluster import ControlPlane
from e2e_harness.kube import Kube, condition, phase
from e2e_harness.nodes import GPU_RESOURCE
from e2e_harness.operator_proc import OperatorProcess
from e2e_harness.resources import dump, finetune

from whisperft import names
from whisperft.operator.render.meta import config_map_name, rayjob_name
from whisperft.trainer.config import TrainConfig, config_from_files

pytestmark = [pytest.mark.e2e]


def _config(cm: dict[str, Any]) -> TrainConfig:
    return config_from_files(
        cm["data"][names.FINETUNE_FILE_NAME], cm["data"][names.RUNTIME_FILE_NAME]
    )


def _gpus_in_use(kube: Kube, ns: str) -> int:
    """GPUs requested by pods bound to a node in `ns` (what the scheduler counts as taken)."""
    total = 0
    for p in kube.items("pods", ns):
        if p["spec"].get("nodeName") and p.get("status", {}).get("phase") not in (
            "Succeeded",
            "Failed",
        ):
            for c in p["spec"]["containers"]:
                total += int(c.get("resources", {}).get("limits", {}).get(GPU_RESOURCE, 0))
    return total


def _ray_pods(kube: Kube, ns: str) -> list[dict[str, Any]]:
    return kube.items("pods", ns, "ray.io/node-type")


def _wait_phase(kube: Kube, ns: str, name: str, want: str, timeout: float = 90) -> None:
    kube.wait(f"{name} phase {want}", lambda: phase(kube.wft(ns, name)) == want, timeout=timeout)


def test_suspend_frees_gpus_and_resume_runs_again(
    cluster: ControlPlane,
    kube: Kube,
    namespace: str,
    operator_factory: Callable[..., OperatorProcess],
) -> None:
    operator_factory("suspend", [namespace])
    name = "pausable"
    cluster.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=dump(finetune(name, resources={"gpusPerWorker": 2})),
    )
    job = rayjob_name(name, 1)
    _wait_phase(kube, namespace, name, "Running", timeout=120)
    kube.wait("GPUs in use", lambda: _gpus_in_use(kube, namespace) == 2, timeout=60)

    kube.patch_wft(namespace, name, {"spec": {"suspend": True}})
    kube.wait(
        "RayJob suspended",
        lambda: (kube.rayjob(namespace, job) or {}).get("spec", {}).get("suspend") is True,
    )
    kube.wait("Ray pods gone", lambda: not _ray_pods(kube, namespace), timeout=90)
    assert _gpus_in_use(kube, namespace) == 0
    _wait_phase(kube, namespace, name, "Suspended")
    reasons = [e["reason"] for e in kube.events(namespace, name)]
    assert any(r.startswith("Suspend") for r in reasons), reasons
    # The checkpoint claim outlives the suspension (the resumed run reads it).
    assert kube.items("pvc", namespace, f"{names.LABEL_FINETUNE}={name}")

    kube.patch_wft(namespace, name, {"spec": {"suspend": False}})
    kube.wait(
        "RayJob resumed",
        lambda: not (kube.rayjob(namespace, job) or {}).get("spec", {}).get("suspend"),
    )
    kube.wait("GPUs in use again", lambda: _gpus_in_use(kube, namespace) == 2, timeout=120)
    _wait_phase(kube, namespace, name, "Running", timeout=120)
    obj = kube.wft(namespace, name)
    assert obj is not None and obj["status"]["rayJobName"] == job, (
        "resume must continue the same attempt"
    )


def test_spec_change_while_running_is_reported_then_applied_on_resume(
    cluster: ControlPlane,
    kube: Kube,
    namespace: str,
    operator_factory: Callable[..., OperatorProcess],
) -> None:
    """A change a running attempt cannot take is never silently ignored: it is
    named in UpdatePending, and suspend + resume applies it as a new attempt
    on the same checkpoint claim."""
    operator_factory("spec-change", [namespace])
    name = "retuned"
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=dump(finetune(name)))
    _wait_phase(kube, namespace, name, "Running", timeout=120)
    first = kube.wft(namespace, name)
    assert first is not None
    old_lr = first["spec"]["training"]["learningRate"]
    new_lr = old_lr / 2

    kube.patch_wft(namespace, name, {"spec": {"training": {"learningRate": new_lr}}})

    def pending() -> dict[str, Any] | None:
        cond = condition(kube.wft(namespace, name), "UpdatePending")
        return cond if cond and cond["status"] == "True" else None

    cond = kube.wait("UpdatePending=True", pending, timeout=60)
    assert "training.learningRate" in cond["message"], cond
    assert "UpdatePending" in [e["reason"] for e in kube.events(namespace, name)]
    # the running attempt keeps its config; nothing was restarted behind the user's back
    obj = kube.wft(namespace, name)
    assert obj is not None and obj["status"]["rayJobName"] == rayjob_name(name, 1)
    config_1 = kube.get("configmap", namespace, config_map_name(name, 1))
    assert config_1 is not None
    cfg_1 = _config(config_1)
    assert cfg_1.training.learning_rate == pytest.approx(old_lr)

    kube.patch_wft(namespace, name, {"spec": {"suspend": True}})
    _wait_phase(kube, namespace, name, "Suspended")
    kube.patch_wft(namespace, name, {"spec": {"suspend": False}})
    job_2 = rayjob_name(name, 2)
    kube.wait(f"RayJob {job_2}", lambda: kube.rayjob(namespace, job_2), timeout=60)
    config_2 = kube.get("configmap", namespace, config_map_name(name, 2))
    assert config_2 is not None
    cfg_2 = _config(config_2)
    assert cfg_2.training.learning_rate == pytest.approx(new_lr)
    assert (cfg_2.name, cfg_2.runtime.storage_path) == (cfg_1.name, cfg_1.runtime.storage_path), (
        "the new attempt must resume the same run"
    )
    kube.wait(
        "attempt 1's RayJob deleted", lambda: kube.rayjob(namespace, rayjob_name(name, 1)) is None
    )
    _wait_phase(kube, namespace, name, "Running", timeout=120)
    obj = kube.wft(namespace, name)
    assert obj is not None and obj["status"]["attempt"] == 2
    assert (condition(obj, "UpdatePending") or {}).get("status") != "True"
