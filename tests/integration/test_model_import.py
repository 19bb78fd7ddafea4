"""The real bundled faster-whisper exports (tiny.en, base) converted by our importer."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from whisperft.trainer.model import LoadedModel, resolve_model_dir
from whisperft.trainer.model.ct2_format import read_ct2_model
from whisperft.trainer.model.ct2_import import REPORT_FILE
from whisperft.trainer.model.sources import bundled_source

pytestmark = pytest.mark.integration

# (model fixture, bundled name, multilingual, <|endoftext|>, <|startoftranscript|>, <|notimestamps|>)
CASES = [
    ("tiny_en_model", "tiny.en", False, 50256, 50257, 50362),
    ("base_model", "base", True, 50257, 50258, 50363),
]


@pytest.mark.parametrize(("fixture", "name", "multilingual", "eot", "sot", "no_ts"), CASES)
def test_every_weight_filled_from_its_ct2_variable(
    request: pytest.FixtureRequest,
    fixture: str,
    name: str,
    multilingual: bool,
    eot: int,
    sot: int,
    no_ts: int,
) -> None:
    loaded: LoadedModel = request.getfixturevalue(fixture)
    report = json.loads((loaded.path / REPORT_FILE).read_text())
    assert report["source_dtypes"] == ["float16"]
    hf = {k: v.detach().numpy() for k, v in loaded.model.state_dict().items()}
    filled = {n for names in report["used"].values() for n in names}
    assert filled >= set(hf) - {"proj_out.weight"}
    assert "proj_out.weight (tied to embed_tokens)" in filled
    ct2 = read_ct2_model(bundled_source(name).model_parts)
    assert set(report["used"]) | set(report["explained"]) >= set(ct2.names)
    d = report["dims"]["d_model"]
    for ct2_name, hf_names in report["used"].items():
        source = ct2.get(ct2_name).astype(np.float32)
        assert list(source.shape) == report["ct2_shapes"][ct2_name]
        real = [n for n in hf_names if n in hf]
        if not real:
            continue
        if len(real) == 1 and hf[real[0]].shape == source.shape:
            np.testing.assert_array_equal(hf[real[0]], source, err_msg=ct2_name)
        elif ct2_name.endswith("/weight"):  # fused q|k|v or k|v, split by rows
            np.testing.assert_array_equal(
                np.concatenate([hf[n] for n in real]), source, err_msg=ct2_name
            )
        else:  # fused bias: q (self-attention only) and v kept, the key's slice explained
            assert any(k.startswith(ct2_name + "[") for k in report["explained"]), ct2_name
            np.testing.assert_array_equal(hf[real[-1]], source[-d:], err_msg=ct2_name)
            if len(real) == 2:
                np.testing.assert_array_equal(hf[real[0]], source[:d], err_msg=ct2_name)
    model = loaded.model
    assert model.proj_out.weight is model.model.decoder.embed_tokens.weight
    assert next(model.parameters()).dtype.is_floating_point and not model.training
    assert loaded.multilingual is multilingual


@pytest.mark.parametrize(("fixture", "name", "multilingual", "eot", "sot", "no_ts"), CASES)
def test_token_ids_generation_config_and_timestamps(
    request: pytest.FixtureRequest,
    fixture: str,
    name: str,
    multilingual: bool,
    eot: int,
    sot: int,
    no_ts: int,
) -> None:
    loaded: LoadedModel = request.getfixturevalue(fixture)
    gen, cfg, tok = loaded.model.generation_config, loaded.model.config, loaded.processor.tokenizer
    assert (gen.eos_token_id, gen.pad_token_id, gen.decoder_start_token_id) == (eot, eot, sot)
    assert (cfg.eos_token_id, cfg.decoder_start_token_id) == (eot, sot)
    assert gen.no_timestamps_token_id == no_ts and gen.is_multilingual is multilingual
    assert gen.begin_suppress_tokens == [220, eot] and sot in gen.suppress_tokens
    assert len(gen.alignment_heads) == 8 and gen.max_length == 448
    if multilingual:
        assert gen.lang_to_id["<|en|>"] == sot + 1 and gen.lang_to_id[
            "<|sw|>"
        ] == tok.convert_tokens_to_ids("<|sw|>")
        assert gen.task_to_id == {
            "transcribe": tok.convert_tokens_to_ids("<|transcribe|>"),
            "translate": sot + 100,
        }
        assert len(gen.lang_to_id) == 99
        # the tokenizer's own prefix must agree with generate's ids
        tok.set_prefix_tokens(language="sw", task="transcribe")
        assert tok.prefix_tokens == [
            sot,
            gen.lang_to_id["<|sw|>"],
            gen.task_to_id["transcribe"],
            no_ts,
        ]
        tok.set_prefix_tokens(language=None, task=None)
    else:
        assert not getattr(gen, "lang_to_id", None)
        assert (
            tok.convert_tokens_to_ids("<|en|>") == sot + 1
        )  # CT2's lang_ids say 50259: off by one
    # 1,501 timestamp tokens right after <|notimestamps|>, the last special token
    assert len(tok) == cfg.vocab_size == no_ts + 1 + 1501
    assert tok.all_special_ids[-1] == no_ts
    assert tok.convert_tokens_to_ids(["<|0.00|>", "<|30.00|>"]) == [no_ts + 1, no_ts + 1501]
    hello = tok(" hello", add_special_tokens=False).input_ids
    ids = [no_ts + 1, *hello, no_ts + 51]
    assert tok.decode(ids, decode_with_timestamps=True) == "<|0.00|> hello<|1.00|>"
    assert tok.decode(ids, skip_special_tokens=True) == " hello"
    assert loaded.processor.feature_extractor.feature_size == cfg.num_mel_bins == 80


@pytest.mark.parametrize("fixture", ["tiny_en_model", "base_model"])
def test_forward_pass_is_finite_deterministic_and_shaped(
    request: pytest.FixtureRequest, fixture: str
) -> None:
    import torch

    loaded: LoadedModel = request.getfixturevalue(fixture)
    rng = np.random.default_rng(0)
    t = np.arange(16000 * 3) / 16000
    audio = (0.3 * np.sin(2 * np.pi * 220 * t) + 0.01 * rng.standard_normal(t.size)).astype(
        np.float32
    )
    features = loaded.processor.feature_extractor(
        audio, sampling_rate=16000, return_tensors="pt"
    ).input_features
    gen = loaded.model.generation_config
    prompt = torch.tensor([[gen.decoder_start_token_id, gen.no_timestamps_token_id, 464, 3139]])
    with torch.inference_mode():
        first = loaded.model(input_features=features, decoder_input_ids=prompt).logits
        second = loaded.model(input_features=features, decoder_input_ids=prompt).logits
    # the vocabulary CTranslate2 declared for its output projection, not HF's own config
    ct2_shapes = json.loads((loaded.path / REPORT_FILE).read_text())["ct2_shapes"]
    vocab = ct2_shapes.get("decoder/projection/weight", ct2_shapes["decoder/embeddings/weight"])[0]
    assert first.shape == (1, 4, vocab)
    assert torch.isfinite(first).all()
    assert torch.equal(first, second)
    assert first.std() > 1.0  # real weights give peaked logits; an all-zero load would not


def test_cached_load_is_fast_and_stable(tiny_en_dir: Path) -> None:
    started = time.monotonic()
    assert resolve_model_dir("bundled:tiny.en") == tiny_en_dir
    assert time.monotonic() - started < 2.0
    files = {p.name for p in tiny_en_dir.iterdir()}
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json"} <= files
    assert {"tokenizer_config.json", "processor_config.json", REPORT_FILE} <= files
    assert not list(tiny_en_dir.parent.glob(".tmp-*"))


def test_float32_export_converts_to_the_same_weights_and_int8_is_refused(
    tiny_en_model: LoadedModel, tmp_path: Path
) -> None:
    """tiny.en re-written as a float32 (and an int8) CTranslate2 export, as the converter would."""
    import shutil

    import torch

    from whisperft.trainer.model import ModelError, load_model
    from whisperft.trainer.model.ct2_format import write_ct2_model

    source = bundled_source("tiny.en")
    ct2 = read_ct2_model(source.model_parts)
    as_f32 = {
        k: v.astype(np.float32) if v.dtype == np.float16 else v for k, v in ct2.variables.items()
    }
    for kind in ("f32", "int8"):
        export = tmp_path / kind
        export.mkdir()
        for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
            shutil.copy(source.directory / name, export / name)
        variables = dict(as_f32)
        if kind == "int8":
            quantized = "encoder/layer_0/ffn/linear_0/weight"
            variables[quantized] = np.ones(variables[quantized].shape, dtype=np.int8)
            variables[quantized + "_scale"] = np.ones(
                variables[quantized].shape[0], dtype=np.float32
            )
        write_ct2_model(export / "model.bin", variables, aliases=ct2.aliases)
    with pytest.raises(ModelError, match="unsupported, re-export in float16"):
        load_model(f"ct2:{tmp_path / 'int8'}", cache_dir=tmp_path / "cache")
    del ct2, as_f32
    loaded = load_model(f"ct2:{tmp_path / 'f32'}", cache_dir=tmp_path / "cache")
    report = json.loads((loaded.path / REPORT_FILE).read_text())
    assert report["source_dtypes"] == ["float32"] and loaded.path.name.startswith("f32-")
    reference = tiny_en_model.model.state_dict()
    for name, tensor in loaded.model.state_dict().items():
        assert torch.equal(tensor, reference[name]), name
