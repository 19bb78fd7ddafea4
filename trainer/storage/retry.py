"""Retrying transient storage failures with capped exponential backoff (and full jitter).

Only failures that `classify` calls transient are retried; a missing bucket,
refused credentials or a permission error is raised at once as StorageError.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from whisperft.trainer.storage.errors import StorageError, classify

log = logging.getLogger(__name__)
T = TypeVar("T")

# The named limits (each overridable by the env variable beside it).
MAX_ATTEMPTS = 5  # WHISPERFT_STORAGE_MAX_ATTEMPTS: tries per operation, the first included
BASE_DELAY_S = 0.5  # WHISPERFT_STORAGE_RETRY_BASE_S: the first backoff; doubles each retry
MAX_DELAY_S = 8.0  # WHISPERFT_STORAGE_RETRY_MAX_S: no single backoff is longer than this


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = MAX_ATTEMPTS
    base_delay_s: float = BASE_DELAY_S
    max_delay_s: float = MAX_DELAY_S

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.base_delay_s < 0 or self.max_delay_s < self.base_delay_s:
            raise ValueError(f"bad retry policy {self}")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RetryPolicy:
        env = os.environ if env is None else env
        return cls(
            max_attempts=int(env.get("WHISPERFT_STORAGE_MAX_ATTEMPTS", MAX_ATTEMPTS)),
            base_delay_s=float(env.get("WHISPERFT_STORAGE_RETRY_BASE_S", BASE_DELAY_S)),
            max_delay_s=float(env.get("WHISPERFT_STORAGE_RETRY_MAX_S", MAX_DELAY_S)),
        )

    def delay(self, retry: int, rand: Callable[[], float] = random.random) -> float:
        """Backoff before retry number `retry` (1-based): full jitter under min(cap, base*2^(n-1))."""
        return rand() * min(self.max_delay_s, self.base_delay_s * 2 ** (retry - 1))


def with_retry(
    fn: Callable[[], T],
    *,
    uri: str,
    principal: str,
    operation: str,
    policy: RetryPolicy,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """fn(), retried on transient failures; StorageError naming uri and principal otherwise."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn()
        except Exception as exc:
            kind = classify(exc)
            if kind == "not_found" and isinstance(exc, FileNotFoundError):
                raise  # an absent object is an answer, not a failure
            if kind != "transient":
                if isinstance(exc, StorageError):
                    raise
                raise StorageError(
                    uri, principal, kind, str(exc), operation=operation, attempts=attempt
                ) from exc
            if attempt >= policy.max_attempts:
                raise StorageError(
                    uri, principal, kind, str(exc), operation=operation, attempts=attempt
                ) from exc
            pause = policy.delay(attempt)
            log.warning(
                "%s (%s): transient error, retry %d/%d in %.2fs: %s",
                uri,
                operation,
                attempt,
                policy.max_attempts - 1,
                pause,
                exc,
            )
            sleep(pause)
