"""The RayJob status mapping, over every (jobDeploymentStatus, jobStatus) pair
KubeRay can report, including the pairs that disagree."""

from __future__ import annotations

import pytest

from whisperft.operator.api.phase import Phase
from whisperft.operator.status_map import (
    DEPLOYMENT_STATUSES,
    JOB_STATUSES,
    conditions_for,
    map_rayjob_status,
    merge_conditions,
)

pytestmark = pytest.mark.unit

# (deployment, job) -> (phase, reason, outcome); outcome "-" = attempt goes on,
# "R" = attempt failed and may be retried, "F" = failed, not worth retrying.
# Reviewed row by row; the disagreeing pairs are the interesting ones:
#   (Running, SUCCEEDED)  -> Succeeded: Ray says done; KubeRay lags.
#   (Failed, SUCCEEDED)   -> Succeeded: the model is on the claim; the message notes the failure after.
#   (Failed, RUNNING)     -> Failed, retryable: the cluster is gone; RUNNING is stale.
#   (Complete, FAILED)    -> Failed, retryable: the job's own result decides.
#   (Complete, RUNNING)   -> Failed (JobStatusLost), retryable: finished without a final job status.
#   (Running, FAILED)     -> Failed now, without waiting for KubeRay to catch up.
#   (Initializing, RUNNING) -> Running: Ray itself is proof the cluster is up.
#   (Suspended, *) without a suspend request -> Pending/Queued: Kueue holds it.
#   (ValidationFailed, *) -> Failed, not retried: a retry is refused the same way.
#   (*, STOPPED)          -> Failed, not retried: someone stopped it on purpose.
EXPECTED: dict[tuple[str, str], tuple[str, str, str]] = {
    ("", ""): ("Pending", "ClusterStarting", "-"),
    ("", "NEW"): ("Pending", "ClusterStarting", "-"),
    ("", "PENDING"): ("Pending", "ClusterStarting", "-"),
    ("", "RUNNING"): ("Running", "JobRunning", "-"),
    ("", "STOPPED"): ("Failed", "JobStopped", "F"),
    ("", "SUCCEEDED"): ("Succeeded", "JobSucceeded", "-"),
    ("", "FAILED"): ("Failed", "JobFailed", "R"),
    ("New", ""): ("Pending", "ClusterStarting", "-"),
    ("New", "NEW"): ("Pending", "ClusterStarting", "-"),
    ("New", "PENDING"): ("Pending", "ClusterStarting", "-"),
    ("New", "RUNNING"): ("Running", "JobRunning", "-"),
    ("New", "STOPPED"): ("Failed", "JobStopped", "F"),
    ("New", "SUCCEEDED"): ("Succeeded", "JobSucceeded", "-"),
    ("New", "FAILED"): ("Failed", "JobFailed", "R"),
    ("Initializing", ""): ("Pending", "ClusterStarting", "-"),
    ("Initializing", "NEW"): ("Pending", "ClusterStarting", "-"),
    ("Initializing", "PENDING"): ("Pending", "ClusterStarting", "-"),
    ("Initializing", "RUNNING"): ("Running", "JobRunning", "-"),
    ("Initializing", "STOPPED"): ("Failed", "JobStopped", "F"),
    ("Initializing", "SUCCEEDED"): ("Succeeded", "JobSucceeded", "-"),
    ("Initializing", "FAILED"): ("Failed", "JobFailed", "R"),
    ("Waiting", ""): ("Pending", "ClusterStarting", "-"),
    ("Waiting", "NEW"): ("Pending", "ClusterStarting", "-"),
    ("Waiting", "PENDING"): ("Pending", "ClusterStarting", "-"),
    ("Waiting", "RUNNING"): ("Running", "JobRunning", "-"),
    ("Waiting", "STOPPED"): ("Failed", "JobStopped", "F"),
    ("Waiting", "SUCCEEDED"): ("Succeeded", "JobSucceeded", "-"),
    ("Waiting", "FAILED"): ("Failed", "JobFailed", "R"),
    ("Running", ""): ("Running", "JobPending", "-"),
    ("Running", "NEW"): ("Running", "JobPending", "-"),
    ("Running", "PENDING"): ("Running", "JobPending", "-"),
    ("Running", "RUNNING"): ("Running", "JobRunning", "-"),
    ("Running", "STOPPED"): ("Failed", "JobStopped", "F"),
    ("Running", "SUCCEEDED"): ("Succeeded", "JobSucceeded", "-"),
    ("Running", "FAILED"): ("Failed", "JobFailed", "R"),
    ("Retrying", ""): ("Pending", "Retrying", "-"),
    ("Retrying", "NEW"): ("Pending", "Retrying", "-"),
    ("Retrying", "PENDING"): ("Pending", "Retrying", "-"),
    ("Retrying", "RUNNING"): ("Running", "JobRunning", "-"),
    ("Retrying", "STOPPED"): ("Failed", "JobStopped", "F"),
    ("Retrying", "SUCCEEDED"): ("Succeeded", "JobSucceeded", "-"),
    ("Retrying", "FAILED"): ("Failed", "JobFailed", "R"),
    ("Suspending", ""): ("Pending", "Queued", "-"),
    ("Suspending", "NEW"): ("Pending", "Queued", "-"),
    ("Suspending", "PENDING"): ("Pending", "Queued", "-"),
    ("Suspending", "RUNNING"): ("Pending", "Queued", "-"),
    ("Suspending", "STOPPED"): ("Pending", "Queued", "-"),
    ("Suspending", "SUCCEEDED"): ("Succeeded", "JobSucceeded", "-"),
    ("Suspending", "FAILED"): ("Pending", "Queued", "-"),
    ("Suspended", ""): ("Pending", "Queued", "-"),
    ("Suspended", "NEW"): ("Pending", "Queued", "-"),
    ("Suspended", "PENDING"): ("Pending", "Queued", "-"),
    ("Suspended", "RUNNING"): ("Pending", "Queued", "-"),
    ("Suspended", "STOPPED"): ("Pending", "Queued", "-"),
    ("Suspended", "SUCCEEDED"): ("Succeeded", "JobSucceeded", "-"),
    ("Suspended", "FAILED"): ("Pending", "Queued", "-"),
    ("Complete", ""): ("Failed", "JobStatusLost", "R"),
    ("Complete", "NEW"): ("Failed", "JobStatusLost", "R"),
    ("Complete", "PENDING"): ("Failed", "JobStatusLost", "R"),
    ("Complete", "RUNNING"): ("Failed", "JobStatusLost", "R"),
    ("Complete", "STOPPED"): ("Failed", "JobStopped", "F"),
    ("Complete", "SUCCEEDED"): ("Succeeded", "JobSucceeded", "-"),
    ("Complete", "FAILED"): ("Failed", "JobFailed", "R"),
    ("Failed", ""): ("Failed", "DeploymentFailed", "R"),
    ("Failed", "NEW"): ("Failed", "DeploymentFailed", "R"),
    ("Failed", "PENDING"): ("Failed", "DeploymentFailed", "R"),
    ("Failed", "RUNNING"): ("Failed", "DeploymentFailed", "R"),
    ("Failed", "STOPPED"): ("Failed", "JobStopped", "F"),
    ("Failed", "SUCCEEDED"): ("Succeeded", "JobSucceeded", "-"),
    ("Failed", "FAILED"): ("Failed", "JobFailed", "R"),
    ("ValidationFailed", ""): ("Failed", "ValidationFailed", "F"),
    ("ValidationFailed", "NEW"): ("Failed", "ValidationFailed", "F"),
    ("ValidationFailed", "PENDING"): ("Failed", "ValidationFailed", "F"),
    ("ValidationFailed", "RUNNING"): ("Failed", "ValidationFailed", "F"),
    ("ValidationFailed", "STOPPED"): ("Failed", "ValidationFailed", "F"),
    ("ValidationFailed", "SUCCEEDED"): ("Succeeded", "JobSucceeded", "-"),
    ("ValidationFailed", "FAILED"): ("Failed", "ValidationFailed", "F"),
}


