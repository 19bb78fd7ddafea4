"""The one error type model sources raise for bad or unusable input."""

from __future__ import annotations


class ModelError(ValueError):
    """A model reference or model file that cannot be used; the message names it and why."""
