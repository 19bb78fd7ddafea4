"""Training telemetry of rank 0: TensorBoard event files and Prometheus gauges.

- TensorBoard (tensorboardX, no TensorFlow): ``<run dir>/tensorboard/``, next to
  the checkpoints, so `tensorboard --logdir` on the claim (or the bucket prefix,
  which TensorBoard reads directly) shows loss, learning rate, throughput and WER
  of every attempt of the run on one time line (steps continue across resumes).
- Prometheus: Ray's metrics API (``ray.util.metrics``), which every Ray node
  exports on its metrics port (KubeRay's pods: 8080, ``metrics``), tagged with the
  fine-tune's name; the chart's Ray PodMonitor scrapes them.

Either part failing to start (no tensorboardX, no Ray metrics agent) is logged
once and never stops training.

Ray's agent drops a gauge series that its worker has not reported for two export
intervals (a dead worker's), and a gauge set once (the test WER before training,
the last eval WER) is not reported again by itself: a thread sets every gauge's
last value again each second, so a scrape during a long evaluation or between
logging intervals still finds them.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
EVENTS_DIR = "tensorboard"

GAUGES = {
    "step": "Optimizer steps done",
    "loss": "Training loss at the last logging interval",
    "learning_rate": "Learning rate of the last step",
    "samples_per_second": "Training throughput over all workers",
    "eval_wer": "Word error rate (a fraction) on the eval split at the last evaluation",
    "test_wer": "Word error rate (a fraction) on the test split",
}
REFRESH_SECONDS = 1.0  # under Ray's shortest gauge lifetime (2 x its 1-s export floor)


class Telemetry:
    """Rank 0 only; the other ranks get a Telemetry with nothing enabled."""

    def __init__(self, run_dir: Path | None, finetune: str, *, prometheus: bool = True) -> None:
        self.writer: Any = None
        self.gauges: dict[str, Any] = {}
        self.tags = {"finetune": finetune}
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.events_dir = run_dir / EVENTS_DIR if run_dir is not None else None
        if self.events_dir is not None:
            try:
                from tensorboardX import SummaryWriter

                self.events_dir.mkdir(parents=True, exist_ok=True)
                self.writer = SummaryWriter(logdir=str(self.events_dir), flush_secs=30)
            except (ImportError, OSError) as exc:
                log.warning("TensorBoard events off: %s", exc)
        if prometheus:
            try:
                from ray.util.metrics import Gauge

                self.gauges = {
                    name: Gauge(f"whisperft_{name}", description=text, tag_keys=("finetune",))
                    for name, text in GAUGES.items()
                }
            except Exception as exc:  # no metrics agent: telemetry is never fatal
                log.warning("Prometheus gauges off: %s", exc)
        if self.gauges:
            threading.Thread(target=self._refresh, name="gauge-refresh", daemon=True).start()

    def _refresh(self) -> None:
        while not self._stop.wait(REFRESH_SECONDS):
            self._set_gauges()

    def _set_gauges(self) -> None:
        with self._lock:
            last = dict(self._last)
        for name, value in last.items():
            try:
                self.gauges[name].set(value, tags=self.tags)
            except Exception as exc:  # never fatal, and never a log line a second
                log.debug("gauge %s: %s", name, exc)

    def scalars(self, step: int, values: dict[str, float | None]) -> None:
        latest = {name: float(v) for name, v in values.items() if v is not None}
        if self.writer is not None:
            for name, value in latest.items():
                self.writer.add_scalar(name, value, global_step=step)
        with self._lock:
            self._last.update(
                {k: v for k, v in {**latest, "step": float(step)}.items() if k in self.gauges}
            )
        self._set_gauges()

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        self._stop.set()
        if self.writer is not None:
            self.writer.close()
            self.writer = None
