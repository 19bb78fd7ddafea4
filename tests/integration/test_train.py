"""The trainer for real: local Ray, DeepSpeed on the CPU accelerator, converted Whisper tiny.en.

Each run goes through the `whisperft train` CLI in a subprocess, as a user or
the RayJob entrypoint would, so stopping a run is a real SIGKILL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from whisperft.trainer import checkpoint as ckpt

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]


def write_config(tmp: Path, name: str, **training: Any) -> Path:
    """A WhisperFineTune file, the same format `kubectl apply` takes."""
    stage = training.pop("stage", 2)
    model = training.pop("model", {"name": "bundled:tiny.en", "language": "en"})
    dataset = training.pop("dataset", {"path": "bundled:en"})
    resources = training.pop("resources", {"workers": 2})  # two: a real local Ray cluster
    spec = {
        "model": model,
        "dataset": {"maxTrainExamples": 32, "maxEvalExamples": 8, **dataset},
        "training": {
            "maxSteps": 4,
            "batchSizePerWorker": 4,
            "learningRate": 1e-4,
            "warmupSteps": 1,
            "freezeEncoder": True,
            "trainTopEncoderLayers": 1,
            "saveEvery": 2,
            "keepCheckpoints": 5,
            "evalBatchSize": 8,
            "maxNewTokens": 48,
            "logEvery": 1,
            "deepspeed": {"mode": "explicit", "stage": stage},
            **training,
        },
        "resources": resources,
        "checkpoints": {"size": "1Gi"},
        "output": {"location": str(tmp / "out" / name)},
    }
    path = tmp / f"{name}.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "whisperft.io/v1alpha1",
                "kind": "WhisperFineTune",
                "metadata": {"name": name},
                "spec": spec,
            }
        )
    )
    return path


def run_dir(tmp: Path, name: str) -> Path:
    """Ray Train's run directory of a local run: <output>/checkpoints/<name>."""
    return tmp / "out" / name / "checkpoints" / name


def train(config: Path, *extra: str, timeout: float = 800) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "whisperft", "train", str(config), "--no-progress", *extra]
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    if proc.returncode != 0:
        print(proc.stdout[-5000:], proc.stderr[-8000:])
    return proc


def state_of(run_dir: Path) -> ckpt.TrainerState:
    found = ckpt.latest_good(run_dir)
    assert found is not None, f"no complete checkpoint in {run_dir}"
    return found[1]


def resumed_events(state: ckpt.TrainerState) -> list[dict[str, Any]]:
    return [h for h in state.history if h.get("event") == "resumed"]


def test_short_run_zero3_end_to_end(tmp_path: Path) -> None:
    """ZeRO-3 covers the hard case: eval with generate needs consolidated weights.

    Gradient checkpointing and SpecAugment are on, which act only while the
    model is in train mode (from_pretrained and evaluation leave it in eval);
    gradient accumulation is 2 and the eval split is evaluated mid-run, so the
    best step has a checkpoint. Batches are cut to their clips
    (audioContextMarginSeconds): the positions come from a module ZeRO-3 gathers.
    """
    cfg = write_config(
        tmp_path,
        "z3",
        stage=3,
        freezeEncoder=False,
        trainTopEncoderLayers=0,
        maxSteps=2,
        saveEvery=1,
        gradientCheckpointing=True,
        specAugment=True,
        gradAccum=2,
        evalEvery=1,
        audioContextMarginSeconds=1.0,
    )
    proc = train(cfg)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "out" / "z3"
    results = json.loads((out / "results.json").read_text())
    assert results["steps"] == 2
    assert 0.0 <= results["test_wer_before"] < 1.0 and 0.0 <= results["test_wer_after"] < 1.0
    assert results["test_cer_before"] is None  # English is scored by words only
    assert results["data"]["train"]["n"] == 32 and results["data"]["test"]["n"] == 8
    assert results["job_wall_seconds"] > 0 and results["peak_rss_mb_rank0"] > 100
    assert results["config"]["runtime"]["deepspeed"]["stage"] == 3
    # precision auto on a CPU: bf16 autocast where the CPU has bf16 hardware, else fp32
    from whisperft.trainer.precision import cpu_fast_bf16

    assert results["precision"] == ("amp-bf16" if cpu_fast_bf16() else "fp32")
    assert (out / "training.png").stat().st_size > 10_000
    steps = [ckpt.step_of(Path(p)) for p in results["checkpoints"]]
    assert steps == [2, 1]
    assert [h["step"] for h in results["history"] if h.get("split") == "eval"] == [1, 2]
    assert results["best_step"] in (1, 2)
    assert ckpt.step_of(Path(results["best_checkpoint"])) == results["best_step"]
    assert all(ckpt.problem(Path(p)) is None for p in results["checkpoints"])
    # the final model is complete HF Whisper that loads and transcribes
    from whisperft.trainer.data import read_split
    from whisperft.trainer.model import load_model
    from whisperft.trainer.transcribe import transcribe

    loaded = load_model(str(out / "model"))
    data = read_split("commonvoice", "bundled:en", "test", limit=2)
    texts = transcribe(
        loaded.model,
        loaded.processor,
        [e.audio for e in data.examples],
        language=None,
        batch_size=2,
    ).texts
    assert len(texts) == 2 and all(t.strip() for t in texts)
    assert "WER" in proc.stdout and "-> " in proc.stdout
    said = [line for line in proc.stdout.splitlines() if "[whisperft]" in line]
    assert said and len(said) == len(set(said)), [x for x in said if said.count(x) > 1][:5]
    logged = [h for h in results["history"] if "loss" in h]
    assert [h["step"] for h in logged] == [1, 2]
    assert all(h["train_mode"] is True for h in logged)
    # TensorBoard events next to the checkpoints, the same numbers as the history
    from tb_events import scalars

    tb = scalars(run_dir(tmp_path, "z3") / "tensorboard")
    assert [s for s, _ in tb["loss"]] == [1, 2]
    assert [round(v, 4) for _, v in tb["loss"]] == [round(h["loss"], 4) for h in logged]
    assert [s for s, _ in tb["eval_wer"]][:2] == [1, 2] and tb["test_wer"][0][0] == 0
    assert {"learning_rate", "samples_per_second"} <= set(tb)
    # the saved model is the trained one, not the starting weights
    import torch

    base = load_model("bundled:tiny.en").model.state_dict()
    tuned = loaded.model.state_dict()
    moved = [k for k in base if not torch.equal(base[k], tuned[k])]
    assert any(k.startswith("model.decoder.") for k in moved)
    assert any(k.startswith("model.encoder.layers.0.") for k in moved)  # encoder not frozen


