"""What the driver hands every Ray Train worker: one typed value, not a dict."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from whisperft.trainer.config import TrainConfig


@dataclass(frozen=True)
class WorkerJob:
    config: TrainConfig
    model_dir: Path
    train_features: Path
    eval_features: dict[str, Path]  # "eval" and "test"
    run_dir: Path  # <storage>/<name>: Ray Train's run, where checkpoints go
    encoder_cache_root: Path
    output_dir: Path
    progress: bool = True
    # Ray Train's local mode (trainer/launch.py): the worker persists its own checkpoints.
    in_process: bool = False

    # Ray passes `train_loop_config` to the worker function as a dict.
    KEY: ClassVar[str] = "job"

    def as_loop_config(self) -> dict[str, WorkerJob]:
        return {self.KEY: self}

    @classmethod
    def from_loop_config(cls, loop_config: dict[str, object]) -> WorkerJob:
        job = loop_config.get(cls.KEY)
        if not isinstance(job, cls):
            raise TypeError(
                f"train_loop_config[{cls.KEY!r}] is {type(job).__name__}, not WorkerJob"
            )
        return job
