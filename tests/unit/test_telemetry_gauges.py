"""The trainer's Prometheus gauges stay exported between updates (trainer/telemetry.py).

Ray's metrics agent forgets a gauge series its worker has not reported for two
export intervals, so a value set once (the test WER before training) must be
set again while the run lives, and no longer once it is closed.
"""

from __future__ import annotations

import threading
import time
from typing import Any, ClassVar

import pytest

from whisperft.trainer import telemetry

pytestmark = pytest.mark.unit


class FakeGauge:
    sets: ClassVar[list[tuple[str, float]]] = []
    lock = threading.Lock()

    def __init__(self, name: str, description: str, tag_keys: tuple[str, ...]) -> None:
        self.name = name

    def set(self, value: float, tags: dict[str, str] | None = None) -> None:
        assert tags == {"finetune": "ft"}
        with FakeGauge.lock:
            FakeGauge.sets.append((self.name, value))


def test_a_set_once_gauge_is_set_again_until_close(monkeypatch: pytest.MonkeyPatch) -> None:
    import ray.util.metrics

    monkeypatch.setattr(ray.util.metrics, "Gauge", FakeGauge)
    monkeypatch.setattr(telemetry, "REFRESH_SECONDS", 0.05)
    FakeGauge.sets = []
    t = telemetry.Telemetry(None, "ft")
    t.scalars(0, {"test_wer": 0.25, "loss": None})
    time.sleep(0.5)
    t.close()
    time.sleep(0.2)
    with FakeGauge.lock:
        seen: list[Any] = list(FakeGauge.sets)
    wer = [v for n, v in seen if n == "whisperft_test_wer"]
    assert len(wer) >= 4 and set(wer) == {0.25}, seen
    assert not [n for n, _ in seen if n == "whisperft_loss"]  # None is never exported
    after = len(seen)
    time.sleep(0.3)
    assert len(FakeGauge.sets) == after, "gauges still set after close()"
