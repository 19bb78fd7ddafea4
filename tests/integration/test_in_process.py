"""One local worker trains in the `whisperft train` process itself (Ray Train's
local mode): no Ray cluster is started, checkpoints land where a Ray run puts
them and are resumed the same way, and a SIGTERM saves the step and stops the
command, which a rerun resumes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from test_train import resumed_events, run_dir, state_of, train, write_config

from whisperft.trainer import checkpoint as ckpt

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]
STEP = re.compile(r"\[whisperft\] step (\d+)/40 ")
RAY_DAEMONS = ("raylet", "gcs_server")


def _run_watching_children(config: Path, log_path: Path, *extra: str) -> tuple[int, set[str]]:
    """Run the CLI; the names of every process it started, polled until it exits."""
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "whisperft", "train", str(config), "--no-progress", *extra],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
    seen: set[str] = set()
    root = psutil.Process(proc.pid)
    try:
        while proc.poll() is None:
            try:
                for child in root.children(recursive=True):
                    try:
                        seen.add(child.name())
                    except psutil.Error:
                        continue
            except psutil.Error:
                pass
            time.sleep(0.2)
        return proc.wait(timeout=60), seen
    finally:
        if proc.poll() is None:
            proc.kill()


def test_one_worker_trains_in_process_and_resumes_like_a_ray_run(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, "ip", maxSteps=4, saveEvery=2, resources={"workers": 1})
    rc, children = _run_watching_children(cfg, tmp_path / "ip.log")
    text = (tmp_path / "ip.log").read_text()
    assert rc == 0, text[-5000:]
    assert not [c for c in children if any(d in c for d in RAY_DAEMONS)], children
    assert "Running in local mode" in text  # Ray Train's own words for num_workers=0
    rd = run_dir(tmp_path, "ip")
    names = sorted(p.name for p in rd.iterdir())
    assert names.count(ckpt.dir_name(2)) == 1 and ckpt.dir_name(4) in names
    assert not [n for n in names if n.endswith(".partial")], names  # committed by rename
    assert all(ckpt.problem(p, verify_content=True) is None for p in ckpt.list_checkpoints(rd))
    results = json.loads((tmp_path / "out" / "ip" / "results.json").read_text())
    assert results["steps"] == 4 and results["checkpoints"][0].endswith(ckpt.dir_name(4))
    assert results["test_wer_after"] is not None and (tmp_path / "out/ip/model").is_dir()
    # Started again with more steps: resumes from the checkpoint it wrote itself.
    again = train(write_config(tmp_path, "ip", maxSteps=6, saveEvery=2, resources={"workers": 1}))
    assert again.returncode == 0
    state = state_of(rd)
    assert state.step == 6 and [e["step"] for e in resumed_events(state)] == [4]


def test_sigterm_saves_the_step_stops_and_a_rerun_resumes_there(tmp_path: Path) -> None:
    # 40 short steps: the signal lands well before the end, however fast they run.
    cfg = write_config(
        tmp_path, "ipt", maxSteps=40, saveEvery=20, keepCheckpoints=10, resources={"workers": 1}
    )
    rd = run_dir(tmp_path, "ipt")
    log_path = tmp_path / "ipt.log"
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
                signalled_at = max(steps)
                proc.send_signal(signal.SIGTERM)
                break
            time.sleep(0.1)
        assert signalled_at is not None, log_path.read_text()[-4000:]
        rc = proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log_path.read_text()
    assert rc == 128 + signal.SIGTERM, text[-4000:]
    assert "the checkpoint is saved, run the same command to resume" in text
    saved = state_of(rd)
    assert 5 <= signalled_at <= saved.step < 20  # saved at the signal, not the interval
    assert [h["step"] for h in saved.history if h.get("event") == "preempted"] == [saved.step]
    again = train(cfg)
    assert again.returncode == 0
    final = state_of(rd)
    assert final.step == 40 and [e["step"] for e in resumed_events(final)] == [saved.step]