def test_restart_resumes_at_saved_step_with_same_optimizer_state(tmp_path: Path) -> None:
    """The operator's retry: a brand-new run on the same storage path and name.

    The newest checkpoint is then truncated, so the new run must fall back to
    the previous complete one, with a warning, and still finish. In fp32, so
    that path runs on a CPU whose auto precision is bf16 autocast too.
    """
    first = train(write_config(tmp_path, "rs", maxSteps=4, saveEvery=2, precision="fp32"))
    assert first.returncode == 0
    rd = run_dir(tmp_path, "rs")
    saved = {
        ckpt.step_of(p): json.loads((p / ckpt.STATE_FILE).read_text())
        for p in ckpt.list_checkpoints(rd)
    }
    assert sorted(saved) == [2, 4]
    # damage the newest checkpoint: a truncated optimizer shard
    shard = next((rd / ckpt.dir_name(4) / ckpt.DS_TAG).glob("*optim_states.pt"))
    shard.write_bytes(shard.read_bytes()[:100])
    second = train(write_config(tmp_path, "rs", maxSteps=6, saveEvery=2, precision="fp32"))
    assert second.returncode == 0
    assert "skipping checkpoint" in second.stdout + second.stderr
    state = state_of(rd)
    assert state.step == 6
    events = resumed_events(state)
    assert [e["step"] for e in events] == [2]
    assert events[0]["optim_fingerprint"] == pytest.approx(saved[2]["optim_fingerprint"], rel=1e-9)
    assert saved[2]["optim_fingerprint"] != 0.0
    # A finished run started again (a retry after KubeRay reported a failure late)
    # resumes at its last step, trains nothing and still reports its results.
    third = train(write_config(tmp_path, "rs", maxSteps=6, saveEvery=2, precision="fp32"))
    assert third.returncode == 0
    assert [e["step"] for e in resumed_events(state_of(rd))] == [2]
    assert "resumed from checkpoint_step_00000006 at step 6/6" in third.stdout + third.stderr
    final = json.loads((tmp_path / "out" / "rs" / "results.json").read_text())
    assert final["steps"] == 6 and final["precision"] == "fp32"


def _train_workers() -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if any("RayTrainWorker" in part for part in (p.info["cmdline"] or [])):
                found.append(p)
        except psutil.Error:
            continue
    return found


