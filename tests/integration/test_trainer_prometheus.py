"""The trainer's metrics as Prometheus scrapes them from a Ray node (issue 15).

A Ray head started as a KubeRay pod starts it (`ray start --head` with a fixed
metrics export port, the port the chart's PodMonitor scrapes), a 2-worker run
joined to it with `--ray-address`, and the node's `/metrics` read over HTTP
while the run trains: the step, loss, learning rate and throughput gauges of
rank 0 appear there, tagged with the fine-tune's name, and the step only moves
forward; the test WER measured before training is there too.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from objectstore import free_port
from prometheus_client.parser import text_string_to_metric_families
from test_train import write_config

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]
NAME = "prom"


def _gauges(text: str, name: str) -> dict[str, float]:
    """`whisperft_<gauge>` values of this fine-tune, with or without Ray's `ray_` prefix."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            metric = sample.name.removeprefix("ray_")
            if metric.startswith("whisperft_") and sample.labels.get("finetune") == name:
                found[metric.removeprefix("whisperft_")] = float(sample.value)
    return found


def _scrape(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            return r.read().decode()
    except OSError:
        return ""


def test_a_ray_node_exports_the_trainers_gauges_to_prometheus(tmp_path: Path) -> None:
    gcs, metrics = free_port(), free_port()
    # 0.5 s instead of Ray's 10 s export interval, so a short run is seen training
    env = {
        **os.environ,
        "RAY_metrics_report_interval_ms": "500",
        "RAY_USAGE_STATS_ENABLED": "0",
        # token auth as KubeRay sets it up, with a token of this test's (not ~/.ray's)
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
    }
    # Ray's socket paths must fit AF_UNIX's 107 bytes: pytest's tmp_path is too deep
    ray_tmp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    head = subprocess.Popen(
        [
            sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block",
            f"--port={gcs}", f"--metrics-export-port={metrics}", "--num-cpus=3",
            "--node-ip-address=127.0.0.1", "--include-dashboard=false",
            "--disable-usage-stats", f"--temp-dir={ray_tmp}",
        ],
        stdout=(tmp_path / "head.log").open("w"), stderr=subprocess.STDOUT, env=env,
        start_new_session=True,
    )  # fmt: skip
    cfg = write_config(tmp_path, NAME, maxSteps=10, saveEvery=0)
    run: subprocess.Popen[bytes] | None = None
    seen: list[dict[str, float]] = []
    try:
        deadline = time.monotonic() + 120
        while "ray_" not in _scrape(metrics):  # Ray's own metrics: the agent is up
            assert head.poll() is None, (tmp_path / "head.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the Ray node never served /metrics"
            time.sleep(1)
        log_path = tmp_path / "train.log"
        with log_path.open("w") as log:
            run = subprocess.Popen(
                [sys.executable, "-m", "whisperft", "train", str(cfg), "--no-progress",
                 "--ray-address", f"127.0.0.1:{gcs}"],
                stdout=log, stderr=subprocess.STDOUT, env={**env, "PYTHONUNBUFFERED": "1"},
            )  # fmt: skip
        while run.poll() is None:
            got = _gauges(_scrape(metrics), NAME)
            if got:
                seen.append(got)
            time.sleep(0.3)
        assert run.returncode == 0, log_path.read_text()[-6000:]
    finally:
        if run is not None and run.poll() is None:
            run.kill()
        with contextlib.suppress(ProcessLookupError):  # its session may outlive `ray start`
            os.killpg(head.pid, signal.SIGTERM)
            try:
                head.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(head.pid, signal.SIGKILL)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    training = [s for s in seen if "loss" in s]
    assert training, f"no whisperft gauges tagged finetune={NAME!r} while it trained"
    assert {"step", "loss", "learning_rate", "samples_per_second"} <= set(training[-1])
    steps = [s["step"] for s in training]
    assert steps == sorted(steps) and steps[0] >= 1 and steps[-1] <= 10, steps
    assert all(s["loss"] > 0 and s["samples_per_second"] > 0 for s in training)
    # the test split's WER before training, set at step 0, is exported with them
    results = json.loads((tmp_path / "out" / NAME / "results.json").read_text())
    assert training[0]["test_wer"] == pytest.approx(results["test_wer_before"], abs=1e-6)
