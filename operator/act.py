"""Carrying out a Decision: the actions in order, then its one status write.

The API is a small protocol (`ClusterApi`): `kube.RealApi` talks to the
cluster, and the unit tests use an in-memory fake with injected faults. The
status write carries the resourceVersion the decision was made from, so a
write based on a stale read is refused (409) and the pass is decided again
from a fresh read, whoever changed the object in between (another handler,
another replica, the trainer).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from whisperft.operator import decide as d
from whisperft.operator import metrics
from whisperft.operator.api.phase import Phase
from whisperft.operator.render.bundle import render_attempt
from whisperft.operator.render.meta import Meta
from whisperft.operator.settings import Settings
from whisperft.operator.startup import StartupProblem
from whisperft.operator.views import ClaimUser, View, claim_users

log = logging.getLogger(__name__)

MAX_PASSES = 3  # decide again after a conflicting write, at most this often


class Conflict(Exception):
    """The object changed since it was read (HTTP 409 on a write with a resourceVersion)."""


class CreateError(Exception):
    """A child could not be created; `status` is the HTTP status (None: not an HTTP error)."""

    def __init__(self, message: str, status: int | None = None, *, conflict: bool = False) -> None:
        super().__init__(message)
        self.status, self.conflict = status, conflict


class ClusterApi(Protocol):
    def create_or_get(self, manifest: dict[str, Any]) -> bool: ...

    def delete_rayjob(self, namespace: str, name: str, uid: str) -> bool: ...

    def set_rayjob_suspend(self, namespace: str, name: str, uid: str, suspend: bool) -> None: ...

    def get_finetune(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def list_rayjobs(self, namespace: str, finetune: str) -> list[dict[str, Any]]: ...

    def list_finetunes(self, namespace: str) -> list[dict[str, Any]]: ...

    def release_claim(self, namespace: str, claim: str, owner_uid: str) -> None:
        """Remove ``owner_uid``'s owner reference from the claim (a no-op when absent)."""
        ...

    def claim_controller(self, namespace: str, claim: str) -> str | None:
        """The WhisperFineTune controlling the claim object, if any."""
        ...

    def patch_status(
        self, namespace: str, name: str, status: dict[str, Any], resource_version: str | None
    ) -> dict[str, Any]: ...

    def event(self, view: View, type_: str, reason: str, message: str) -> None: ...


@dataclass(frozen=True)
class Outcome:
    decision: d.Decision
    wrote: bool
    passes: int


def renderer(settings: Settings) -> d.Render:
    def render(spec: Any, meta: Meta, attempt: int) -> Any:
        return render_attempt(spec, meta, settings, attempt)

    return render


def execute(api: ClusterApi, view: View, decision: d.Decision, now: str) -> d.Decision:
    """Run the actions; the decision whose status should be written (another on a failed create)."""
    for action in decision.actions:
        if isinstance(action, d.CreateAttempt):
            try:
                created_job = _create(api, action)
            except CreateError as exc:
                log.warning("%s/%s: %s", view.namespace, view.name, exc)
                failed = d.create_failed(
                    view, action, str(exc), exc.status, now, conflict=exc.conflict
                )
                for a in failed.actions:
                    _run(api, view, a)
                return failed
            if created_job:
                metrics.ATTEMPTS.inc()
        else:
            _run(api, view, action)
    return decision


def _create(api: ClusterApi, action: d.CreateAttempt) -> bool:
    created_job = False
    for child in action.children:
        created = api.create_or_get(child)
        created_job = created_job or (created and child["kind"] == "RayJob")
    return created_job


def _run(api: ClusterApi, view: View, action: d.Action) -> None:
    if isinstance(action, d.DeleteRayJob):
        api.delete_rayjob(view.namespace, action.name, action.uid)
    elif isinstance(action, d.SuspendRayJob):
        api.set_rayjob_suspend(view.namespace, action.name, action.uid, action.suspend)
    elif isinstance(action, d.Emit):
        api.event(view, action.type, action.reason, action.message)
    elif isinstance(action, d.ReleaseClaim) and view.uid:
        api.release_claim(view.namespace, action.name, view.uid)


def run_pass(
    api: ClusterApi,
    body: dict[str, Any],
    rayjobs: list[dict[str, Any]] | None,
    settings: Settings,
    now: Callable[[], str],
    edit: d.SpecEdit | None = None,
    startup_problems: tuple[StartupProblem, ...] = (),
) -> Outcome:
    """Decide and act for one object; `rayjobs` None: list them (else the index's copy)."""
    md = body.get("metadata") or {}
    ns, name = md.get("namespace") or "default", md["name"]
    render = renderer(settings)
    fresh = False  # Kopf's body may lag the API server
    claims: tuple[ClaimUser, ...] | None = None
    for n in range(1, MAX_PASSES + 1):
        if rayjobs is None:
            rayjobs = api.list_rayjobs(ns, name)
        view = View.of(body, rayjobs, startup_problems, claims)
        decision = d.decide(view, render, now(), edit)
        if not fresh and any(not isinstance(a, d.Emit) for a in decision.actions):
            # Never create, delete or suspend on a copy that may be stale (Kopf's body,
            # the index): decide again from what the API server says now.
            latest = api.get_finetune(ns, name)
            if latest is None:
                return Outcome(decision, False, n)
            body, rayjobs, fresh = latest, api.list_rayjobs(ns, name), True
            claims = _claim_users(api, ns, body)
            view = View.of(body, rayjobs, startup_problems, claims)
            decision = d.decide(view, render, now(), edit)
        decision = execute(api, view, decision, now())
        _observe_phase(view, decision)
        if not decision.status:
            return Outcome(decision, False, n)
        try:
            api.patch_status(ns, name, decision.status, view.resource_version)
            return Outcome(decision, True, n)
        except Conflict:
            latest_body = api.get_finetune(ns, name)
            if latest_body is None:
                return Outcome(decision, False, n)
            body, rayjobs, fresh = latest_body, None, True
            claims = _claim_users(api, ns, body)
    log.warning("%s/%s: status changed under every one of %d passes", ns, name, MAX_PASSES)
    return Outcome(decision, False, MAX_PASSES)


def _claim_users(api: ClusterApi, ns: str, body: dict[str, Any]) -> tuple[ClaimUser, ...] | None:
    """Only for a named claim, and only before acting: two reads, rarely."""
    claim = ((body.get("spec") or {}).get("checkpoints") or {}).get("claimName")
    if not claim:
        return None
    return claim_users(claim, api.list_finetunes(ns), api.claim_controller(ns, claim))


def _observe_phase(view: View, decision: d.Decision) -> None:
    if decision.phase_changed_to is not None:
        metrics.TRANSITIONS.labels(phase=decision.phase_changed_to.value).inc()
    phase = decision.phase_changed_to or view.status.phase
    if view.uid and phase is not None:
        metrics.observe_phase(view.uid, Phase(phase))
