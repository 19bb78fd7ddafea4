"""The one error type of the data readers."""

from __future__ import annotations


class DataError(ValueError):
    """Bad or unusable input. The message names the path and what is wrong.

    `reason` is the skip-counter key used when a reader drops one example
    instead of failing the whole split (e.g. "corrupt_audio", "missing_clip").
    """

    def __init__(self, message: str, reason: str = "bad_input") -> None:
        super().__init__(message)
        self.reason = reason