def test_killed_worker_resumes_from_last_checkpoint(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, "ft", maxSteps=8, saveEvery=2, keepCheckpoints=10)
    rd = run_dir(tmp_path, "ft")
    cmd = [sys.executable, "-m", "whisperft", "train", str(cfg), "--no-progress"]
    log = (tmp_path / "ft.log").open("w")
    proc = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    killed_after: int | None = None
    deadline = time.monotonic() + 600
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            good = [p for p in ckpt.list_checkpoints(rd) if ckpt.problem(p) is None]
            if good and ckpt.step_of(good[0]) == 4:
                workers = _train_workers()
                if workers:
                    killed_after = 4
                    os.kill(workers[-1].pid, signal.SIGKILL)
                    break
            time.sleep(0.2)
        assert killed_after is not None, "never saw checkpoint 4 with live workers"
        assert proc.wait(timeout=700) == 0, (tmp_path / "ft.log").read_text()[-5000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    state = state_of(rd)
    assert state.step == 8
    events = resumed_events(state)
    assert len(events) == 1
    # killed just after checkpoint 4 was complete: resuming from it (or a later
    # one) redoes fewer steps than the checkpoint interval
    assert events[0]["step"] >= killed_after


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("spec.dataset.path=/nonexistent/corpus", "/nonexistent/corpus"),
        ("spec.model.name=ct2:/nonexistent/export", "/nonexistent/export"),
        (
            "spec.training.batchSizePerWorker=64",
            "cannot fill one batch of 64 on each of 2 workers",
        ),
    ],
)
def test_bad_model_or_data_is_one_clear_error(tmp_path: Path, override: str, named: str) -> None:
    """Found by the driver before Ray starts: exit 2, the problem named, no traceback."""
    proc = train(write_config(tmp_path, "bad"), "--set", override, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and named in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not run_dir(tmp_path, "bad").exists()


def test_model_known_only_by_its_files_is_checked_first(tmp_path: Path) -> None:
    """A path (not a name the operator knows) that turns out English-only: exit 2
    naming the field, before any feature is computed or Ray started."""
    from whisperft.trainer.model import resolve_model_dir

    local = resolve_model_dir("bundled:tiny.en")  # a plain HF directory now
    cfg = write_config(tmp_path, "path", model={"name": str(local), "language": "sw"})
    proc = train(cfg, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "spec.model.language" in proc.stderr and "English-only" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not run_dir(tmp_path, "path").exists()


def test_language_without_a_token_trains_under_a_related_one(tmp_path: Path) -> None:
    """Congo Swahili (swc) has no Whisper token: trained and evaluated under sw,
    recorded in the results and in the exported model's generation config."""
    cfg = write_config(
        tmp_path,
        "swc",
        model={"name": "bundled:base", "language": "swc", "trainAsLanguage": "sw"},
        dataset={"path": "bundled:sw", "maxTrainExamples": 16, "maxEvalExamples": 4},
        maxSteps=2,
        saveEvery=0,
        keepCheckpoints=1,
    )
    proc = train(cfg)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "out" / "swc"
    results = json.loads((out / "results.json").read_text())
    assert (results["language"], results["language_token"]) == ("swc", "sw")
    gen = json.loads((out / "model" / "generation_config.json").read_text())
    assert gen["language"] == "sw" and gen["whisperft_language"] == "swc"
    assert results["test_wer_before"] is not None and results["test_wer_after"] is not None
    # `whisperft evaluate` on the exported model decodes under sw by itself.
    scored = tmp_path / "eval.json"
    ev = subprocess.run(
        [
            sys.executable,
            "-m",
            "whisperft",
            "evaluate",
            "--model",
            str(out / "model"),
            "--data",
            "bundled:sw",
            "--limit",
            "2",
            "--json",
            str(scored),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ev.returncode == 0, ev.stderr[-2000:]
    e = json.loads(scored.read_text())
    assert (e["language"], e["language_token"]) == ("swc", "sw")
    # Without trainAsLanguage the same file is refused before anything runs.
    refused = train(cfg, "--set", "spec.model.trainAsLanguage=null", timeout=120)
    assert refused.returncode == 2
    assert "spec.model.language" in refused.stderr and "trainAsLanguage" in refused.stderr


def test_a_changed_learning_rate_takes_effect_after_the_resume(tmp_path: Path) -> None:
    """The operator applies a spec edit as a new attempt that resumes the run: the
    restored optimizer and scheduler must not bring the old learning rate back."""
    first = train(
        write_config(tmp_path, "lr", maxSteps=2, saveEvery=1, lrSchedule="constant", warmupSteps=0)
    )
    assert first.returncode == 0
    second = train(
        write_config(
            tmp_path,
            "lr",
            maxSteps=4,
            saveEvery=1,
            lrSchedule="constant",
            warmupSteps=0,
            learningRate=5e-4,
            weightDecay=0.01,
        )
    )
    assert second.returncode == 0, second.stderr[-3000:]
    state = state_of(run_dir(tmp_path, "lr"))
    lrs = {h["step"]: h["lr"] for h in state.history if "lr" in h}
    assert lrs[1] == lrs[2] == pytest.approx(1e-4)
    assert lrs[3] == lrs[4] == pytest.approx(5e-4), lrs
    assert [e["step"] for e in resumed_events(state)] == [2]
