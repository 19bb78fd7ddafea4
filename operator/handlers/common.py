"""What every handler shares: the resource it watches, settings, metrics wrapping."""

from __future__ import annotations

import functools
import threading
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
    """Count invocations and errors of a handler in Prometheus."""

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            metrics.RECONCILES.labels(handler=name).inc()
            try:
                return fn(*args, **kwargs)
            except Exception:
                metrics.ERRORS.labels(handler=name).inc()
                raise

        return inner  # type: ignore[return-value]

    return wrap


_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


@contextmanager
def one_at_a_time(body: Any) -> Iterator[None]:
    """The timer and the change handlers never act on one object at the same time
    (Kopf runs them concurrently in its thread pool)."""
    md = body.get("metadata") or {}
    key = md.get("uid") or f"{md.get('namespace')}/{md.get('name')}"
    with _locks_guard:
        lock = _locks.setdefault(key, threading.Lock())
    with lock:
        yield
