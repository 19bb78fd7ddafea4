"""Status sync: an index of our RayJobs, and a timer reconciling each resource from it."""

from __future__ import annotations

from typing import Any

import kopf

from whisperft import names
from whisperft.operator import reconcile, startup
from whisperft.operator.api.phase import Phase
from whisperft.operator.handlers.common import (
    RESOURCE,
    counted,
    indexed_rayjobs,
    one_at_a_time,
    settings,
)


@kopf.index("ray.io", "v1", "rayjobs", labels={names.LABEL_MANAGED_BY: names.MANAGED_BY})
def rayjobs(
    namespace: str | None, body: kopf.Body, **_: Any
) -> dict[tuple[str | None, str], dict[str, Any]]:
    """(namespace, fine-tune) -> its RayJobs, kept current by a watch: a tick makes no API call."""
    labels: dict[str, str] = dict(body.metadata.labels or {})
    owner = labels.get(names.LABEL_FINETUNE, "")
    return {
        (namespace, owner): {
            "metadata": dict(body.metadata),
            "spec": {"suspend": bool(dict(body.spec).get("suspend"))},
            "status": dict(body.status),
        }
    }


@kopf.index("", "v1", "pods", labels={names.LABEL_MANAGED_BY: names.MANAGED_BY})
def pod_problems(
    namespace: str | None, body: kopf.Body, **_: Any
) -> dict[tuple[str | None, str], dict[str, Any]]:
    """(namespace, fine-tune) -> why its pods cannot start (pods that are fine add nothing)."""
    problem = startup.summary(dict(body))
    if problem is None:
        return {}
    labels: dict[str, str] = dict(body.metadata.labels or {})
    return {(namespace, labels.get(names.LABEL_FINETUNE, "")): problem}


_TERMINAL = frozenset(p.value for p in Phase if p.is_terminal)


def _finished(status: Any) -> bool:
    return (status or {}).get("phase") in _TERMINAL


def _running(**kwargs: Any) -> bool:
    """Finished resources need no timer (an edit still reaches the update handler).

    Kopf evaluates this on every event of the object and stops a timer that no
    longer matches, so the timers at rest are those of unfinished resources."""
    return not _finished(kwargs.get("status"))


@kopf.timer(*RESOURCE, interval=settings().sync_interval_seconds, initial_delay=1.0, when=_running)
@counted("sync")
def sync(
    body: kopf.Body,
    rayjobs: kopf.Index[Any, Any],
    pod_problems: kopf.Index[Any, Any],
    **_: Any,
) -> None:
    if _finished(body.status):
        return  # a tick delivered before Kopf re-matched the filter: nothing left to do
    key = (body.metadata.namespace, body.metadata.name)
    found = indexed_rayjobs(body, rayjobs)
    problems = tuple(startup.from_summary(p) for p in pod_problems.get(key, []))
    with one_at_a_time(body, wait=False) as mine:
        if not mine:
            return  # the create/update handler is on it now; the next tick looks again
        reconcile.reconcile(dict(body), settings(), rayjobs=found, startup_problems=problems)
