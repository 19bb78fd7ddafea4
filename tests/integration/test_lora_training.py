"""LoRA for real (issue 13): peft adapters trained by Ray Train + DeepSpeed on the
CPU, checkpointed small, resumed after a kill, exported merged.

Runs go through the `whisperft train` CLI as in test_train.py (its config and
CLI helpers), bundled tiny.en on the bundled corpus, 2 workers, ZeRO-2, the
frozen-encoder recipe of the demo (lower three encoder layers cached).
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

import pytest

from whisperft.trainer import checkpoint as ckpt

sys.path.insert(0, str(Path(__file__).parent))
from test_train import _train_workers, resumed_events, run_dir, state_of, train, write_config

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]

LORA = {"mode": "on", "rank": 16, "alpha": 32}


def _lora_config(tmp: Path, name: str, **training: Any) -> Path:
    return write_config(tmp, name, lora=LORA, learningRate=1e-3, **training)


def _bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def test_adapters_alone_make_the_checkpointed_state_and_nothing_else_loads(
    tiny_en_dir: Path,
) -> None:
    """No Ray: the training model's state_dict (what DeepSpeed saves) is the adapters
    only, the tied output projection included; every rank starts from the same
    adapters; a full model's weights are refused as a LoRA checkpoint."""
    import torch
    from trainconfig_factory import train_config
    from transformers import WhisperForConditionalGeneration

    from whisperft.trainer import lora
    from whisperft.trainer.model_prep import prepare_for_training

    cfg = train_config(
        training={"maxSteps": 1, "freezeEncoder": True, "trainTopEncoderLayers": 1, "lora": LORA}
    )

    def adapted() -> Any:
        m = WhisperForConditionalGeneration.from_pretrained(tiny_en_dir)
        counts = prepare_for_training(m, cfg)
        assert counts["trainable"] == sum(
            p.numel() for n, p in m.named_parameters() if ".lora_" in n
        )
        return m

    a, b = adapted(), adapted()
    lora.checkpoint_only_trainable(a)
    saved = a.state_dict()
    assert saved and all(".lora_" in k for k in saved)
    assert not any(k.startswith(("proj_out", "model.encoder.layers.2.")) for k in saved)
    assert all(torch.equal(saved[k], v) for k, v in b.state_dict().items() if k in saved)
    lora.load_trainable(saved, b)
    full = WhisperForConditionalGeneration.from_pretrained(tiny_en_dir).state_dict()
    with pytest.raises(RuntimeError, match="does not hold this run's LoRA adapters"):
        lora.load_trainable(full, b)


