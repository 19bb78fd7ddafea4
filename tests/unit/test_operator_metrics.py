"""Operator metrics stay O(1) per reconcile: the phase gauge moves by one resource's
change rather than recounting them all, and handler durations are recorded."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import REGISTRY

from whisperft.operator import metrics
from whisperft.operator.api.phase import Phase
from whisperft.operator.handlers import common
from whisperft.operator.handlers.common import counted, forget, one_at_a_time

pytestmark = pytest.mark.unit


def _gauge(phase: Phase) -> float:
    value = REGISTRY.get_sample_value("whisperft_finetunes", {"phase": phase.value})
    return 0.0 if value is None else value


class _CountingDict(dict[str, str]):
    """A dict that counts full scans (values/items/iteration)."""

    scans = 0

    def values(self) -> Any:
        type(self).scans += 1
        return super().values()

    def items(self) -> Any:
        type(self).scans += 1
        return super().items()

    def __iter__(self) -> Any:
        type(self).scans += 1
        return super().__iter__()


def test_phase_gauge_follows_changes_without_rescanning(monkeypatch: pytest.MonkeyPatch) -> None:
    table = _CountingDict({f"old-{i}": Phase.SUCCEEDED.value for i in range(1000)})
    monkeypatch.setattr(metrics, "_phase_of", table)
    monkeypatch.setattr(metrics, "_counts", {Phase.SUCCEEDED.value: 1000})
    metrics.observe_phase("a", Phase.PENDING)
    metrics.observe_phase("a", Phase.RUNNING)
    metrics.observe_phase("b", Phase.RUNNING)
    metrics.observe_phase("a", Phase.RUNNING)  # no change
    metrics.observe_phase("old-1", None)  # deleted
    assert _CountingDict.scans == 0
    assert _gauge(Phase.RUNNING) == 2
    assert _gauge(Phase.PENDING) == 0
    assert _gauge(Phase.SUCCEEDED) == 999
    metrics.observe_phase("a", None)
    assert _gauge(Phase.RUNNING) == 1


def test_handler_durations_are_recorded() -> None:
    @counted("probe")
    def handler() -> int:
        return 7

    before = REGISTRY.get_sample_value(
        "whisperft_reconcile_duration_seconds_count", {"handler": "probe"}
    )
    assert handler() == 7
    after = REGISTRY.get_sample_value(
        "whisperft_reconcile_duration_seconds_count", {"handler": "probe"}
    )
    assert (after or 0) == (before or 0) + 1


def test_a_deleted_resource_leaves_no_lock_behind() -> None:
    body = {"metadata": {"uid": "u-1", "namespace": "ns", "name": "x"}}
    with one_at_a_time(body):
        pass
    assert "u-1" in common._locks
    forget(body)
    assert "u-1" not in common._locks


# ---- the status timer: no work on finished resources, no thread parked on a lock


def _sync_timer() -> Any:
    import kopf

    from whisperft.operator.handlers import sync as sync_module  # registers the handlers

    registry = kopf.get_default_registry()
    handlers = [h for h in registry._spawning._handlers if h.fn is sync_module.sync]
    assert len(handlers) == 1, "one status timer"
    return handlers[0]


@pytest.mark.parametrize("phase", [*Phase, None])
def test_the_timer_runs_only_on_unfinished_resources(phase: Phase | None) -> None:
    """Kopf re-matches timers on every event of the object and stops one whose
    filter no longer matches: a Succeeded/Failed resource keeps no timer, so the
    work at rest grows with the running resources only."""
    timer = _sync_timer()
    status = {} if phase is None else {"phase": phase.value}
    body = {"metadata": {"name": "x", "namespace": "ns", "uid": "u"}, "status": status}
    assert timer.when is not None
    expected = phase is None or not phase.is_terminal
    assert bool(timer.when(body=body, status=status, spec={}, meta=body["metadata"])) is expected


def _body(phase: Phase | None, uid: str = "u-sync") -> Any:
    import kopf

    raw: dict[str, Any] = {"metadata": {"name": "x", "namespace": "ns", "uid": uid}, "spec": {}}
    if phase is not None:
        raw["status"] = {"phase": phase.value}
    return kopf.Body(raw)


def test_a_tick_on_a_finished_resource_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Even a tick that races the filter (delivered before Kopf re-matches) makes
    no decision, no API call."""
    from whisperft.operator.handlers import sync as sync_module

    calls: list[Any] = []
    monkeypatch.setattr(sync_module.reconcile, "reconcile", lambda *a, **k: calls.append(a))
    monkeypatch.setattr(sync_module, "settings", lambda: None)
    for phase in Phase:
        sync_module.sync(body=_body(phase), rayjobs={}, pod_problems={})
    assert len(calls) == sum(1 for p in Phase if not p.is_terminal)


def test_a_tick_skips_a_resource_another_handler_is_reconciling(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first tick comes a second after a resource appears, usually while its
    create handler still runs: it must not park a worker thread on the object's
    lock (500 new resources would fill Kopf's pool with waiting timers)."""
    import threading

    from whisperft.operator.handlers import sync as sync_module

    calls: list[Any] = []
    monkeypatch.setattr(sync_module.reconcile, "reconcile", lambda *a, **k: calls.append(a))
    monkeypatch.setattr(sync_module, "settings", lambda: None)
    body = _body(Phase.PENDING, uid="u-busy")
    held, release = threading.Event(), threading.Event()

    def create_handler() -> None:
        with one_at_a_time(body):
            held.set()
            release.wait(5)

    t = threading.Thread(target=create_handler)
    t.start()
    held.wait(5)
    try:
        done = threading.Event()
        threading.Thread(
            target=lambda: (sync_module.sync(body=body, rayjobs={}, pod_problems={}), done.set())
        ).start()
        assert done.wait(2), "the tick waited for the lock"
        assert calls == []
    finally:
        release.set()
        t.join(5)
    sync_module.sync(body=body, rayjobs={}, pod_problems={})
    assert len(calls) == 1
    forget(body)
