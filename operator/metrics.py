"""Prometheus metrics of the operator (served on settings.metricsPort)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from whisperft.operator.api.phase import Phase

RECONCILES = Counter("whisperft_reconciles_total", "Handler invocations.", ["handler"])
ERRORS = Counter(
    "whisperft_reconcile_errors_total", "Handler invocations that raised.", ["handler"]
)
TRANSITIONS = Counter("whisperft_phase_transitions_total", "Phase changes.", ["phase"])
PHASES = Gauge(
    "whisperft_finetunes", "WhisperFineTunes by phase (as seen by this operator).", ["phase"]
)
ATTEMPTS = Counter("whisperft_attempts_started_total", "RayJob attempts created.")
RECONCILE_SECONDS = Histogram(
    "whisperft_reconcile_duration_seconds",
    "Wall time of one handler invocation, API calls included.",
    ["handler"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
CREATE_LATENCY = Histogram(
    "whisperft_create_to_rayjob_seconds",
    "From the resource's creation timestamp to its first RayJob being created.",
    buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300),
)

_lock = threading.Lock()
_phase_of: dict[str, str] = {}
_counts: dict[str, int] = {}
for _p in Phase:
    PHASES.labels(phase=_p.value).set(0)


def observe_phase(uid: str, phase: Phase | None) -> None:
    """Move one resource between phase counts (None: it is gone). O(1): a sync of
    one resource must not cost more when the operator manages thousands."""
    new = None if phase is None else phase.value
    with _lock:
        old = _phase_of.pop(uid, None) if new is None else _phase_of.get(uid)
        if old == new:
            return
        if new is not None:
            _phase_of[uid] = new
        for name, delta in ((old, -1), (new, 1)):
            if name is not None:
                _counts[name] = _counts.get(name, 0) + delta
                PHASES.labels(phase=name).set(_counts[name])


def observe_create_latency(created: str | None) -> None:
    """Seconds from the resource's creationTimestamp (1 s resolution) to now."""
    if not created:
        return
    try:
        start = datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError:
        return
    CREATE_LATENCY.observe(max(0.0, (datetime.now(UTC) - start).total_seconds()))


def serve(port: int) -> None:
    if port:
        start_http_server(port)
