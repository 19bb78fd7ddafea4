"""What a spec edit does to a WhisperFineTune (pure; operator/decide.py acts on it).

Only `suspend` applies live. Anything else is kept pending in the
UpdatePending condition until the next attempt: resuming a suspended run with
pending changes starts that attempt at once, on the same checkpoint path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from whisperft.operator.api.phase import ConditionType, Phase
from whisperft.operator.decisions import deferred_changes


class Action(Enum):
    NONE = "none"
    RETRY_PLAN = "retry-plan"  # nothing was created yet: plan and create with the new spec
    IGNORE_FINISHED = "ignore-finished"  # the run is over; say so in an event
    SUSPEND = "suspend"
    RESUME = "resume"  # un-suspend the same RayJob
    NEW_ATTEMPT = "new-attempt"  # resume with pending changes as attempt + 1


@dataclass(frozen=True)
class SpecChange:
    action: Action
    pending: list[str] = field(default_factory=list)  # dotted spec paths not applied live
    report_pending: bool = False  # set UpdatePending=True naming `pending`


def _condition_is(status: dict[str, Any], kind: ConditionType, value: str) -> bool:
    return any(
        c.get("type") == kind.value and c.get("status") == value
        for c in status.get("conditions") or []
    )


def decide(old: dict[str, Any], new: dict[str, Any], status: dict[str, Any]) -> SpecChange:
    """`old`/`new` are the spec before and after the edit; `status` as last written."""
    pending = deferred_changes(old, new)
    if not status.get("rayJobName") or _condition_is(status, ConditionType.PLANNED, "False"):
        return SpecChange(Action.RETRY_PLAN, pending)
    if status.get("phase") in (Phase.SUCCEEDED.value, Phase.FAILED.value):
        return SpecChange(Action.IGNORE_FINISHED if pending else Action.NONE, pending)
    suspend_now, suspend_before = bool(new.get("suspend")), bool(old.get("suspend"))
    if suspend_now and not suspend_before:
        return SpecChange(Action.SUSPEND, pending, report_pending=bool(pending))
    if suspend_before and not suspend_now:
        if pending or _condition_is(status, ConditionType.UPDATE_PENDING, "True"):
            return SpecChange(Action.NEW_ATTEMPT, pending)
        return SpecChange(Action.RESUME, pending)
    return SpecChange(Action.NONE, pending, report_pending=bool(pending))
