"""What the handlers do, written against plain dicts so each handler stays a few lines.

Every function is idempotent: children have deterministic names and are
created with create-or-get, so a restarted operator (or a retried handler)
converges instead of duplicating.
"""

from __future__ import annotations

import logging
import re
from typing import Any, cast

import kopf
from kubernetes.client.exceptions import ApiException

from whisperft.operator import kube, metrics, spec_change
from whisperft.operator.api.phase import ConditionType, Phase, Reason
from whisperft.operator.api.resource import NAME_PATTERN, SpecError, parse_spec
from whisperft.operator.api.spec import NAME_MAX_LENGTH, WhisperFineTuneSpec
from whisperft.operator.api.status import Plan as PlanStatus
from whisperft.operator.decisions import (
    next_step,
    now_rfc3339,
    progress_text,
    status_delta,
)
from whisperft.operator.planning.memory import Plan
from whisperft.operator.render.bundle import render_attempt
from whisperft.operator.render.meta import Meta, checkpoint_path, rayjob_name
from whisperft.operator.render.storage import claim_name
from whisperft.operator.settings import Settings
from whisperft.operator.spec_change import Action
from whisperft.operator.status_map import (
    AttemptState,
    conditions_for,
    make_condition,
    map_rayjob_status,
    merge_conditions,
)

Body = dict[str, Any]
Logger = logging.Logger | logging.LoggerAdapter[Any]


def _plan_status(plan: Plan, train_workers: int) -> dict[str, Any]:
    est = plan.estimate
    return PlanStatus(
        zero_stage=plan.stage,
        offload_optimizer=plan.offload_optimizer,
        offload_params=plan.offload_params,
        estimated_gpu_memory_gib=round(est.upper_gib, 1) if est else None,
        gpu_memory_gib=plan.gpu_memory_gib,
        train_workers=train_workers,
        fits=plan.verdict in ("fits", "cpu-only", "unknown-model"),
        notes=plan.notes[:16],
    ).to_wire()


def _event(body: Body, kind: str, reason: str, message: str) -> None:
    kopf.event(cast(Any, body), type=kind, reason=reason, message=message[:1024])


def _set_phase(
    body: Body,
    patch: kopf.Patch,
    phase: Phase,
    message: str,
    conditions: list[dict[str, Any]],
    extra: dict[str, Any],
) -> None:
    """Write phase/message/conditions/extra into the status patch (only what changes); event + metrics on a transition."""
    status = body.get("status") or {}
    generation = body.get("metadata", {}).get("generation")
    wanted: dict[str, Any] = {"phase": phase.value, "message": message, **extra}
    if conditions:
        wanted["conditions"] = merge_conditions(
            status.get("conditions") or [], conditions, now=now_rfc3339(), generation=generation
        )
        if [dict(c, lastTransitionTime=None) for c in wanted["conditions"]] == [
            dict(c, lastTransitionTime=None) for c in status.get("conditions") or []
        ]:
            wanted.pop("conditions")
    if generation is not None:
        wanted["observedGeneration"] = generation
    for key, value in status_delta(status, wanted).items():
        patch.status[key] = value
    if status.get("phase") != phase.value:
        metrics.TRANSITIONS.labels(phase=phase.value).inc()
        kind = "Warning" if phase == Phase.FAILED else "Normal"
        _event(body, kind, phase.value, message)
    uid = body.get("metadata", {}).get("uid")
    if uid:
        metrics.observe_phase(uid, phase)


def _refuse(body: Body, patch: kopf.Patch, reason: Reason, message: str) -> None:
    """Nothing may be created: say why in Planned + Failed, once, without a crash loop."""
    conds = [
        make_condition(ConditionType.PLANNED, False, reason, message),
        make_condition(ConditionType.FAILED, True, reason, message),
        make_condition(ConditionType.READY, False, reason, message),
        make_condition(ConditionType.RUNNING, False, reason, message),
    ]
    _set_phase(body, patch, Phase.FAILED, message, conds, {})


def _spec_or_refuse(body: Body, patch: kopf.Patch) -> WhisperFineTuneSpec | None:
    meta = body["metadata"]
    name = meta["name"]
    if len(name) > NAME_MAX_LENGTH or not re.match(NAME_PATTERN, name):
        _refuse(
            body,
            patch,
            Reason.INVALID_SPEC,
            f"metadata.name {name!r} must be a DNS-1035 label of at most {NAME_MAX_LENGTH} characters "
            "(KubeRay names Services after it)",
        )
        return None
    try:
        return parse_spec(body.get("spec") or {}, source="spec")
    except SpecError as exc:
        _refuse(body, patch, Reason.INVALID_SPEC, str(exc))
        return None


