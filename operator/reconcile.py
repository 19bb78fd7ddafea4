"""What the handlers do: one pass of decide-then-act (operator/decide.py,
operator/act.py) for one object, plus deletion.

Every pass is idempotent: children have deterministic names and are created
with create-or-get, and only RayJobs this resource controls are deleted or
suspended, so a restarted operator (or a retried handler) converges.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from whisperft.operator import act, kube, metrics
from whisperft.operator.decide import SpecEdit
from whisperft.operator.decisions import now_rfc3339
from whisperft.operator.settings import Settings
from whisperft.operator.startup import StartupProblem
from whisperft.operator.views import owned_rayjobs

Body = dict[str, Any]
Logger = logging.Logger | logging.LoggerAdapter[Any]


@functools.cache
def _api(field_manager: str) -> kube.RealApi:
    return kube.RealApi(field_manager)


def reconcile(
    body: Body,
    settings: Settings,
    rayjobs: list[dict[str, Any]] | None = None,
    edit: SpecEdit | None = None,
    startup_problems: tuple[StartupProblem, ...] = (),
) -> act.Outcome:
    """Create/resume, a timer tick (`rayjobs` and pod problems from the indexes) or a spec edit."""
    return act.run_pass(
        _api(settings.field_manager), body, rayjobs, settings, now_rfc3339, edit, startup_problems
    )


def on_delete(body: Body, settings: Settings, logger: Logger) -> None:
    """Free the GPUs at once; garbage collection removes the other owned children.

    Only RayJobs this resource controls are deleted (uid-checked). A claim the
    user brought was never owned, and a kept claim has no owner reference, so
    both survive.
    """
    api = _api(settings.field_manager)
    md = body.get("metadata", {})
    ns, name, uid = md.get("namespace") or "default", md["name"], md.get("uid")
    for rj in owned_rayjobs(api.list_rayjobs(ns, name), uid):
        api.delete_rayjob(ns, rj.name, rj.uid)
    if uid:
        metrics.observe_phase(uid, None)
    logger.info("deleted; children are garbage-collected through owner references")


__all__ = ["on_delete", "reconcile"]
