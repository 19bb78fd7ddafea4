"""The reconcile's decision: a pure function of one View (and, for a spec edit,
the old and new spec) returning the actions to take and exactly one status
write. `reconcile.py` only carries it out; `tests/unit/test_reconcile_*.py`
drive it through sequences against an in-memory API.

Rules that keep the status true under faults:
- Children are named from the attempt (`<name>-<attempt>`), and only RayJobs
  whose controller is this resource are ever suspended or deleted.
- A new attempt (a retry or a resume with changes) is created first; the
  status names it, counts the restart and the old RayJob is deleted only once
  it exists. A create that fails changes nothing but a condition, so transient
  API errors never spend a restart.
- A RayJob of a newer attempt than the status names (a crash between create
  and status write) is adopted, never duplicated by recreating the old one.
- The trainer's progress belongs to its attempt: a new attempt clears it.
- Every message is bounded (messages.bounded), so no status write is refused.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from whisperft.operator import spec_change
from whisperft.operator.api.phase import ConditionType, Phase, Reason
from whisperft.operator.api.resource import SpecError, parse_spec
from whisperft.operator.api.spec import NAME_MAX_LENGTH, NAME_PATTERN, WhisperFineTuneSpec
from whisperft.operator.api.status import Plan as PlanStatus
from whisperft.operator.decisions import next_step, progress_text, status_delta
from whisperft.operator.messages import EVENT_MESSAGE_LIMIT, bounded
from whisperft.operator.planning.memory import Plan
from whisperft.operator.render.bundle import Rendered
from whisperft.operator.render.meta import Meta, checkpoint_path, rayjob_name
from whisperft.operator.render.storage import claim_name
from whisperft.operator.spec_change import Action as EditAction
from whisperft.operator.startup import DEFAULT_STARTUP_DEADLINE_SECONDS
from whisperft.operator.status_map import (
    AttemptState,
    conditions_for,
    make_condition,
    map_rayjob_status,
    merge_conditions,
)
from whisperft.operator.views import RayJobView, View

Cause = Literal["first", "recreate", "retry", "resume", "preempted"]
Render = Callable[[WhisperFineTuneSpec, Meta, int], Rendered]


# -- actions --------------------------------------------------------------------------
@dataclass(frozen=True)
class CreateAttempt:
    attempt: int
    children: tuple[dict[str, Any], ...]
    cause: Cause


@dataclass(frozen=True)
class DeleteRayJob:
    name: str
    uid: str


@dataclass(frozen=True)
class SuspendRayJob:
    name: str
    uid: str
    suspend: bool


@dataclass(frozen=True)
class Emit:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True)
class ReleaseClaim:
    """Drop the fine-tune's owner reference from its claim, so deleting the
    fine-tune leaves the claim (and the model on it) to the user."""

    name: str


Action = CreateAttempt | DeleteRayJob | SuspendRayJob | Emit | ReleaseClaim


def keeps_claim_on_success(spec: WhisperFineTuneSpec) -> bool:
    """The operator created the claim, keepClaim is unset and the model has no other home."""
    ck = spec.checkpoints
    return ck.claim_name is None and ck.keep_claim is None and spec.output.location is None


@dataclass
class Decision:
    """What one pass does: actions in order, then one status merge patch.

    When a CreateAttempt fails, the actions after it are skipped and
    `create_failed(view, action, error)` gives the status write instead.
    """

    actions: list[Action] = field(default_factory=list)
    status: dict[str, Any] = field(default_factory=dict)
    phase_changed_to: Phase | None = None  # for the transitions metric


@dataclass(frozen=True)
class SpecEdit:
    old: dict[str, Any]
    new: dict[str, Any]


# -- helpers ----------------------------------------------------------------------------
def _spec(view: View) -> tuple[WhisperFineTuneSpec | None, str | None]:
    if len(view.name) > NAME_MAX_LENGTH or not re.match(NAME_PATTERN, view.name):
        return None, (
            f"metadata.name {view.name!r} must be a DNS-1035 label of at most {NAME_MAX_LENGTH} "
            "characters (KubeRay names Services after it)"
        )
    try:
        return parse_spec(view.spec, source="spec"), None
    except SpecError as exc:
        return None, str(exc)


def _meta(view: View) -> Meta:
    return Meta(view.name, view.namespace, view.uid)


def _plan_status(plan: Plan, train_workers: int) -> dict[str, Any]:
    est, s = plan.estimate, plan.strategy
    return PlanStatus(
        zero_stage=plan.stage,
        offload_optimizer=plan.offload_optimizer,
        offload_params=plan.offload_params,
        estimated_gpu_memory_gib=round(est.upper_gib, 1) if est else None,
        gpu_memory_gib=plan.gpu_memory_gib,
        train_workers=train_workers,
        fits=plan.verdict in ("fits", "cpu-only", "unknown-model"),
        notes=[bounded(n, 1024) for n in plan.notes[:16]],
        micro_batch=s.micro_batch if s else None,
        grad_accum=s.grad_accum if s else None,
        gradient_checkpointing=s.gradient_checkpointing if s else None,
        lora=s.lora if s else None,
        reasons=[bounded(r, 1024) for r in plan.reasons[:16]],
    ).to_wire()


def _write(
    view: View,
    now: str,
    *,
    phase: Phase | None = None,
    message: str | None = None,
    conditions: list[dict[str, Any]] | None = None,
    extra: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], Phase | None]:
    """The status merge patch: only what changes, every message bounded."""
    current = view.raw_status
    wanted: dict[str, Any] = dict(extra or {})
    if phase is not None:
        wanted["phase"] = phase.value
    if message is not None:
        wanted["message"] = bounded(message)
    if conditions:
        bounded_conds = [dict(c, message=bounded(c.get("message", ""))) for c in conditions]
        merged = merge_conditions(
            current.get("conditions") or [], bounded_conds, now=now, generation=view.generation
        )
        if [dict(c, lastTransitionTime=None) for c in merged] != [
            dict(c, lastTransitionTime=None) for c in current.get("conditions") or []
        ]:
            wanted["conditions"] = merged
    if view.generation is not None and (phase is not None or conditions):
        wanted["observedGeneration"] = view.generation
    patch = status_delta(current, wanted)
    moved = phase if phase is not None and current.get("phase") != phase.value else None
    return patch, moved


def _transition_event(view: View, phase: Phase | None, message: str) -> list[Action]:
    if phase is None:
        return []
    kind: Literal["Normal", "Warning"] = "Warning" if phase == Phase.FAILED else "Normal"
    return [Emit(kind, phase.value, bounded(message, EVENT_MESSAGE_LIMIT))]


def _decision(
    view: View,
    now: str,
    actions: list[Action],
    **write: Any,
) -> Decision:
    patch, moved = _write(view, now, **write)
    events = _transition_event(view, moved, write.get("message") or "")
    return Decision(actions=[*actions, *events], status=patch, phase_changed_to=moved)


def refuse(view: View, now: str, reason: Reason, message: str) -> Decision:
    """Nothing may be created: say why in Planned + Failed, once."""
    conds = [
        make_condition(ConditionType.PLANNED, False, reason, message),
        make_condition(ConditionType.FAILED, True, reason, message),
        make_condition(ConditionType.READY, False, reason, message),
        make_condition(ConditionType.RUNNING, False, reason, message),
    ]
    return _decision(view, now, [], phase=Phase.FAILED, message=message, conditions=conds)


# -- starting an attempt --------------------------------------------------------------------
def start(
    view: View,
    spec: WhisperFineTuneSpec,
    attempt: int,
    cause: Cause,
    render: Render,
    now: str,
    replaces: RayJobView | None = None,
) -> Decision:
    rendered = render(spec, _meta(view), attempt)
    if rendered.problem is not None:
        return refuse(view, now, rendered.problem.reason, rendered.problem.message)
    taken = view.claim_taken_by(spec.checkpoints.claim_name)
    if taken is not None:
        message = (
            f"spec.checkpoints.claimName: claim {spec.checkpoints.claim_name!r} holds the run "
            f"directory of fine-tune {taken.name!r}; a claim is a trust boundary (whoever mounts "
            "it can read and change every run on it), so name a claim of your own or set "
            "checkpoints.size"
        )
        return refuse(view, now, Reason.CLAIM_IN_USE, message)
    job = rayjob_name(view.name, attempt)
    plan = rendered.resolution.plan
    st = view.status
    resharded = _worker_change_problem(
        view, rendered.config.runtime.workers if rendered.config else None
    )
    if resharded is not None and cause != "recreate":
        return refuse(view, now, Reason.INVALID_SPEC, resharded)
    restarts = (st.restarts or 0) + (1 if cause == "retry" else 0)
    preemptions = (st.preemptions or 0) + (1 if cause == "preempted" else 0)
    conds = [
        make_condition(
            ConditionType.PLANNED,
            True,
            Reason.PLAN_FITS,
            f"ZeRO stage {plan.stage}; " + "; ".join(plan.notes),
        ),
        make_condition(ConditionType.UPDATE_PENDING, False, Reason.UP_TO_DATE, ""),
    ]
    same_attempt = cause == "recreate" and st.phase in (Phase.RUNNING, Phase.SUSPENDED)
    extra: dict[str, Any] = {
        "attempt": attempt,
        "restarts": restarts,
        **({"preemptions": preemptions} if preemptions else {}),
        "rayJobName": job,
        "checkpointClaim": claim_name(spec, _meta(view)),
        # A bucket run's checkpoints are in the bucket; the claim is then scratch.
        "checkpointPath": (rendered.config.runtime.checkpoint_uri if rendered.config else None)
        or checkpoint_path(view.name),
        "plan": _plan_status(plan, rendered.config.runtime.workers if rendered.config else 1),
        "startTime": st.start_time or now,
        "createFailures": 0,
        "createFailedAt": None,
    }
    if same_attempt:
        # The RayJob of a live attempt went missing: recreate it without pretending
        # the attempt started over (its phase and progress still hold).
        phase = st.phase
        message = st.message or f"attempt {attempt}: RayJob {job}"
    else:
        phase = Phase.SUSPENDED if spec.suspend else Phase.PENDING
        message = f"attempt {attempt}: RayJob {job}"
        starting = f"attempt {attempt}: Ray cluster starting"
        conds += [
            make_condition(t, False, Reason.CLUSTER_STARTING, starting)
            for t in (
                ConditionType.READY,
                ConditionType.RUNNING,
                ConditionType.SUCCEEDED,
                ConditionType.FAILED,
            )
        ]
        if attempt != st.attempt:
            # The trainer's progress belongs to its attempt.
            extra.update(progress=None, progressText=None, model=None)
            extra.update(rayClusterName=None, dashboardURL=None)
            extra.update(rayJobStatus=None, rayJobDeploymentStatus=None, completionTime=None)
    actions: list[Action] = [CreateAttempt(attempt, tuple(rendered.children), cause)]
    if replaces is not None:
        actions.append(DeleteRayJob(replaces.name, replaces.uid))
    what = {
        "first": "created",
        "recreate": "recreated",
        "retry": f"retrying (restart {restarts})",
        "resume": "resuming with the changed spec",
        "preempted": f"resuming after preemption {preemptions} (no restart spent)",
    }[cause]
    reason = Reason.RETRYING.value if cause == "retry" else "AttemptStarted"
    actions.append(Emit("Normal", reason, f"attempt {attempt}: {what}, RayJob {job}"))
    return _decision(
        view, now, actions, phase=phase, message=message, conditions=conds, extra=extra
    )


# What an HTTP status on create most likely means, added to the condition's message.
_CREATE_HINTS: dict[int, str] = {
    404: "the RayJob API is not served: is KubeRay (>= 1.6) installed?",
    403: "refused by the API server (a ResourceQuota, or RBAC)",
}


def create_failed(
    view: View,
    action: CreateAttempt,
    error: str,
    http_status: int | None,
    now: str,
    *,
    conflict: bool = False,
) -> Decision:
    """A create that failed: a condition now (not only the operator's log), nothing spent.

    Events back off: one on the 1st, 2nd, 4th, 8th ... consecutive failure.
    """
    failures = (view.raw_status.get("createFailures") or 0) + 1
    reason = Reason.NAME_CONFLICT if conflict else Reason.CREATE_FAILED
    hint = _CREATE_HINTS.get(http_status or 0, "")
    message = (
        f"attempt {action.attempt}: could not create its children ({failures} "
        f"{'try' if failures == 1 else 'tries'}): {error}" + (f"; {hint}" if hint else "")
    )
    conds = [make_condition(ConditionType.READY, False, reason, message)]
    actions: list[Action] = []
    if failures & (failures - 1) == 0:
        actions.append(Emit("Warning", reason.value, bounded(message, EVENT_MESSAGE_LIMIT)))
    patch, moved = _write(
        view,
        now,
        message=message,
        conditions=conds,
        extra={"createFailures": failures, "createFailedAt": now},
    )
    return Decision(actions=actions, status=patch, phase_changed_to=moved)


# -- the decision ---------------------------------------------------------------------------
CREATE_BACKOFF_MAX_SECONDS = 300


def create_backoff(view: View, now: str) -> bool:
    """True while a failed create waits before its next try: 10 s, doubling, at most 5 min.

    A refused create (a quota, a terminating namespace, KubeRay missing) is then
    retried without a write, a list and a create on every tick of every resource.
    """
    failures = view.raw_status.get("createFailures") or 0
    since = view.raw_status.get("createFailedAt")
    if not failures or not since:
        return False
    wait = min(CREATE_BACKOFF_MAX_SECONDS, 10 * 2 ** (failures - 1))
    return _seconds(since, now) < wait


def decide(view: View, render: Render, now: str, edit: SpecEdit | None = None) -> Decision:
    if view.deleting:
        return Decision()
    if edit is None and create_backoff(view, now):
        return Decision()
    spec, problem = _spec(view)
    st = view.status
    if edit is not None:
        return _decide_edit(view, spec, problem, edit, render, now)
    if st.phase is not None and st.phase.is_terminal:
        return Decision()  # finished runs get no new children, even after an operator restart
    if problem is not None or spec is None:
        return refuse(view, now, Reason.INVALID_SPEC, problem or "invalid spec")
    if st.attempt is None:
        return start(view, spec, 1, "first", render, now)
    if view.condition(ConditionType.PLANNED.value) == "False":
        return Decision()  # refused: waits for a spec edit
    newer = view.newer_than(st.attempt)
    if newer:
        return _adopt(view, newer[-1], now)
    current = view.rayjob_for(st.attempt)
    if current is None:
        return start(view, spec, st.attempt, "recreate", render, now)
    return _observe(view, spec, current, render, now)


def _adopt(view: View, newest: RayJobView, now: str) -> Decision:
    """A newer attempt exists (the pass that created it stopped before its status write)."""
    st = view.status
    previous = view.rayjob_for(st.attempt)
    failed = (
        previous is not None
        and map_rayjob_status(previous.status, suspend_requested=previous.suspend).attempt_failed
    )
    extra: dict[str, Any] = {
        "attempt": newest.attempt,
        "rayJobName": newest.name,
        "restarts": (st.restarts or 0) + (1 if failed else 0),
        "progress": None,
        "progressText": None,
        "model": None,
    }
    actions: list[Action] = [
        DeleteRayJob(r.name, r.uid) for r in view.rayjobs if r is not newest and not r.deleting
    ]
    return _decision(
        view, now, actions, message=f"attempt {newest.attempt}: RayJob {newest.name}", extra=extra
    )


def _worker_change_problem(view: View, workers: int | None) -> str | None:
    """A new attempt with another number of train workers than the one that wrote the
    run's checkpoints: ZeRO optimizer shards are per rank and DeepSpeed cannot re-split
    them, so the trainer would fail the resume on every restart; refused here instead."""
    st = view.status
    before = st.plan.train_workers if st.plan is not None else None
    if not st.last_checkpoint or workers is None or before is None or before == workers:
        return None
    return (
        f"spec.resources: this run's checkpoints (last: {st.last_checkpoint}) were written by "
        f"{before} train workers, the changed spec needs {workers}; DeepSpeed cannot re-split "
        f"ZeRO optimizer state across another number of workers, so set the workers back to "
        f"{before} (workers x gpusPerWorker), or start a new run under another name"
    )


def _preempted_at(view: View, current: RayJobView) -> int | None:
    """The step the current attempt's trainer saved before being stopped, if it said so."""
    progress = view.raw_status.get("progress") or {}
    if progress.get("attempt") != current.attempt:
        return None  # an earlier attempt's report
    step = progress.get("preemptedAtStep")
    return int(step) if isinstance(step, int) else None


def _progress_extra(view: View) -> dict[str, Any]:
    progress = view.raw_status.get("progress")
    attempt = (progress or {}).get("attempt")
    if attempt is not None and attempt != view.status.attempt:
        return {}  # a report from an earlier attempt's trainer: not this attempt's progress
    text = progress_text(progress)
    return {"progressText": text} if text else {}


def _observe(
    view: View, spec: WhisperFineTuneSpec, current: RayJobView, render: Render, now: str
) -> Decision:
    st = view.status
    state: AttemptState = map_rayjob_status(current.status, suspend_requested=spec.suspend)
    restarts = st.restarts or 0
    step = next_step(state, restarts=restarts, max_restarts=spec.max_restarts)
    preempted = _preempted_at(view, current)
    if state.attempt_failed and state.retryable and preempted is not None:
        decision = start(view, spec, (current.attempt or 1) + 1, "preempted", render, now, current)
        decision.actions.insert(
            0,
            Emit(
                "Normal",
                "Preempted",
                f"attempt {current.attempt}: pods stopped from outside; checkpoint saved at "
                f"step {preempted}",
            ),
        )
        return decision
    if step == "retry":
        decision = start(view, spec, (current.attempt or 1) + 1, "retry", render, now, current)
        failed = f"attempt {current.attempt}: {state.message}"
        decision.actions.insert(
            0, Emit("Warning", "AttemptFailed", bounded(failed, EVENT_MESSAGE_LIMIT))
        )
        return decision
    stuck = _startup_problem(view, spec, current, state, now)
    if stuck is not None:
        return stuck
    raw = current.status
    extra: dict[str, Any] = {
        k: v
        for k, v in {
            "rayClusterName": raw.get("rayClusterName") or st.ray_cluster_name,
            "dashboardURL": raw.get("dashboardURL") or st.dashboard_url,
            "rayJobStatus": raw.get("jobStatus"),
            "rayJobDeploymentStatus": raw.get("jobDeploymentStatus"),
        }.items()
        if v is not None
    }
    extra.update(_progress_extra(view))
    extra["startupProblemSince"] = None
    final = step == "fail"
    conds = conditions_for(state, final_failure=final)
    message = state.message
    if state.phase == Phase.SUCCEEDED:
        message = _success_message(view, state.message)
    if final and state.retryable:
        message = f"{state.message}; no restarts left ({restarts} of {spec.max_restarts} used)"
        conds = [
            dict(c, reason=Reason.RESTARTS_EXHAUSTED.value, message=message)
            if c["type"] == ConditionType.FAILED.value
            else c
            for c in conds
        ]
    if state.phase.is_terminal and not st.completion_time:
        extra["completionTime"] = now
    actions: list[Action] = []
    if state.phase == Phase.SUCCEEDED and keeps_claim_on_success(spec):
        claim = claim_name(spec, _meta(view))
        message = (
            f"{message}; claim {claim} is kept when this WhisperFineTune is deleted (it holds "
            "the only copy of the model: delete the claim once the model is copied out)"
        )
        if st.phase != Phase.SUCCEEDED:
            actions += [
                ReleaseClaim(claim),
                Emit("Normal", "ClaimKept", bounded(message, EVENT_MESSAGE_LIMIT)),
            ]
    return _decision(
        view, now, actions, phase=state.phase, message=message, conditions=conds, extra=extra
    )


def _success_message(view: View, base: str) -> str:
    """What a finished run reached and where its model is, from this attempt's reports."""
    st, parts = view.status, [base]
    p = st.progress
    if p is not None and p.attempt in (None, st.attempt) and p.test_wer_after is not None:
        before = "?" if p.test_wer_before is None else f"{p.test_wer_before:.1%}"
        parts.append(f"test WER {before} -> {p.test_wer_after:.1%}")
    m = st.model
    if m is not None and m.attempt in (None, st.attempt):
        where = f"claim {st.checkpoint_claim}, " if st.checkpoint_claim else ""
        parts.append(f"model (step {m.step}) at {where}{m.path}")
    return "; ".join(parts)


def _seconds(since: str, now: str) -> float:
    def parse(t: str) -> datetime:
        return datetime.fromisoformat(t.replace("Z", "+00:00"))

    return (parse(now) - parse(since)).total_seconds()


def _startup_problem(
    view: View, spec: WhisperFineTuneSpec, current: RayJobView, state: AttemptState, now: str
) -> Decision | None:
    """Pods that say why they cannot start: a condition now, Failed after the deadline."""
    if state.ready or state.phase != Phase.PENDING or spec.suspend:
        return None
    found = [p for p in view.startup_problems if p.attempt in (None, current.attempt)]
    if not found:
        return None
    problem = found[0]
    since = view.status.startup_problem_since or now
    deadline = spec.startup_deadline_seconds or DEFAULT_STARTUP_DEADLINE_SECONDS
    if _seconds(since, now) < deadline:
        conds = [make_condition(ConditionType.READY, False, problem.reason, problem.message)]
        return _decision(
            view,
            now,
            [],
            phase=Phase.PENDING,
            message=problem.message,
            conditions=conds,
            extra={"startupProblemSince": since},
        )
    message = (
        f"the pods could not start within {deadline} s (spec.startupDeadlineSeconds): "
        f"{problem.message}"
    )
    reason = Reason.STARTUP_DEADLINE_EXCEEDED
    conds = [
        make_condition(ConditionType.READY, False, problem.reason, problem.message),
        make_condition(ConditionType.RUNNING, False, reason, message),
        make_condition(ConditionType.FAILED, True, reason, message),
    ]
    # Not retried (a new attempt would meet the same image, pool or claim); its pods
    # and their resource requests are freed now.
    return _decision(
        view,
        now,
        [DeleteRayJob(current.name, current.uid)],
        phase=Phase.FAILED,
        message=message,
        conditions=conds,
        extra={"completionTime": now},
    )


def _decide_edit(
    view: View,
    spec: WhisperFineTuneSpec | None,
    problem: str | None,
    edit: SpecEdit,
    render: Render,
    now: str,
) -> Decision:
    st = view.status
    change = spec_change.decide(edit.old, edit.new, view.raw_status)
    pending = ", ".join(change.pending)
    attempt = st.attempt or 1
    current = view.rayjob_for(st.attempt)
    if change.action is EditAction.RETRY_PLAN:
        if problem is not None or spec is None:
            return refuse(view, now, Reason.INVALID_SPEC, problem or "invalid spec")
        if current is not None:
            # An attempt exists (e.g. suspended, then a resume was refused): the fixed
            # spec is a new attempt on the same checkpoints, not a re-plan of the old one.
            return start(view, spec, attempt + 1, "resume", render, now, replaces=current)
        return start(
            view, spec, attempt, "first" if st.attempt is None else "recreate", render, now
        )
    if change.action is EditAction.IGNORE_FINISHED:
        return Decision(
            actions=[
                Emit("Normal", "SpecChangeIgnored", f"the run has finished; {pending} not applied")
            ]
        )
    if spec is None:
        return refuse(view, now, Reason.INVALID_SPEC, problem or "invalid spec")
    actions: list[Action] = []
    if change.action is EditAction.SUSPEND and current is not None:
        actions += [
            SuspendRayJob(current.name, current.uid, True),
            Emit(
                "Normal",
                "Suspending",
                f"suspending RayJob {current.name}: the Ray cluster is deleted, GPUs freed",
            ),
        ]
    elif change.action is EditAction.NEW_ATTEMPT:
        return start(view, spec, attempt + 1, "resume", render, now, replaces=current)
    elif change.action is EditAction.RESUME and current is not None:
        actions += [
            SuspendRayJob(current.name, current.uid, False),
            Emit("Normal", "Resuming", f"resuming RayJob {current.name} from the last checkpoint"),
        ]
    if not change.report_pending:
        return Decision(actions=actions)
    when = (
        "It applies when the fine-tune is resumed (spec.suspend: false), as a new attempt"
        if edit.new.get("suspend")
        else "It applies when the fine-tune is suspended and resumed (spec.suspend: true, then "
        "false), or at the next restart"
    )
    message = f"{pending} changed; a running attempt cannot take this live. {when}"
    conds = [make_condition(ConditionType.UPDATE_PENDING, True, Reason.SPEC_CHANGED, message)]
    actions.append(Emit("Warning", "UpdatePending", bounded(message, EVENT_MESSAGE_LIMIT)))
    patch, moved = _write(view, now, conditions=conds)
    return Decision(actions=actions, status=patch, phase_changed_to=moved)