def start_attempt(
    body: Body, patch: kopf.Patch, settings: Settings, attempt: int, logger: Logger
) -> bool:
    """Create (or find) every child of `attempt`; False when the spec/plan/pool refuses."""
    spec = _spec_or_refuse(body, patch)
    if spec is None:
        return False
    meta = Meta.from_body(body)
    rendered = render_attempt(spec, meta, settings, attempt)
    if rendered.problem is not None:
        _refuse(body, patch, rendered.problem.reason, rendered.problem.message)
        return False
    created_job = False
    for child in rendered.children:
        try:
            created = kube.create_or_get(child, settings.field_manager)
        except kube.OwnershipConflict as exc:
            _event(body, "Warning", "NameConflict", str(exc))
            raise kopf.TemporaryError(str(exc), delay=30) from None
        except ApiException as exc:
            raise kopf.TemporaryError(
                f"creating {child['kind']} {child['metadata']['name']}: {exc.status} {exc.reason}",
                delay=10,
            ) from None
        if created and child["kind"] == "RayJob":
            created_job = True
    job = rayjob_name(meta.name, attempt)
    status = body.get("status") or {}
    if created_job:
        metrics.ATTEMPTS.inc()
        if attempt == 1:
            metrics.observe_create_latency(body.get("metadata", {}).get("creationTimestamp"))
        _event(body, "Normal", "AttemptStarted", f"attempt {attempt}: created RayJob {job}")
        logger.info("attempt %d: created RayJob %s", attempt, job)
    plan = rendered.resolution.plan
    plan_msg = f"ZeRO stage {plan.stage}; " + "; ".join(plan.notes)
    conds = [
        make_condition(ConditionType.PLANNED, True, Reason.PLAN_FITS, plan_msg),
        make_condition(ConditionType.UPDATE_PENDING, False, Reason.UP_TO_DATE, ""),
    ]
    extra = {
        "attempt": attempt,
        "rayJobName": job,
        "checkpointClaim": claim_name(spec, meta),
        "checkpointPath": checkpoint_path(meta.name),
        "plan": _plan_status(plan, rendered.config.runtime.workers if rendered.config else 1),
        "startTime": status.get("startTime") or now_rfc3339(),
    }
    phase = Phase.SUSPENDED if spec.suspend else Phase.PENDING
    keep = (
        status.get("phase") in (Phase.RUNNING.value, Phase.SUSPENDED.value)
        and status.get("attempt") == attempt
    )
    if keep:  # a resumed operator must not flip a running attempt back to Pending
        phase = Phase(status["phase"])
    else:  # a new attempt: whatever the last one (or a refused plan) said no longer holds
        starting = f"attempt {attempt}: Ray cluster starting"
        conds += [
            make_condition(ConditionType.READY, False, Reason.CLUSTER_STARTING, starting),
            make_condition(ConditionType.RUNNING, False, Reason.CLUSTER_STARTING, starting),
            make_condition(ConditionType.SUCCEEDED, False, Reason.CLUSTER_STARTING, starting),
            make_condition(ConditionType.FAILED, False, Reason.CLUSTER_STARTING, starting),
        ]
    _set_phase(
        body,
        patch,
        phase,
        (status.get("message") or "") if keep else f"attempt {attempt}: RayJob {job}",
        conds,
        extra,
    )
    return True


def _count_finished(body: Body) -> bool:
    """True for a Succeeded/Failed resource, which is then only counted in the phase gauge
    (a restarted operator meets finished resources without a transition)."""
    phase = (body.get("status") or {}).get("phase")
    if phase not in (Phase.SUCCEEDED.value, Phase.FAILED.value):
        return False
    uid = body.get("metadata", {}).get("uid")
    if uid:
        metrics.observe_phase(uid, Phase(phase))
    return True


def on_create(body: Body, patch: kopf.Patch, settings: Settings, logger: Logger) -> None:
    status = body.get("status") or {}
    if _count_finished(body):
        return  # finished runs get no new children, even after an operator restart
    start_attempt(body, patch, settings, int(status.get("attempt") or 1), logger)


