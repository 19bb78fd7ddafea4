"""What every handler shares: the resource it watches, settings, metrics wrapping."""

from __future__ import annotations

import functools
from collections.abc import Callable
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
