"""RayJob status -> WhisperFineTune phase and conditions (pure, table-tested).

KubeRay reports two fields that users see disagree: `jobDeploymentStatus`
(KubeRay's view of the cluster + submitter) and `jobStatus` (Ray's view of the
job, polled from the dashboard). Each disagreement is decided explicitly here:

* The job's own terminal status wins over a lagging deployment status:
  SUCCEEDED is success whatever the deployment says (the model and results
  are on the claim; a deployment `Failed` after that is a cleanup/deadline
  problem, recorded in the message); FAILED/STOPPED while the deployment still
  says Running/Initializing is a failed attempt now, not after KubeRay catches up.
* A failed deployment wins over a non-terminal job status: RUNNING/PENDING
  with deployment `Failed` is stale (the cluster is gone), so the attempt failed.
* `Complete` without a terminal job status means the result was lost (the
  cluster is torn down); the attempt failed and may be retried, resuming from
  the checkpoint.
* RUNNING while the deployment still says Initializing: Ray is the witness
  that the cluster is up, so the phase is Running.
* Suspending/Suspended: the cluster is being deleted, so a job status other
  than SUCCEEDED is stale; without a suspend request it is Kueue holding the
  job in its queue (Pending/Queued), not a user suspension.
* `ValidationFailed` and STOPPED are not retried: a retry would fail the same
  way, or undo a deliberate stop. Nor is a job whose entrypoint exited with
  status 2: `whisperft train` exits 2 only for bad input (data, model,
  language, a value), which no retry on GPUs fixes; its `error:` line is the message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from whisperft.operator.api.phase import ConditionStatus, ConditionType, Phase, Reason

JOB_STATUSES = ("", "NEW", "PENDING", "RUNNING", "STOPPED", "SUCCEEDED", "FAILED")
DEPLOYMENT_STATUSES = (
    "",
    "New",
    "Initializing",
    "Waiting",
    "Running",
    "Retrying",
    "Suspending",
    "Suspended",
    "Complete",
    "Failed",
    "ValidationFailed",
)
_STARTING = {"", "New", "Initializing", "Waiting", "Retrying"}


@dataclass(frozen=True)
class AttemptState:
    """What one attempt's RayJob says, in our terms."""

    phase: Phase
    reason: Reason
    message: str
    ready: bool = False  # the Ray cluster is up
    attempt_failed: bool = False  # the attempt is over and did not succeed
    retryable: bool = False  # a new attempt may fix it (resuming from the checkpoint)

    @property
    def terminal(self) -> bool:
        return self.phase.is_terminal or self.attempt_failed


# Ray's message for a failed entrypoint: "Job entrypoint command failed with exit code 2, ..."
_EXIT_CODE = re.compile(r"failed with exit code (\d+)")
BAD_INPUT_EXIT_CODE = 2  # trainer/cli_train.py


def bad_input_error(message: str) -> str | None:
    """The trainer's `error:` line when its entrypoint exited with the bad-input status."""
    m = _EXIT_CODE.search(message)
    if m is None or int(m.group(1)) != BAD_INPUT_EXIT_CODE:
        return None
    errors = [ln.strip() for ln in message.splitlines() if ln.strip().startswith("error: ")]
    return errors[-1].removeprefix("error: ") if errors else "the trainer refused its input"


def _detail(raw: dict[str, Any]) -> str:
    parts = [raw.get("reason") or "", raw.get("message") or ""]
    return ": ".join(p for p in parts if p)


