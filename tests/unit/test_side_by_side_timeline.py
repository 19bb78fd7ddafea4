"""The harness's time split of our job, from the second each log line arrived."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from side_by_side_report import timeline

pytestmark = pytest.mark.unit

RES = {"job_wall_seconds": 100.0, "prepare_seconds": 4.0}


def test_in_process_full_run_times_the_baseline_apart_from_start_up() -> None:
    # One worker in the CLI's process: no worker group, no RayTrainWorker prefix.
    lines = [
        (3.0, "Running in local mode. The training function will run in the same process."),
        (12.0, "DeepSpeed deepspeed.ops.comm.deepspeed_shm_comm_op built successfully"),
        (22.0, "[whisperft] baseline: test WER 33.85% on 100 utterances (0 hit the length cap)"),
        (23.0, "[whisperft] training 37.8M of 37.8M parameters, 120 steps, 1 workers, ZeRO-0"),
        (90.0, "[whisperft] step 120/120  loss 0.01  lr 0  18 samples/s"),
        (100.0, "[whisperft] final: test WER 33.85% -> 1.12% (0 capped), 88 s"),
    ]
    split = timeline(lines, 102.0, RES)
    assert split["eval_before"] == 10.0
    assert split["startup"] == pytest.approx(12.0 - 4.0)
    assert split["training"] == 68.0 and split["evaluation"] == 10.0 and split["saving"] == 2.0


def test_ray_worker_lines_are_rank_zeros() -> None:
    lines = [
        (5.0, "Started training worker group of size 2"),
        (14.0, "(RayTrainWorker pid=11) DeepSpeed info: version=0.18"),
        (15.0, "(RayTrainWorker pid=12) DeepSpeed info: version=0.18"),
        (25.0, "(RayTrainWorker pid=11) [whisperft] baseline: test WER 33.85% on 100"),
        (80.0, "(RayTrainWorker pid=11) [whisperft] step 40/40  loss 0.1"),
        (95.0, "(RayTrainWorker pid=11) [whisperft] final: test WER 33.85% -> 9%"),
    ]
    split = timeline(lines, 100.0, RES)
    assert split["eval_before"] == 11.0  # from rank 0's engine line, not rank 1's
