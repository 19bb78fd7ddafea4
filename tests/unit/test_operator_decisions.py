"""Pure decisions behind the handlers: retry or fail, what changed, progress text."""

from __future__ import annotations

import pytest

from whisperft.operator.decisions import (
    changed_paths,
    deferred_changes,
    next_step,
    progress_text,
    status_delta,
)
from whisperft.operator.status_map import map_rayjob_status

pytestmark = pytest.mark.unit


def _state(dep: str, job: str) -> object:
    return map_rayjob_status(
        {"jobDeploymentStatus": dep, "jobStatus": job}, suspend_requested=False
    )


@pytest.mark.parametrize(
    ("dep", "job", "restarts", "max_restarts", "expected"),
    [
        ("Running", "RUNNING", 0, 2, "continue"),
        ("Complete", "SUCCEEDED", 0, 0, "continue"),
        ("Failed", "FAILED", 0, 2, "retry"),
        ("Failed", "FAILED", 1, 2, "retry"),
        ("Failed", "FAILED", 2, 2, "fail"),
        ("Failed", "RUNNING", 0, 0, "fail"),
        ("ValidationFailed", "", 0, 5, "fail"),  # a retry would be refused the same way
        ("Running", "STOPPED", 0, 5, "fail"),  # stopped on purpose
        ("Complete", "", 0, 1, "retry"),  # result lost: resume from the checkpoint
    ],
)
def test_next_step(dep: str, job: str, restarts: int, max_restarts: int, expected: str) -> None:
    assert next_step(_state(dep, job), restarts=restarts, max_restarts=max_restarts) == expected  # type: ignore[arg-type]


def test_changed_paths_and_what_waits_for_a_new_attempt() -> None:
    old = {
        "suspend": False,
        "training": {"maxSteps": 10, "learningRate": 1e-5},
        "resources": {"workers": 1},
    }
    new = {
        "suspend": True,
        "training": {"maxSteps": 10, "learningRate": 1e-4},
        "resources": {"workers": 1, "cpu": "4"},
    }
    assert changed_paths(old, new) == [
        "spec.resources.cpu",
        "spec.suspend",
        "spec.training.learningRate",
    ]
    assert deferred_changes(old, new) == ["spec.resources.cpu", "spec.training.learningRate"]
    assert deferred_changes(old, {**old, "suspend": True}) == []
    assert changed_paths(old, old) == []


@pytest.mark.parametrize(
    ("progress", "text"),
    [
        (None, None),
        ({}, None),
        ({"loss": 1.0}, None),
        ({"step": 120, "totalSteps": 500}, "120/500 (24%)"),
        ({"step": 7}, "7"),
        ({"step": 510, "totalSteps": 500}, "510/500 (100%)"),
    ],
)
def test_progress_text(progress: dict | None, text: str | None) -> None:
    assert progress_text(progress) == text


def test_status_delta_sends_only_changes() -> None:
    assert status_delta({"phase": "Running", "attempt": 1}, {"phase": "Running", "attempt": 2}) == {
        "attempt": 2
    }
    assert status_delta({"phase": "Running"}, {"phase": "Running"}) == {}