def map_rayjob_status(raw: dict[str, Any] | None, *, suspend_requested: bool) -> AttemptState:
    """Map a RayJob's `.status` (None: not created/observed yet) to an AttemptState."""
    raw = raw or {}
    dep = raw.get("jobDeploymentStatus") or ""
    job = (raw.get("jobStatus") or "").upper()
    detail = _detail(raw)

    def failed(reason: Reason, text: str, retryable: bool = True) -> AttemptState:
        msg = f"{text} ({detail})" if detail else text
        return AttemptState(Phase.FAILED, reason, msg, attempt_failed=True, retryable=retryable)

    if job == "SUCCEEDED":
        msg = "training job succeeded"
        if dep == "Failed":
            msg += f"; KubeRay then reported the deployment Failed ({detail or 'no reason given'})"
        return AttemptState(Phase.SUCCEEDED, Reason.JOB_SUCCEEDED, msg)
    if dep == "ValidationFailed":
        return failed(Reason.VALIDATION_FAILED, "KubeRay refused the RayJob", retryable=False)
    if dep in ("Suspending", "Suspended"):
        # Suspension tears the cluster down, so whatever jobStatus says is stale.
        if not suspend_requested:
            return AttemptState(
                Phase.PENDING,
                Reason.QUEUED,
                "RayJob suspended by its queue (Kueue): waiting for admission",
            )
        if dep == "Suspended":
            return AttemptState(
                Phase.SUSPENDED, Reason.SUSPENDED, "suspended: Ray cluster deleted, GPUs released"
            )
        return AttemptState(
            Phase.SUSPENDED, Reason.SUSPENDING, "suspending: deleting the Ray cluster"
        )
    if job == "STOPPED":
        return failed(Reason.JOB_STOPPED, "the Ray job was stopped", retryable=False)
    if job == "FAILED" and (bad := bad_input_error(raw.get("message") or "")):
        return AttemptState(
            Phase.FAILED,
            Reason.BAD_INPUT,
            f"the trainer refused its input (not retried): {bad}",
            attempt_failed=True,
        )
    if job == "FAILED":
        text = "the training job failed"
        if dep not in ("Failed", "Complete"):
            text += f" (KubeRay still reports {dep or 'no deployment status'})"
        return failed(Reason.JOB_FAILED, text)
    if dep == "Failed":
        text = "the RayJob deployment failed"
        if job in ("RUNNING", "PENDING", "NEW"):
            text += f" while the job status still read {job} (stale: the cluster is gone)"
        return failed(Reason.DEPLOYMENT_FAILED, text)
    if dep == "Complete":
        return failed(
            Reason.JOB_STATUS_LOST,
            f"the RayJob completed without a final job status (jobStatus {job or 'empty'})",
        )
    if dep == "Running":
        if job == "RUNNING":
            return AttemptState(Phase.RUNNING, Reason.JOB_RUNNING, "training", ready=True)
        return AttemptState(
            Phase.RUNNING, Reason.JOB_PENDING, "Ray cluster ready; job submitted", ready=True
        )
    if dep in _STARTING:
        if job == "RUNNING":
            return AttemptState(
                Phase.RUNNING,
                Reason.JOB_RUNNING,
                f"training (KubeRay still reports {dep or 'no deployment status'})",
                ready=True,
            )
        if dep == "Retrying":
            return AttemptState(Phase.PENDING, Reason.RETRYING, "KubeRay is retrying the RayJob")
        return AttemptState(
            Phase.PENDING,
            Reason.CLUSTER_STARTING,
            "Ray cluster starting" + (f" ({detail})" if detail else ""),
        )
    # A status this version does not know: say so rather than guess.
    return AttemptState(
        Phase.PENDING, Reason.CLUSTER_STARTING, f"unrecognised RayJob status {dep!r}/{job!r}"
    )


def make_condition(t: ConditionType, ok: bool, reason: Reason, message: str) -> dict[str, str]:
    """One status condition (True/False), as written into status.conditions."""
    return {
        "type": t.value,
        "status": (ConditionStatus.TRUE if ok else ConditionStatus.FALSE).value,
        "reason": reason.value,
        "message": message,
    }


def conditions_for(state: AttemptState, *, final_failure: bool) -> list[dict[str, str]]:
    """The five lifecycle conditions implied by one attempt's state.

    `final_failure`: the attempt failed and no restart will follow.
    """
    m = state.message
    phase = state.phase
    running = phase == Phase.RUNNING
    out = [
        make_condition(
            ConditionType.READY,
            state.ready,
            Reason.CLUSTER_READY if state.ready else state.reason,
            m,
        ),
        make_condition(ConditionType.RUNNING, running, state.reason, m),
        make_condition(ConditionType.SUCCEEDED, phase == Phase.SUCCEEDED, state.reason, m),
        make_condition(ConditionType.FAILED, final_failure, state.reason, m),
        make_condition(
            ConditionType.SUSPENDED,
            phase == Phase.SUSPENDED,
            state.reason if phase == Phase.SUSPENDED else Reason.NOT_SUSPENDED,
            m if phase == Phase.SUSPENDED else "",
        ),
    ]
    return out


def merge_conditions(
    old: list[dict[str, Any]], new: list[dict[str, Any]], *, now: str, generation: int | None
) -> list[dict[str, Any]]:
    """Replace conditions by type, keeping lastTransitionTime when status is unchanged."""
    by_type = {c["type"]: dict(c) for c in old}
    for cond in new:
        prev = by_type.get(cond["type"])
        merged = dict(cond)
        same = prev is not None and prev.get("status") == cond["status"]
        merged["lastTransitionTime"] = prev.get("lastTransitionTime", now) if same and prev else now
        if generation is not None:
            merged["observedGeneration"] = generation
        by_type[cond["type"]] = merged
    order = [t.value for t in ConditionType]
    return sorted(
        by_type.values(), key=lambda c: order.index(c["type"]) if c["type"] in order else len(order)
    )
