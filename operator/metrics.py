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
CREATE_LATENCY = Histogram(
    "whisperft_create_to_rayjob_seconds",
    "From the resource's creation timestamp to its first RayJob being created.",
    buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300),
)

_lock = threading.Lock()
_phase_of: dict[str, str] = {}


def observe_phase(uid: str, phase: Phase | None) -> None:
    """Track each resource's phase; the gauge is recomputed from the map."""
    with _lock:
        if phase is None:
            _phase_of.pop(uid, None)
        else:
            _phase_of[uid] = phase.value
        counts = {p.value: 0 for p in Phase}
        for value in _phase_of.values():
            counts[value] = counts.get(value, 0) + 1
    for name, n in counts.items():
        PHASES.labels(phase=name).set(n)


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
