"""Saving weights without transformers' per-shard progress bar.

A bar for a one-shard save is noise in a terminal and a stray frame in a pod's
log (and on stderr, before an `error:` line a caller looks for)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def no_save_progress() -> Iterator[None]:
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()
