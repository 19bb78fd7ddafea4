"""Pure decisions the handlers act on: retry or fail, what changed, what to show."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from whisperft.operator.status_map import AttemptState

# Spec fields a running attempt takes live; every other change waits for a new attempt.
LIVE_FIELDS = frozenset({"spec.suspend"})


def now_rfc3339() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def next_step(
    state: AttemptState, *, restarts: int, max_restarts: int
) -> Literal["continue", "retry", "fail"]:
    """After observing an attempt: keep watching, start the next attempt, or give up."""
    if not state.attempt_failed:
        return "continue"
    if state.retryable and restarts < max_restarts:
        return "retry"
    return "fail"


def changed_paths(old: Any, new: Any, prefix: str = "spec") -> list[str]:
    """Dotted paths of leaves that differ (added, removed or changed)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new)):
            out += changed_paths(old.get(key), new.get(key), f"{prefix}.{key}")
        return out
    return [] if old == new else [prefix]


def deferred_changes(old_spec: dict[str, Any], new_spec: dict[str, Any]) -> list[str]:
    """Changed fields that a running attempt cannot take live."""
    return [p for p in changed_paths(old_spec, new_spec) if p not in LIVE_FIELDS]


def progress_text(progress: dict[str, Any] | None) -> str | None:
    """'120/500 (24%)' from the trainer's progress, for the Progress printer column."""
    if not progress or progress.get("step") is None:
        return None
    step, total = int(progress["step"]), progress.get("totalSteps")
    if not total:
        return str(step)
    return f"{step}/{int(total)} ({min(100, round(100 * step / int(total)))}%)"


def status_delta(current: dict[str, Any], wanted: dict[str, Any]) -> dict[str, Any]:
    """Only the keys whose value changes, so an idle sync sends no patch at all."""
    return {k: v for k, v in wanted.items() if current.get(k) != v}
