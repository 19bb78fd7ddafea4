"""A worker told to stop mid-run (SIGTERM: spot reclaim, node drain) checkpoints
that step before it goes, and the run resumes from it with no step redone."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_train import _train_workers, resumed_events, run_dir, state_of, write_config

from whisperft.trainer import checkpoint as ckpt

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]
STEP = re.compile(r"\[whisperft\] step (\d+)/8 ")


def test_sigterm_saves_the_current_step_and_the_run_resumes_there(tmp_path: Path) -> None:
    # Checkpoints every 4 steps: without the preemption save, a SIGTERM at step 5 or
    # later would resume from step 4 and redo the steps after it.
    cfg = write_config(tmp_path, "pre", maxSteps=8, saveEvery=4, keepCheckpoints=10)
    rd = run_dir(tmp_path, "pre")
    log_path = tmp_path / "pre.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "whisperft", "train", str(cfg), "--no-progress"],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
    signalled_at: int | None = None
    deadline = time.monotonic() + 600
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            steps = [int(m) for m in STEP.findall(log_path.read_text())]
            if steps and max(steps) >= 5:
                workers = _train_workers()
                if workers:
                    signalled_at = max(steps)
                    os.kill(workers[-1].pid, signal.SIGTERM)
                    break
            time.sleep(0.2)
        assert signalled_at is not None, "never saw step 5 with live workers"
        assert proc.wait(timeout=700) == 0, log_path.read_text()[-6000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log_path.read_text()
    state = state_of(rd)
    assert state.step == 8
    preempted = [h for h in state.history if h.get("event") == "preempted"]
    (resumed,) = resumed_events(state)
    assert len(preempted) == 1, state.history
    # The save happened at the step the signal arrived (or the one in flight), and the
    # resume started exactly there: nothing was redone.
    assert preempted[0]["step"] >= signalled_at
    assert resumed["step"] == preempted[0]["step"], (preempted, resumed)
    assert resumed["from"] == ckpt.dir_name(preempted[0]["step"])
    assert f"preempted at step {preempted[0]['step']}/8: checkpoint saved" in text
