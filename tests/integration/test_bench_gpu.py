"""bench/gpu.sh --dry-run: the GPU benchmark builds every configuration through the
trainer's Worker with tiny dimensions and runs one step and a short evaluation of
each on the CPU, writing the JSON a GPU run writes (numbers there, not here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
PEAK = 989.4  # as on an H200, so that MFU is computed on the CPU too


@pytest.fixture(scope="module")
def record(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("gpu-bench")
    out = tmp / "gpu.json"
    env = {**os.environ, "PYTHON": sys.executable, "TMPDIR": str(tmp)}
    cmd = ["bash", "bench/gpu.sh", "--dry-run", "--out", str(out), "--peak-tflops", str(PEAK)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data: dict[str, Any] = json.loads(out.read_text())
    return data


def test_the_record_says_where_and_how_it_was_measured(record: dict[str, Any]) -> None:
    assert record["dry_run"] is True
    m = record["machine"]
    assert m["torch"] and m["deepspeed"] and m["transformers"] and m["platform"]
    assert "cuda" in m and "gpu" in m and m["cpus"] >= 1
    assert m["peak_bf16_tflops"] == PEAK and m["peak_from"] == "--peak-tflops"
    assert len(record["commit"]) == 40 or record["commit"] == "unknown"
    assert record["command"].startswith("bench/gpu.sh --dry-run")
    assert record["when"].endswith("Z") and record["seconds"] > 0


def test_every_configuration_ran_through_the_trainer(record: dict[str, Any]) -> None:
    got = {(c["model"], c["stage"], c["ckpt"]) for c in record["cases"]}
    grid = {(m, s, ck) for m in ("small", "medium") for s in (0, 2) for ck in (False, True)}
    assert grid <= got and ("large-v3", 2, True) in got
    for c in record["cases"]:
        assert "error" not in c, c
        assert c["optimizer"] == "as the trainer" and c["timed_samples"] == c["batch"]
        assert c["samples_per_s"] > 0 and c["loss"] > 0
        assert c["label_tokens"]["max"] >= c["label_tokens"]["mean"] > 3
        mem = c["memory_mib"]
        assert mem["measured_peak"] is None and mem["error"] is None  # no CUDA here
        assert mem["predicted_peak"] > mem["predicted_activations"] > 0
        ev = c["eval"]
        assert ev["utterances"] > 0 and ev["utterances_per_s"] > 0
    large = next(c for c in record["cases"] if c["model"] == "large-v3")
    assert large["dims"]["n_mels"] == 128  # its own feature extractor and features


def test_flops_and_utilisation(record: dict[str, Any]) -> None:
    for c in record["cases"]:
        f = c["flops_per_sample"]
        assert (f["hardware"] > f["model"] > 0) if c["ckpt"] else (f["hardware"] == f["model"] > 0)
        sps = c["timed_samples"] / c["train_seconds"]
        assert c["mfu"] == pytest.approx(f["model"] * sps / (PEAK * 1e12), rel=0.01)
        assert c["hfu"] == pytest.approx(f["hardware"] * sps / (PEAK * 1e12), rel=0.01)
        full = c["flops_per_sample_full_size"]
        # whisper-small at 30 s is about 1.2 TFLOP per training sample, medium about 4
        lo, hi = {"small": (1.0e12, 1.5e12), "medium": (3.3e12, 5e12), "large-v3": (7e12, 1e13)}[
            c["model"]
        ]
        assert lo < full["model"] < hi, (c["label"], full)


def test_the_bundled_model_is_decoded_with_its_real_weights(record: dict[str, Any]) -> None:
    [tiny] = record["bundled_eval"]
    assert tiny["model"] == "bundled:tiny.en" and tiny["steps"] == 0
    assert tiny["eval"]["utterances"] > 0 and tiny["eval"]["wer"] < 1.0
