"""Bounded text for status and events: long messages keep their head and tail.

A failed Ray job's message can be 20,000 characters (its log tail). The CRD
allows 4,096 for `status.message` and a condition's message, and a status
patch that breaks that rule is refused whole, which would stop the
resource's sync for good. The head says what failed; the tail holds the
trainer's last lines (its `error:` line, a traceback's last frame).
"""

from __future__ import annotations

STATUS_MESSAGE_LIMIT = 4096  # operator/api/status.py: message and Condition.message
EVENT_MESSAGE_LIMIT = 1024  # the Event API's own limit


def bounded(text: str, limit: int = STATUS_MESSAGE_LIMIT) -> str:
    """`text` if it fits, else its head and tail around a marker naming what was cut."""
    if len(text) <= limit:
        return text
    marker = " […{} characters omitted…] "
    # The marker's own length depends on the count; size it for the largest count.
    room = limit - len(marker.format(len(text)))
    head = room // 3
    tail = room - head
    omitted = len(text) - head - tail
    return text[:head] + marker.format(omitted) + text[len(text) - tail :]