def _observed(rayjob: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if rayjob is None else (rayjob.get("status") or {})


def sync(
    body: Body,
    patch: kopf.Patch,
    settings: Settings,
    rayjob: dict[str, Any] | None,
    logger: Logger,
) -> None:
    """Map the current attempt's RayJob onto our status; retry or fail a failed attempt."""
    status = body.get("status") or {}
    text = progress_text(status.get("progress"))
    if text and text != status.get("progressText"):
        patch.status["progressText"] = text
    if _count_finished(body) or not status.get("rayJobName"):
        return
    spec = body.get("spec") or {}
    meta = Meta.from_body(body)
    attempt = int(status.get("attempt") or 1)
    if rayjob is None:
        rayjob = kube.get_rayjob(meta.namespace, status["rayJobName"])
    if rayjob is None:
        logger.warning("RayJob %s is missing; recreating attempt %d", status["rayJobName"], attempt)
        start_attempt(body, patch, settings, attempt, logger)
        return
    state = map_rayjob_status(_observed(rayjob), suspend_requested=bool(spec.get("suspend")))
    restarts = int(status.get("restarts") or 0)
    step = next_step(state, restarts=restarts, max_restarts=int(spec.get("maxRestarts", 2)))
    raw = _observed(rayjob) or {}
    extra: dict[str, Any] = {
        "rayClusterName": raw.get("rayClusterName") or status.get("rayClusterName"),
        "dashboardURL": raw.get("dashboardURL") or status.get("dashboardURL"),
        "rayJobStatus": raw.get("jobStatus"),
        "rayJobDeploymentStatus": raw.get("jobDeploymentStatus"),
    }
    extra = {k: v for k, v in extra.items() if v is not None}
    if step == "retry":
        _event(body, "Warning", "AttemptFailed", f"attempt {attempt}: {state.message}")
        patch.status["restarts"] = restarts + 1
        body = {**body, "status": {**status, "restarts": restarts + 1}}
        _event(
            body,
            "Normal",
            Reason.RETRYING.value,
            f"starting attempt {attempt + 1} (restart {restarts + 1})",
        )
        # New attempt first, then free the failed one's GPUs: a crash in between
        # converges on the next sync instead of losing the attempt.
        if start_attempt(body, patch, settings, attempt + 1, logger):
            kube.delete_rayjob(meta.namespace, status["rayJobName"])
        return
    final = step == "fail"
    conds = conditions_for(state, final_failure=final)
    message = state.message
    if final and state.retryable:
        message = (
            f"{state.message}; no restarts left ({restarts} of {spec.get('maxRestarts', 2)} used)"
        )
        conds = [
            dict(c, reason=Reason.RESTARTS_EXHAUSTED.value, message=message)
            if c["type"] == ConditionType.FAILED.value
            else c
            for c in conds
        ]
    if state.phase.is_terminal and not status.get("completionTime"):
        extra["completionTime"] = now_rfc3339()
    _set_phase(body, patch, state.phase, message, conds, extra)


def on_spec_change(
    body: Body,
    patch: kopf.Patch,
    settings: Settings,
    old: dict[str, Any] | None,
    new: dict[str, Any] | None,
    logger: Logger,
) -> None:
    """Apply what can be applied live (suspend); report the rest in UpdatePending."""
    old, new = old or {}, new or {}
    status = body.get("status") or {}
    meta = Meta.from_body(body)
    job = status.get("rayJobName")
    attempt = int(status.get("attempt") or 1)
    change = spec_change.decide(old, new, status)
    pending = ", ".join(change.pending)
    if change.action is Action.RETRY_PLAN:
        # Nothing was ever created (bad spec, unknown pool, plan refused): try again with the new spec.
        start_attempt(body, patch, settings, attempt, logger)
        return
    if change.action is Action.IGNORE_FINISHED:
        _event(body, "Normal", "SpecChangeIgnored", f"the run has finished; {pending} not applied")
        return
    if change.action is Action.SUSPEND:
        kube.set_rayjob_suspend(meta.namespace, job, True)
        _event(
            body,
            "Normal",
            "Suspending",
            f"suspending RayJob {job}: the Ray cluster is deleted, GPUs freed",
        )
    elif change.action is Action.NEW_ATTEMPT:
        # Resuming with changes that need a new cluster: a fresh attempt, same checkpoint path.
        _event(
            body, "Normal", "Resuming", f"resuming as attempt {attempt + 1} with the changed spec"
        )
        if start_attempt(body, patch, settings, attempt + 1, logger):
            kube.delete_rayjob(meta.namespace, job)
        return
    elif change.action is Action.RESUME:
        kube.set_rayjob_suspend(meta.namespace, job, False)
        _event(body, "Normal", "Resuming", f"resuming RayJob {job} from the last checkpoint")
    if change.report_pending:
        if new.get("suspend"):
            when = (
                "It applies when the fine-tune is resumed (spec.suspend: false), as a new attempt"
            )
        else:
            when = (
                "It applies when the fine-tune is suspended and resumed (spec.suspend: true, then false), "
                "or at the next restart"
            )
        message = f"{pending} changed; a running attempt cannot take this live. {when}"
        conds = [make_condition(ConditionType.UPDATE_PENDING, True, Reason.SPEC_CHANGED, message)]
        generation = body.get("metadata", {}).get("generation")
        patch.status["conditions"] = merge_conditions(
            status.get("conditions") or [], conds, now=now_rfc3339(), generation=generation
        )
        _event(body, "Warning", "UpdatePending", message)


def on_delete(body: Body, logger: Logger) -> None:
    """Free the GPUs at once; garbage collection removes the other owned children.

    A claim the user brought was never owned, and a kept claim has no owner
    reference, so both survive.
    """
    status = body.get("status") or {}
    meta = Meta.from_body(body)
    if status.get("rayJobName"):
        kube.delete_rayjob(meta.namespace, status["rayJobName"])
    uid = body.get("metadata", {}).get("uid")
    if uid:
        metrics.observe_phase(uid, None)
    logger.info("deleted; children are garbage-collected through owner references")


__all__ = ["AttemptState", "on_create", "on_delete", "on_spec_change", "start_attempt", "sync"]
