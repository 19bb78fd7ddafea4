"""`whisperft export --format ct2`: CTranslate2's converter on the bundled model, the
files faster-whisper reads, and the CTranslate2 runtime scoring the test split
within one WER point of the Hugging Face model it came from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from whisperft.cli import main

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LIMIT = "40"  # utterances: enough for a 1-point comparison in CI time


def _evaluate(tmp_path: Path, name: str, *args: str) -> dict[str, object]:
    out = tmp_path / f"{name}.json"
    assert (
        main(["evaluate", *args, "--data", "bundled:en", "--limit", LIMIT, "--json", str(out)]) == 0
    )
    return json.loads(out.read_text())


def test_ct2_export_scores_like_the_hf_model(tmp_path: Path) -> None:
    ct2 = tmp_path / "ct2"
    assert main(["export", "bundled:tiny.en", "--quantization", "float16", "--out", str(ct2)]) == 0
    for name in ("model.bin", "config.json", "tokenizer.json", "preprocessor_config.json"):
        assert (ct2 / name).is_file(), name
    report = json.loads((ct2 / "whisperft_export.json").read_text())
    # float16 weights: about half the fp32 safetensors.
    assert report["model_bytes"] < 0.6 * report["source_bytes"]
    # The converter's fidelity: like with like, so the HF model decodes in fp32 as
    # CTranslate2 computes its float16 export on a CPU (not bf16 autocast).
    hf = _evaluate(tmp_path, "hf", "--model", "bundled:tiny.en", "--precision", "fp32")
    assert hf["precision"] == "fp32"
    c2 = _evaluate(tmp_path, "ct2", "--engine", "ct2", "--model", str(ct2))
    assert c2["engine"] == "ct2" and c2["n_utterances"] == hf["n_utterances"] == int(LIMIT)
    assert abs(float(c2["wer"]) - float(hf["wer"])) <= 0.01, (hf["wer"], c2["wer"])  # type: ignore[arg-type]


def test_export_refuses_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(tmp_path / "nothing")]) == 2
    assert "nothing" in capsys.readouterr().err
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "x").write_text("keep me")
    assert main(["export", "bundled:tiny.en", "--out", str(taken)]) == 2
    assert "not empty" in capsys.readouterr().err and (taken / "x").read_text() == "keep me"
    assert main(["evaluate", "--engine", "ct2", "--model", str(taken), "--data", "bundled:en"]) == 2
    assert "not a CTranslate2 Whisper export" in capsys.readouterr().err