def test_table_covers_every_pair() -> None:
    assert set(EXPECTED) == {(d, j) for d in DEPLOYMENT_STATUSES for j in JOB_STATUSES}


@pytest.mark.parametrize(
    ("dep", "job"), sorted(EXPECTED), ids=[f"{d or '-'}/{j or '-'}" for d, j in sorted(EXPECTED)]
)
def test_mapping(dep: str, job: str) -> None:
    phase, reason, outcome = EXPECTED[(dep, job)]
    state = map_rayjob_status(
        {"jobDeploymentStatus": dep, "jobStatus": job}, suspend_requested=False
    )
    assert (state.phase.value, state.reason.value) == (phase, reason)
    assert state.attempt_failed == (outcome != "-")
    assert state.retryable == (outcome == "R")
    assert state.ready == (phase == "Running")


@pytest.mark.parametrize("job", [j for j in JOB_STATUSES if j != "SUCCEEDED"])
def test_user_suspension_is_suspended_whatever_the_stale_job_status(job: str) -> None:
    for dep, reason in (("Suspending", "Suspending"), ("Suspended", "Suspended")):
        state = map_rayjob_status(
            {"jobDeploymentStatus": dep, "jobStatus": job}, suspend_requested=True
        )
        assert (state.phase, state.reason.value, state.attempt_failed) == (
            Phase.SUSPENDED,
            reason,
            False,
        )


def test_missing_status_is_starting() -> None:
    assert map_rayjob_status(None, suspend_requested=False).phase == Phase.PENDING
    assert map_rayjob_status({}, suspend_requested=True).phase == Phase.PENDING


