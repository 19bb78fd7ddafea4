"""Only the known-benign transformers warnings are dropped around Whisper's generate."""

from __future__ import annotations

import logging

import pytest

from whisperft.trainer.transcribe import _quiet_generate

pytestmark = pytest.mark.unit

BENIGN = (
    "Both `max_new_tokens` (=96) and `max_length`(=448) seem to have been set. "
    "`max_new_tokens` will take precedence."
)
OTHER = "Generation flags are not valid and may be ignored: temperature"


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_benign_warnings_dropped_others_kept() -> None:
    root = logging.getLogger("transformers")
    seen = _Collect()
    root.addHandler(seen)  # stands in for transformers' own stderr handler
    log = logging.getLogger("transformers.generation.utils")
    level = log.level
    log.setLevel(logging.WARNING)  # other tests may have turned transformers' verbosity down
    try:
        with _quiet_generate():
            log.warning(BENIGN)
            log.warning(OTHER)
        assert seen.messages == [OTHER]
        log.warning(BENIGN)  # the filter is gone once generation ends
        assert seen.messages == [OTHER, BENIGN]
    finally:
        root.removeHandler(seen)
        log.setLevel(level)
