"""What a spec edit does: every branch of spec_change.decide, as a table."""

from __future__ import annotations

from typing import Any

import pytest

from whisperft.operator.spec_change import Action, decide

pytestmark = pytest.mark.unit

SPEC = {"training": {"learningRate": 1e-5}, "suspend": False}
LR = {"training": {"learningRate": 5e-6}}


def spec(**changes: Any) -> dict[str, Any]:
    return {**SPEC, **changes}


def status(
    phase: str = "Running", *conds: tuple[str, str], job: str | None = "w-1"
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "phase": phase,
        "conditions": [{"type": t, "status": v} for t, v in conds],
    }
    if job:
        out["rayJobName"] = job
    return out


RUNNING = status("Running", ("Planned", "True"))
SUSPENDED = status("Suspended", ("Planned", "True"))


@pytest.mark.parametrize(
    ("case", "old", "new", "st", "action", "pending", "report"),
    [
        ("nothing created yet", spec(), spec(**LR), status("Pending", job=None), Action.RETRY_PLAN, ["spec.training.learningRate"], False),
        ("plan was refused", spec(), spec(**LR), status("Failed", ("Planned", "False")), Action.RETRY_PLAN, ["spec.training.learningRate"], False),
        ("finished, changed", spec(), spec(**LR), status("Succeeded"), Action.IGNORE_FINISHED, ["spec.training.learningRate"], False),
        ("finished, suspend only", spec(), spec(suspend=True), status("Failed"), Action.NONE, [], False),
        ("running, LR changed", spec(), spec(**LR), RUNNING, Action.NONE, ["spec.training.learningRate"], True),
        ("running, suspend", spec(), spec(suspend=True), RUNNING, Action.SUSPEND, [], False),
        ("suspend with a change", spec(), spec(suspend=True, **LR), RUNNING, Action.SUSPEND, ["spec.training.learningRate"], True),
        ("resume unchanged", spec(suspend=True), spec(), SUSPENDED, Action.RESUME, [], False),
        ("resume with a change", spec(suspend=True), spec(**LR), SUSPENDED, Action.NEW_ATTEMPT, ["spec.training.learningRate"], False),
        ("resume after an earlier pending change", spec(suspend=True), spec(), status("Suspended", ("UpdatePending", "True")), Action.NEW_ATTEMPT, [], False),
        ("suspended, changed again", spec(suspend=True), spec(suspend=True, **LR), SUSPENDED, Action.NONE, ["spec.training.learningRate"], True),
        ("metadata-only edit", spec(), spec(), RUNNING, Action.NONE, [], False),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)  # fmt: skip
def test_decide(
    case: str,
    old: dict[str, Any],
    new: dict[str, Any],
    st: dict[str, Any],
    action: Action,
    pending: list[str],
    report: bool,
) -> None:
    got = decide(old, new, st)
    assert (got.action, got.pending, got.report_pending) == (action, pending, report), case