def test_messages_carry_kuberays_reason_and_the_disagreement() -> None:
    state = map_rayjob_status(
        {
            "jobDeploymentStatus": "Failed",
            "jobStatus": "RUNNING",
            "reason": "DeadlineExceeded",
            "message": "took 2h",
        },
        suspend_requested=False,
    )
    assert "DeadlineExceeded: took 2h" in state.message and "stale" in state.message
    ok = map_rayjob_status(
        {
            "jobDeploymentStatus": "Failed",
            "jobStatus": "SUCCEEDED",
            "reason": "JobDeploymentStatusTransitionGracePeriodExceeded",
        },
        suspend_requested=False,
    )
    assert ok.phase == Phase.SUCCEEDED and "GracePeriodExceeded" in ok.message
    lagging = map_rayjob_status(
        {"jobDeploymentStatus": "Running", "jobStatus": "FAILED"}, suspend_requested=False
    )
    assert "KubeRay still reports Running" in lagging.message


def test_unrecognised_status_is_reported_not_guessed() -> None:
    state = map_rayjob_status(
        {"jobDeploymentStatus": "Exploded", "jobStatus": "RUNNING"}, suspend_requested=False
    )
    assert state.phase == Phase.PENDING and "Exploded" in state.message


def _by_type(conds: list[dict[str, str]]) -> dict[str, str]:
    return {c["type"]: c["status"] for c in conds}


def test_conditions_follow_the_phase() -> None:
    running = map_rayjob_status(
        {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"}, suspend_requested=False
    )
    assert _by_type(conditions_for(running, final_failure=False)) == {
        "Ready": "True",
        "Running": "True",
        "Succeeded": "False",
        "Failed": "False",
        "Suspended": "False",
    }
    done = map_rayjob_status(
        {"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"}, suspend_requested=False
    )
    assert _by_type(conditions_for(done, final_failure=False))["Succeeded"] == "True"
    failed = map_rayjob_status(
        {"jobDeploymentStatus": "Failed", "jobStatus": "FAILED"}, suspend_requested=False
    )
    assert _by_type(conditions_for(failed, final_failure=True))["Failed"] == "True"
    # A failed attempt that will be retried is not a Failed resource.
    assert _by_type(conditions_for(failed, final_failure=False))["Failed"] == "False"
    susp = map_rayjob_status({"jobDeploymentStatus": "Suspended"}, suspend_requested=True)
    conds = {c["type"]: c for c in conditions_for(susp, final_failure=False)}
    assert conds["Suspended"]["status"] == "True" and conds["Suspended"]["reason"] == "Suspended"
    assert all(c["reason"] and isinstance(c["message"], str) for c in conds.values())


def test_merge_keeps_transition_time_while_status_is_unchanged() -> None:
    old = [
        {
            "type": "Running",
            "status": "True",
            "reason": "JobPending",
            "message": "",
            "lastTransitionTime": "T0",
        }
    ]
    same = [{"type": "Running", "status": "True", "reason": "JobRunning", "message": "training"}]
    merged = merge_conditions(old, same, now="T1", generation=3)
    assert merged[0]["lastTransitionTime"] == "T0" and merged[0]["reason"] == "JobRunning"
    assert merged[0]["observedGeneration"] == 3
    flipped = merge_conditions(old, [dict(same[0], status="False")], now="T2", generation=None)
    assert flipped[0]["lastTransitionTime"] == "T2"
    extra = merge_conditions(
        old,
        [{"type": "Ready", "status": "True", "reason": "ClusterReady", "message": ""}],
        now="T3",
        generation=None,
    )
    assert [c["type"] for c in extra] == ["Ready", "Running"]


RAY_FAILED = (
    "Job entrypoint command failed with exit code {code}, last available logs "
    "(truncated to 20,000 chars):\n[whisperft] loading\n{tail}"
)


def test_bad_input_exit_status_is_not_retried_and_names_the_error() -> None:
    msg = RAY_FAILED.format(
        code=2, tail="error: spec.dataset.path: /data/cv/sw: data path does not exist\n"
    )
    state = map_rayjob_status(
        {"jobDeploymentStatus": "Failed", "jobStatus": "FAILED", "message": msg},
        suspend_requested=False,
    )
    assert (state.phase, state.reason.value) == (Phase.FAILED, "BadInput")
    assert state.attempt_failed and not state.retryable
    assert state.message.endswith("spec.dataset.path: /data/cv/sw: data path does not exist")
    assert "Job entrypoint" not in state.message


@pytest.mark.parametrize("code", [1, 137, 20])
def test_other_exit_statuses_stay_retryable(code: int) -> None:
    msg = RAY_FAILED.format(code=code, tail="error: something\nRuntimeError: boom\n")
    state = map_rayjob_status(
        {"jobDeploymentStatus": "Failed", "jobStatus": "FAILED", "message": msg},
        suspend_requested=False,
    )
    assert (state.reason.value, state.retryable) == ("JobFailed", True)
