"""What every handler shares: the resource it watches, settings, metrics wrapping."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from whisperft import names
from whisperft.operator import metrics
from whisperft.operator.settings import Settings, load_settings

RESOURCE = (names.GROUP, names.VERSION, names.PLURAL)

F = TypeVar("F", bound=Callable[..., Any])


@functools.cache
def settings() -> Settings:
    return load_settings()


def counted(name: str) -> Callable[[F], F]:
    """Count invocations, errors and durations of a handler in Prometheus."""

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            metrics.RECONCILES.labels(handler=name).inc()
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            except Exception:
                metrics.ERRORS.labels(handler=name).inc()
                raise
            finally:
                metrics.RECONCILE_SECONDS.labels(handler=name).observe(time.perf_counter() - t0)

        return inner  # type: ignore[return-value]

    return wrap


_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def _key(body: Any) -> str:
    md = body.get("metadata") or {}
    return str(md.get("uid") or f"{md.get('namespace')}/{md.get('name')}")


@contextmanager
def one_at_a_time(body: Any, *, wait: bool = True) -> Iterator[bool]:
    """The timer and the change handlers never act on one object at the same time
    (Kopf runs them concurrently in its thread pool).

    Yields whether this caller holds the object: with `wait=False` (the timer)
    a busy object yields False at once, so no worker thread is parked on a lock
    while another handler already reconciles that object; the next tick comes."""
    key = _key(body)
    with _locks_guard:
        lock = _locks.setdefault(key, threading.Lock())
    if not lock.acquire(blocking=wait):
        yield False
        return
    try:
        yield True
    finally:
        lock.release()


def indexed_rayjobs(body: Any, rayjobs: Any) -> list[dict[str, Any]]:
    """Its RayJobs as the watch-fed index has them (handlers/sync.py): no API call.
    Kopf fills indexes before any handler runs, and a pass that acts reads the
    resource and its RayJobs afresh first (act.run_pass)."""
    md = body.get("metadata") or {}
    return list(rayjobs.get((md.get("namespace"), md.get("name")), []))


def forget(body: Any) -> None:
    """Drop a deleted resource's lock, so the table does not grow with every resource ever seen."""
    with _locks_guard:
        _locks.pop(_key(body), None)
