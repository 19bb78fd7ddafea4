"""CTranslate2 WhisperSpec -> HF names, on a synthetic spec small enough to check by hand."""

from __future__ import annotations

import numpy as np
import pytest

from whisperft.trainer.model import ModelError
from whisperft.trainer.model.ct2_format import CT2Model
from whisperft.trainer.model.ct2_whisper import map_whisper

pytestmark = pytest.mark.unit

D, FFN, VOCAB, MELS = 8, 16, 20, 4


def synthetic_spec(layers: int = 2) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)

    def r(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(np.float16)

    v: dict[str, np.ndarray] = {
        "encoder/num_heads": np.array(2, dtype=np.int16),
        "decoder/num_heads": np.array(2, dtype=np.int16),
        "decoder/activation": np.array(3, dtype=np.int8),
        "decoder/alibi": np.array(0, dtype=np.int8),
        "decoder/pre_norm": np.array(1, dtype=np.int8),
        "decoder/scale_embeddings": np.array(0, dtype=np.int8),
        "decoder/start_from_zero_embedding": np.array(0, dtype=np.int8),
        "decoder/alignment_heads": np.array(1, dtype=np.int16),
        "decoder/alignment_layer": np.array(-1, dtype=np.int16),
        "encoder/conv1/weight": r(D, MELS, 3),
        "encoder/conv1/bias": r(D),
        "encoder/conv2/weight": r(D, D, 3),
        "encoder/conv2/bias": r(D),
        "encoder/position_encodings/encodings": r(6, D),
        "decoder/position_encodings/encodings": r(5, D),
        "decoder/embeddings/weight": r(VOCAB, D),
    }
    for side in ("encoder", "decoder"):
        v[f"{side}/layer_norm/gamma"], v[f"{side}/layer_norm/beta"] = r(D), r(D)
        for i in range(layers):
            p = f"{side}/layer_{i}"
            blocks = {"self_attention": [3 * D, D], "ffn": []}
            if side == "decoder":
                blocks["attention"] = []
            for block in blocks:
                v[f"{p}/{block}/layer_norm/gamma"], v[f"{p}/{block}/layer_norm/beta"] = r(D), r(D)
            v[f"{p}/self_attention/linear_0/weight"], v[f"{p}/self_attention/linear_0/bias"] = (
                r(3 * D, D),
                r(3 * D),
            )
            v[f"{p}/self_attention/linear_1/weight"], v[f"{p}/self_attention/linear_1/bias"] = (
                r(D, D),
                r(D),
            )
            v[f"{p}/ffn/linear_0/weight"], v[f"{p}/ffn/linear_0/bias"] = r(FFN, D), r(FFN)
            v[f"{p}/ffn/linear_1/weight"], v[f"{p}/ffn/linear_1/bias"] = r(D, FFN), r(D)
            if side == "decoder":
                v[f"{p}/attention/linear_0/weight"], v[f"{p}/attention/linear_0/bias"] = (
                    r(D, D),
                    r(D),
                )
                v[f"{p}/attention/linear_1/weight"], v[f"{p}/attention/linear_1/bias"] = (
                    r(2 * D, D),
                    r(2 * D),
                )
                v[f"{p}/attention/linear_2/weight"], v[f"{p}/attention/linear_2/bias"] = (
                    r(D, D),
                    r(D),
                )
    return v


def as_model(variables: dict[str, np.ndarray], aliases: dict[str, str] | None = None) -> CT2Model:
    dtypes = {k: a.dtype.name for k, a in variables.items()}
    return CT2Model("WhisperSpec", 3, 6, variables, dtypes, aliases or {})


def test_every_variable_lands_in_the_right_hf_weight() -> None:
    v = synthetic_spec()
    out = map_whisper(as_model(v, {"decoder/projection/weight": "decoder/embeddings/weight"}))
    sd, dims = out.state_dict, out.dims
    assert (dims.d_model, dims.encoder_layers, dims.decoder_layers, dims.vocab_size) == (
        D,
        2,
        2,
        VOCAB,
    )
    assert (
        dims.num_mel_bins,
        dims.encoder_ffn_dim,
        dims.max_source_positions,
        dims.max_target_positions,
    ) == (
        MELS,
        FFN,
        6,
        5,
    )
    assert dims.tied_projection and "proj_out.weight" not in sd
    assert all(a.dtype == np.float32 for a in sd.values())
    fused = v["decoder/layer_1/self_attention/linear_0/weight"].astype(np.float32)
    att = "model.decoder.layers.1.self_attn"
    np.testing.assert_array_equal(sd[f"{att}.q_proj.weight"], fused[:D])
    np.testing.assert_array_equal(sd[f"{att}.k_proj.weight"], fused[D : 2 * D])
    np.testing.assert_array_equal(sd[f"{att}.v_proj.weight"], fused[2 * D :])
    bias = v["decoder/layer_1/self_attention/linear_0/bias"].astype(np.float32)
    np.testing.assert_array_equal(sd[f"{att}.v_proj.bias"], bias[2 * D :])
    assert f"{att}.k_proj.bias" not in sd
    kv = v["decoder/layer_0/attention/linear_1/weight"].astype(np.float32)
    np.testing.assert_array_equal(sd["model.decoder.layers.0.encoder_attn.k_proj.weight"], kv[:D])
    np.testing.assert_array_equal(sd["model.decoder.layers.0.encoder_attn.v_proj.weight"], kv[D:])
    np.testing.assert_array_equal(
        sd["model.encoder.layers.0.final_layer_norm.weight"],
        v["encoder/layer_0/ffn/layer_norm/gamma"].astype(np.float32),
    )
    np.testing.assert_array_equal(
        sd["model.decoder.layers.1.encoder_attn_layer_norm.bias"],
        v["decoder/layer_1/attention/layer_norm/beta"].astype(np.float32),
    )
    # top level: 2 convs (4), 2 position tables, 2 final norms (4), embeddings = 11;
    # encoder layer: 2 norms (4) + q/k/v (5) + out (2) + fc1/fc2 (4) = 15; decoder adds cross-attention (9)
    assert len(sd) == 11 + 2 * 15 + 2 * 24
    assert set(out.used) | set(out.explained) >= set(v) | {"decoder/projection/weight"}


def test_untied_projection_is_copied() -> None:
    v = synthetic_spec(1)
    v["decoder/projection/weight"] = (v["decoder/embeddings/weight"] * 2).astype(np.float16)
    out = map_whisper(as_model(v))
    assert not out.dims.tied_projection
    np.testing.assert_array_equal(
        out.state_dict["proj_out.weight"], v["decoder/projection/weight"].astype(np.float32)
    )


def test_unknown_variables_are_listed_not_dropped() -> None:
    v = synthetic_spec(1)
    v["decoder/layer_0/self_attention/lora_a"] = np.zeros((2, D), dtype=np.float16)
    with pytest.raises(ModelError, match=r"left 1 variable\(s\) unused and unexplained.*lora_a"):
        map_whisper(as_model(v))


@pytest.mark.parametrize(
    ("name", "value", "match"),
    [
        ("decoder/pre_norm", 0, "pre_norm = 0, but HF Whisper needs 1"),
        ("decoder/activation", 1, "activation = 1"),
    ],
)
def test_structural_flags_must_match_whisper(name: str, value: int, match: str) -> None:
    v = synthetic_spec(1)
    v[name] = np.array(value, dtype=np.int8)
    with pytest.raises(ModelError, match=match):
        map_whisper(as_model(v))


def test_wrong_fused_shape_and_other_specs_are_refused() -> None:
    v = synthetic_spec(1)
    v["encoder/layer_0/self_attention/linear_0/weight"] = np.zeros((2 * D, D), dtype=np.float16)
    with pytest.raises(ModelError, match="expected a fused 3 x 8 projection"):
        map_whisper(as_model(v))
    other = CT2Model("TransformerSpec", 1, 6, {}, {}, {})
    with pytest.raises(ModelError, match="not a WhisperSpec"):
        map_whisper(other)
