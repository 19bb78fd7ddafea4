"""Which weights a run exports: the best evaluated checkpoint's, scored on the
held-out split, with a CTranslate2 copy when spec.output.formats asks for one.

Real local Ray and DeepSpeed (CPU), bundled tiny.en, through `whisperft train`.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from whisperft.trainer import checkpoint as ckpt

sys.path.insert(0, str(Path(__file__).parent))
from test_train import run_dir, train, write_config

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1500)]


def _make_step_the_best(run: Path, final_step: int, best_step: int) -> None:
    """Rewrite the final checkpoint's state (and its manifest entry, so it stays
    valid) as if an earlier evaluation had been the best one."""
    final = run / ckpt.dir_name(final_step)
    state_file = final / ckpt.STATE_FILE
    state = json.loads(state_file.read_text())
    state["best_step"], state["best_wer"] = best_step, -1.0  # below any real WER
    state_file.write_text(json.dumps(state))
    manifest_file = final / "manifest_rank0.json"
    manifest = json.loads(manifest_file.read_text())
    data = state_file.read_bytes()
    manifest["files"][ckpt.STATE_FILE] = {
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    manifest_file.write_text(json.dumps(manifest))
    assert ckpt.problem(final, verify_content=True) is None


def _tensor(path: Path, key: str) -> object:
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))[key]


def test_best_checkpoint_is_exported_scored_and_converted(tmp_path: Path) -> None:
    import torch

    config = write_config(tmp_path, "bx", maxSteps=4, saveEvery=2, evalEvery=2)
    doc = yaml.safe_load(config.read_text())
    doc["spec"]["output"].update({"formats": ["hf", "ct2"], "ct2Quantization": "int8"})
    config.write_text(yaml.safe_dump(doc))
    first = train(config)
    assert first.returncode == 0, first.stderr[-3000:]
    out = tmp_path / "out" / "bx"
    results = json.loads((out / "results.json").read_text())
    exported = results["exported"]
    assert exported["step"] == results["best_step"] and exported["selected"] == "bestEval"
    assert ckpt.step_of(Path(exported["checkpoint"])) == results["best_step"]
    assert exported["formats"] == ["hf", "ct2"]
    assert results["ct2"]["quantization"] == "int8" and (out / "ct2" / "model.bin").is_file()
    assert results["ct2"]["model_bytes"] < results["ct2"]["source_bytes"] / 2
    test_points = [h for h in results["history"] if h.get("split") == "test"]
    assert [h["step"] for h in test_points] == [0, exported["step"]]

    # The ct2 export is the same model: it transcribes the test split like model/ does.
    ev = subprocess.run(
        [sys.executable, "-m", "whisperft", "evaluate", "--engine", "ct2", "--model",
         str(out / "ct2"), "--data", "bundled:en", "--limit", "8",
         "--json", str(tmp_path / "ct2.json")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert ev.returncode == 0, ev.stderr[-2000:]
    ct2_wer = json.loads((tmp_path / "ct2.json").read_text())["wer"]
    assert abs(ct2_wer - results["test_wer_after"]) <= 0.05

    # Now the step-2 evaluation was the best: the re-run (a finished run started
    # again, as after a late failure report) must export step 2's weights, not step 4's.
    run = run_dir(tmp_path, "bx")
    assert sorted(ckpt.step_of(p) for p in ckpt.list_checkpoints(run)) == [2, 4]
    key = "model.decoder.layers.0.fc1.weight"
    step4 = _tensor(out / "model", key)
    _make_step_the_best(run, 4, 2)
    second = train(config)
    assert second.returncode == 0, second.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["exported"]["step"] == 2 and results["exported"]["selected"] == "bestEval"
    assert ckpt.step_of(Path(results["exported"]["checkpoint"])) == 2
    assert "exporting step 2 (best eval WER)" in second.stdout + second.stderr
    step2 = _tensor(out / "model", key)
    assert not torch.equal(step2, step4)
    # model/ holds exactly the step-2 checkpoint's weights (DeepSpeed's module state).
    module = torch.load(
        run / ckpt.dir_name(2) / ckpt.DS_TAG / "mp_rank_00_model_states.pt",
        map_location="cpu",
        weights_only=False,
    )["module"]
    saved = next(v for k, v in module.items() if k.endswith(key))
    assert torch.equal(saved.float(), step2)
    # ...and results.json scores that model: whisperft evaluate on model/ agrees.
    ev = subprocess.run(
        [sys.executable, "-m", "whisperft", "evaluate", "--model", str(out / "model"),
         "--data", "bundled:en", "--limit", "8", "--json", str(tmp_path / "hf.json")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert ev.returncode == 0, ev.stderr[-2000:]
    hf_wer = json.loads((tmp_path / "hf.json").read_text())["wer"]
    assert hf_wer == pytest.approx(results["test_wer_after"], abs=0.02)