def test_lora_trains_small_checkpoints_and_exports_the_merged_model(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file

    from whisperft.trainer import lora
    from whisperft.trainer.data.features import FeatureSet
    from whisperft.trainer.evaluation import decode_features, score
    from whisperft.trainer.model import load_model, resolve_model_dir

    proc = train(_lora_config(tmp_path, "lora", maxSteps=4, saveEvery=2))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "out" / "lora"
    results = json.loads((out / "results.json").read_text())

    # Trained: the held-out test WER falls.
    assert results["test_wer_before"] > results["test_wer_after"], results

    # Recorded: LoRA, its rank, what trained and the adapter's size.
    info = results["lora"]
    adapter = out / lora.ADAPTER_DIR
    weights = load_file(adapter / lora.ADAPTER_WEIGHTS)
    assert info["rank"] == 16 and info["alpha"] == 32 and info["adapterDir"] == str(adapter)
    assert info["trainableParameters"] == sum(w.numel() for w in weights.values())
    assert info["adapterBytes"] == (adapter / lora.ADAPTER_WEIGHTS).stat().st_size
    model_bytes = (out / "model" / "model.safetensors").stat().st_size
    assert info["adapterBytes"] < 0.03 * model_bytes

    # Checkpointed small: the adapters and their optimizer state, not the frozen base.
    last = Path(results["checkpoints"][0])
    assert ckpt.step_of(last) == 4 and ckpt.problem(last, verify_content=True) is None
    assert _bytes(last) < 0.15 * model_bytes, (_bytes(last), model_bytes)
    states = torch.load(last / ckpt.DS_TAG / "mp_rank_00_model_states.pt", weights_only=True)
    assert states["module"] and all(".lora_" in k for k in states["module"])

    # The frozen encoder prefix has no adapters (its cached outputs stay valid);
    # the top encoder layer and the decoder do.
    base_dir = resolve_model_dir("bundled:tiny.en")
    adapted_model = lora.load_adapted(base_dir, adapter)
    adapted = {n for n, mod in adapted_model.named_modules() if hasattr(mod, "lora_A")}
    assert len(adapted) == info["adaptedLayers"] == 4 * 10 + 6  # 4 decoder layers, 1 encoder
    assert not [n for n in adapted if n.startswith("model.encoder.") and ".layers.3." not in n]
    assert "model.decoder.layers.0.encoder_attn.q_proj" in adapted

    # Exported merged: plain Whisper weights, the base's names, the frozen prefix untouched.
    merged = load_model(str(out / "model"))
    base = load_model(str(base_dir))
    merged_sd, base_sd = merged.model.state_dict(), base.model.state_dict()
    assert set(merged_sd) == set(base_sd)
    assert torch.equal(
        merged_sd["model.encoder.layers.2.fc1.weight"], base_sd["model.encoder.layers.2.fc1.weight"]
    )
    assert not torch.equal(
        merged_sd["model.decoder.layers.0.fc1.weight"], base_sd["model.decoder.layers.0.fc1.weight"]
    )

    # The merged model computes what the adapters on the base compute, and scores the
    # same on the held-out split as the trainer's own evaluation of the adapted model.
    test = FeatureSet.open(Path(results["data"]["test"]["path"]))
    x = torch.from_numpy(test.features[:2].astype("float32"))
    dec = torch.tensor([row[:6] for row in test.labels[:2]])
    with torch.no_grad():
        a = adapted_model(input_features=x, decoder_input_ids=dec).logits
        m = merged.model(input_features=x, decoder_input_ids=dec).logits
    assert torch.allclose(a, m, atol=1e-3), float((a - m).abs().max())
    scores = []
    for model in (merged.model, adapted_model):
        texts, capped = decode_features(
            model,
            merged.processor,
            test.features,
            list(range(len(test))),
            language="en",
            task="transcribe",
            batch_size=8,
            max_new_tokens=48,
        )
        ids = [m_.get("id", str(i)) for i, m_ in enumerate(test.meta)]
        scores.append(score(test.sentences, texts, ids, "en", capped).wer)
    assert scores[0] == scores[1] == pytest.approx(results["test_wer_after"])


def test_killed_lora_run_resumes_its_adapters_from_the_last_checkpoint(tmp_path: Path) -> None:
    """The resume paths of a full fine-tune: a worker SIGKILLed after checkpoint 2
    (Ray Train restarts the group, which resumes from it with the adapters'
    optimizer state as saved), then a new run of the same name (the operator's
    next attempt) that continues from the last checkpoint."""
    cfg = _lora_config(tmp_path, "lk", maxSteps=4, saveEvery=2)
    rd = run_dir(tmp_path, "lk")
    cmd = [sys.executable, "-m", "whisperft", "train", str(cfg), "--no-progress"]
    log_path = tmp_path / "lk.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}
        )
        killed = False
        saved_fp: float | None = None
        deadline = time.monotonic() + 600
        try:
            while time.monotonic() < deadline and proc.poll() is None:
                good = [p for p in ckpt.list_checkpoints(rd) if ckpt.problem(p) is None]
                if good and ckpt.step_of(good[0]) == 2:
                    workers = _train_workers()
                    if workers:
                        saved_fp = json.loads((good[0] / ckpt.STATE_FILE).read_text())[
                            "optim_fingerprint"
                        ]
                        os.kill(workers[-1].pid, signal.SIGKILL)
                        killed = True
                        break
                time.sleep(0.2)
            assert killed, "never saw checkpoint 2 with live workers"
            assert proc.wait(timeout=700) == 0, log_path.read_text()[-5000:]
        finally:
            if proc.poll() is None:
                proc.kill()
    state = state_of(rd)
    assert state.step == 4
    events = resumed_events(state)
    assert len(events) == 1 and events[0]["step"] >= 2
    if events[0]["step"] == 2:
        assert events[0]["optim_fingerprint"] == pytest.approx(saved_fp, rel=1e-9)
    results = json.loads((tmp_path / "out" / "lk" / "results.json").read_text())
    assert results["lora"]["rank"] == 16 and results["steps"] == 4
    assert (tmp_path / "out" / "lk" / "adapter" / "adapter_model.safetensors").is_file()

    at_4 = json.loads((rd / ckpt.dir_name(4) / ckpt.STATE_FILE).read_text())["optim_fingerprint"]
    again = train(_lora_config(tmp_path, "lk", maxSteps=6, saveEvery=2))
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resumed from checkpoint_step_00000004 at step 4/6" in again.stdout + again.stderr
    last = resumed_events(state := state_of(rd))[-1]
    assert state.step == 6 and last["step"] == 4
    assert last["optim_fingerprint"] == pytest.approx(at_4, rel=1e-9) and at_4 != 0.0
