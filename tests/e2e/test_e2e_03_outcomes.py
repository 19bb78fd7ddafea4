"""Scenario 3: completion and failure. Fake pods run no Ray, so the test plays
KubeRay's last step and writes the RayJob status (including the combinations
where jobStatus and jobDeploymentStatus disagree); the resource's phase,
conditions and events must follow, and a failure with restarts left must start
attempt 2 on the same checkpoint path."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from e2e_harness.cluster import ControlPlane
from e2e_harness.kube import Kube, condition, phase
from e2e_harness.operator_proc import OperatorProcess
from e2e_harness.resources import dump, finetune

from whisperft import names
from whisperft.operator.render.meta import (
    checkpoint_claim_name,
    checkpoint_path,
    config_map_name,
    rayjob_name,
    trainer_account_name,
)
from whisperft.trainer.config import TrainConfig, config_from_files

pytestmark = [pytest.mark.e2e]


def _wait_phase(kube: Kube, ns: str, name: str, want: str, timeout: float = 60) -> dict[str, Any]:
    return kube.wait(
        f"{name} phase {want}",
        lambda: obj if phase(obj := kube.wft(ns, name)) == want else None,
        timeout=timeout,
    )


def _events_with(kube: Kube, ns: str, name: str, reason_part: str) -> list[dict[str, Any]]:
    return [e for e in kube.events(ns, name) if reason_part in (e["reason"] or "")]


def _train_config(kube: Kube, ns: str, name: str, attempt: int) -> TrainConfig:
    cm = kube.get("configmap", ns, config_map_name(name, attempt))
    assert cm is not None, f"ConfigMap of attempt {attempt} missing"
    return config_from_files(
        cm["data"][names.FINETUNE_FILE_NAME], cm["data"][names.RUNTIME_FILE_NAME]
    )


def _claims(rayjob: dict[str, Any]) -> set[str]:
    spec = rayjob["spec"]["rayClusterSpec"]
    templates = [spec["headGroupSpec"]["template"]] + [
        g["template"] for g in spec["workerGroupSpecs"]
    ]
    return {
        v["persistentVolumeClaim"]["claimName"]
        for t in templates
        for v in t["spec"].get("volumes", [])
        if "persistentVolumeClaim" in v
    }


CASES = [
    # (name, RayJob status written, expected phase, condition that must be True)
    ("ok", {"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"}, "Succeeded", "Succeeded"),
    # Ray says the job succeeded; a late deployment failure must not hide that.
    ("ok-late-fail", {"jobDeploymentStatus": "Failed", "jobStatus": "SUCCEEDED", "reason": "DeadlineExceeded"}, "Succeeded", "Succeeded"),
    # KubeRay says the job failed; a stale RUNNING from the dashboard must not hide that.
    ("stale-running", {"jobDeploymentStatus": "Failed", "jobStatus": "RUNNING", "reason": "AppFailed"}, "Failed", "Failed"),
    # Deployment Complete but Ray says FAILED: failed, not succeeded.
    ("complete-failed", {"jobDeploymentStatus": "Complete", "jobStatus": "FAILED", "reason": "AppFailed"}, "Failed", "Failed"),
    ("stopped", {"jobDeploymentStatus": "Complete", "jobStatus": "STOPPED"}, "Failed", "Failed"),
]  # fmt: skip


def test_outcomes_follow_the_rayjob_status(
    cluster: ControlPlane,
    kube: Kube,
    namespace: str,
    operator_factory: Callable[..., OperatorProcess],
) -> None:
    operator_factory("outcomes", [namespace])
    # maxRestarts 0: every failure is final, so the mapping alone is observed.
    docs = [finetune(case, maxRestarts=0) for case, *_ in CASES]
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=dump(*docs))
    for case, _, _, _ in CASES:
        kube.wait(
            f"RayJob of {case}",
            partial(kube.rayjob, namespace, rayjob_name(case, 1)),
            timeout=90,
        )
    for case, rj_status, _, _ in CASES:
        kube.set_rayjob_status(namespace, rayjob_name(case, 1), rj_status)
    for case, _status, want, cond in CASES:
        obj = _wait_phase(kube, namespace, case, want)
        c = condition(obj, cond)
        assert c is not None and c["status"] == "True", (
            f"{case}: condition {cond} not True: {obj['status']}"
        )
        assert c.get("reason"), f"{case}: condition {cond} has no reason"
        if want == "Failed":
            assert obj["status"].get("message"), f"{case}: failed without a message"
            assert (condition(obj, "Succeeded") or {}).get("status") != "True"
        assert obj["status"].get("completionTime"), f"{case}: no completionTime"
        events = kube.wait(
            f"an event for {case} reaching {want}",
            partial(_events_with, kube, namespace, case, want),
            timeout=30,
        )
        assert events[0]["type"] == ("Warning" if want == "Failed" else "Normal"), events
        # Final: no further attempt was started.
        assert kube.rayjob(namespace, rayjob_name(case, 2)) is None


def test_failure_with_restarts_left_resumes_from_the_same_checkpoint(
    cluster: ControlPlane,
    kube: Kube,
    namespace: str,
    operator_factory: Callable[..., OperatorProcess],
) -> None:
    operator_factory("retry", [namespace])
    name = "retry"
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=dump(finetune(name, maxRestarts=1)))
    first = kube.wait(
        "RayJob attempt 1", lambda: kube.rayjob(namespace, rayjob_name(name, 1)), timeout=90
    )
    kube.set_rayjob_status(
        namespace, rayjob_name(name, 1),
        {"jobDeploymentStatus": "Failed", "jobStatus": "FAILED", "reason": "AppFailed", "message": "worker OOM"},
    )  # fmt: skip

    second = kube.wait(
        "RayJob attempt 2", lambda: kube.rayjob(namespace, rayjob_name(name, 2)), timeout=60
    )
    obj = kube.wait(
        "status.attempt == 2",
        lambda: (
            o
            if ((o := kube.wft(namespace, name)) or {}).get("status", {}).get("attempt") == 2
            else None
        ),
    )
    assert obj["status"]["rayJobName"] == rayjob_name(name, 2)
    assert phase(obj) not in ("Failed", "Succeeded")
    # Attempt 1's RayJob is deleted to free its GPUs.
    kube.wait(
        "attempt 1 RayJob deleted",
        lambda: kube.rayjob(namespace, rayjob_name(name, 1)) is None,
        timeout=60,
    )

    # Same claim, same run directory: the trainer resumes from the last checkpoint.
    assert _claims(first) == _claims(second) == {checkpoint_claim_name(name)}
    c1, c2 = _train_config(kube, namespace, name, 1), _train_config(kube, namespace, name, 2)
    assert c1.name == c2.name == name
    assert c1.runtime.storage_path == c2.runtime.storage_path
    assert f"{c2.runtime.storage_path}/{c2.name}" == checkpoint_path(name)
    reasons = [e["reason"] for e in kube.events(namespace, name)]
    assert "AttemptFailed" in reasons and any("Retry" in r for r in reasons), reasons

    # The retry fails as well: no restarts left -> Failed, saying so.
    kube.set_rayjob_status(
        namespace,
        rayjob_name(name, 2),
        {"jobDeploymentStatus": "Failed", "jobStatus": "FAILED", "reason": "AppFailed"},
    )
    obj = _wait_phase(kube, namespace, name, "Failed")
    failed = condition(obj, "Failed")
    assert failed is not None and failed["status"] == "True"
    assert "restart" in (failed.get("message") or "").lower(), failed
    assert kube.rayjob(namespace, rayjob_name(name, 3)) is None


def test_trainer_progress_reaches_status_through_its_own_account_only(
    cluster: ControlPlane,
    kube: Kube,
    namespace: str,
    operator_factory: Callable[..., OperatorProcess],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Rank 0's real StatusSink, authenticated as the training pods' ServiceAccount
    token: it may patch its own resource's status and nothing else."""
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException

    from whisperft.trainer.progress import Progress, StatusSink

    operator_factory("progress", [namespace])
    cluster.kubectl(
        "apply", "-n", namespace, "-f", "-", input=dump(finetune("mine"), finetune("theirs"))
    )
    for name in ("mine", "theirs"):  # the trainer's account is made with the first RayJob
        kube.wait(
            f"{name}: attempt 1 started",
            lambda n=name: (kube.wft(namespace, n) or {}).get("status", {}).get("rayJobName"),
            timeout=60,
        )
    kc = cluster.service_account_kubeconfig(
        namespace, trainer_account_name("mine"), tmp_path / "trainer.kubeconfig"
    )

    default = client.Configuration.get_default_copy()
    monkeypatch.setenv("KUBECONFIG", str(kc))
    try:
        sink = StatusSink("mine", namespace)  # loads $KUBECONFIG, as outside a pod
        sink.publish(
            Progress(step=50, total_steps=200, epoch=0.5, loss=0.42, eval_wer=0.31,
                     last_checkpoint="/checkpoints/mine/checkpoint_step_00000050")
        )  # fmt: skip
    finally:
        client.Configuration.set_default(default)

    def published() -> dict[str, Any] | None:
        obj = kube.wft(namespace, "mine")
        status = (obj or {}).get("status", {})
        return obj if (status.get("progress") or {}).get("step") == 50 else None

    obj = kube.wait("the trainer's progress in status", published, timeout=30)
    assert obj["status"]["progress"]["evalWer"] == pytest.approx(0.31)
    assert obj["status"]["lastCheckpoint"].endswith("checkpoint_step_00000050")
    kube.wait(
        "the operator's Progress column",
        lambda: (
            (kube.wft(namespace, "mine") or {}).get("status", {}).get("progressText")
            == "50/200 (25%)"
        ),
        timeout=30,
    )

    api = config.new_client_from_config(config_file=str(kc))
    try:
        custom = client.CustomObjectsApi(api)
        forbidden = {
            "another resource's status": lambda: custom.patch_namespaced_custom_object_status(
                names.GROUP, names.VERSION, namespace, names.PLURAL, "theirs",
                {"status": {"progress": {"step": 1}}},
            ),
            "its own spec": lambda: custom.patch_namespaced_custom_object(
                names.GROUP, names.VERSION, namespace, names.PLURAL, "mine",
                {"spec": {"suspend": True}},
            ),
            "reading its own resource": lambda: custom.get_namespaced_custom_object(
                names.GROUP, names.VERSION, namespace, names.PLURAL, "mine"
            ),
            "listing pods": lambda: client.CoreV1Api(api).list_namespaced_pod(namespace),
        }  # fmt: skip
        for what, call in forbidden.items():
            with pytest.raises(ApiException) as err:
                call()
            assert err.value.status == 403, f"{what}: {err.value.status}"
    finally:
        api.close()
    theirs = kube.wft(namespace, "theirs")
    assert theirs is not None and "progress" not in theirs.get("status", {})
