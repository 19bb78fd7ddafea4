"""Map a CTranslate2 ``WhisperSpec`` onto Hugging Face ``WhisperForConditionalGeneration`` names.

Every CTranslate2 variable is either copied into an HF weight or listed in
``explained`` with the reason it carries no weight; anything else is an error,
so a spec revision we do not understand can never be half-imported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from whisperft.trainer.model.ct2_format import CT2Model
from whisperft.trainer.model.errors import ModelError

# ctranslate2::ops::ActivationType; Whisper uses exact (erf) GELU.
_GELU = 3
# Decoder/encoder scalar flags whose value must match what HF Whisper computes.
_EXPECTED_FLAGS: dict[str, int] = {
    "pre_norm": 1,
    "alibi": 0,
    "scale_embeddings": 0,
    "start_from_zero_embedding": 0,
    "activation": _GELU,
}
_FLAG_WHY = "structural flag, checked equal to what HF Whisper computes"
_ALIGN_WHY = (
    "CTranslate2's generic alignment defaults; Whisper's real alignment heads come "
    "from config.json into generation_config.alignment_heads"
)
_KBIAS_WHY = (
    "key bias of the fused projection: HF k_proj has no bias, and a key bias adds the "
    "same q.b to every score of a query, which softmax cancels"
)


@dataclass(frozen=True)
class WhisperDims:
    """Sizes read from the CTranslate2 variables (not from any side file)."""

    vocab_size: int
    num_mel_bins: int
    d_model: int
    encoder_layers: int
    decoder_layers: int
    encoder_attention_heads: int
    decoder_attention_heads: int
    encoder_ffn_dim: int
    decoder_ffn_dim: int
    max_source_positions: int
    max_target_positions: int
    tied_projection: bool


@dataclass
class MappedWeights:
    state_dict: dict[str, np.ndarray]
    dims: WhisperDims
    # CT2 name -> HF names it filled, and CT2 name -> why it fills nothing.
    used: dict[str, list[str]] = field(default_factory=dict)
    explained: dict[str, str] = field(default_factory=dict)
    source_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)


def _count_layers(ct2: CT2Model, prefix: str) -> int:
    pattern = re.compile(rf"^{prefix}/layer_(\d+)/")
    indices = {int(m.group(1)) for name in ct2.names if (m := pattern.match(name))}
    if not indices or indices != set(range(len(indices))):
        raise ModelError(
            f"CTranslate2 model has no contiguous {prefix} layers (found {sorted(indices)})"
        )
    return len(indices)


class _Mapper:
    def __init__(self, ct2: CT2Model, dims: WhisperDims) -> None:
        self.ct2 = ct2
        self.out = MappedWeights(state_dict={}, dims=dims)

    def take(self, name: str) -> np.ndarray:
        value = self.ct2.get(name)
        self.out.source_shapes[name] = tuple(value.shape)
        self.out.used.setdefault(name, [])
        return value

    def put(self, hf_name: str, ct2_name: str, value: np.ndarray | None = None) -> None:
        array = self.take(ct2_name) if value is None else value
        if hf_name in self.out.state_dict:
            raise ModelError(f"internal mapping error: {hf_name} filled twice")
        self.out.state_dict[hf_name] = np.array(array, dtype=np.float32)  # writable copy
        self.out.used.setdefault(ct2_name, []).append(hf_name)

    def explain(self, ct2_name: str, why: str) -> None:
        if self.ct2.has(ct2_name):
            self.out.explained[ct2_name] = why

    def linear(self, hf: str, ct2: str) -> None:
        self.put(f"{hf}.weight", f"{ct2}/weight")
        self.put(f"{hf}.bias", f"{ct2}/bias")

    def norm(self, hf: str, ct2: str) -> None:
        self.put(f"{hf}.weight", f"{ct2}/gamma")
        self.put(f"{hf}.bias", f"{ct2}/beta")

    def split(self, ct2: str, parts: list[tuple[str, bool]], d_model: int) -> None:
        """Split a fused projection into equal row slices; (hf_name, keeps_bias) per slice."""
        weight = self.take(f"{ct2}/weight")
        bias = self.take(f"{ct2}/bias")
        n = len(parts)
        if weight.shape != (n * d_model, d_model) or bias.shape != (n * d_model,):
            raise ModelError(
                f"CTranslate2 {ct2} has shape {weight.shape}/{bias.shape}, expected a fused "
                f"{n} x {d_model} projection"
            )
        for index, (hf, keeps_bias) in enumerate(parts):
            rows = slice(index * d_model, (index + 1) * d_model)
            self.put(f"{hf}.weight", f"{ct2}/weight", weight[rows])
            if keeps_bias:
                self.put(f"{hf}.bias", f"{ct2}/bias", bias[rows])
            else:
                self.out.explained[f"{ct2}/bias[{index * d_model}:{(index + 1) * d_model}]"] = (
                    _KBIAS_WHY
                )

    def flags(self, prefix: str) -> None:
        for flag, expected in _EXPECTED_FLAGS.items():
            name = f"{prefix}/{flag}"
            if not self.ct2.has(name):
                continue
            value = self.ct2.scalar(name)
            if value != expected:
                raise ModelError(
                    f"CTranslate2 {name} = {value}, but HF Whisper needs {expected}; "
                    "this is not a standard Whisper model"
                )
            self.explain(name, _FLAG_WHY)


def map_whisper(ct2: CT2Model) -> MappedWeights:
    """CTranslate2 Whisper variables -> HF state dict (float32 numpy) plus the sizes."""
    if ct2.spec not in ("WhisperSpec", ""):
        raise ModelError(f"CTranslate2 model is a {ct2.spec!r}, not a WhisperSpec")
    emb = ct2.get("decoder/embeddings/weight")
    vocab_size, d_model = emb.shape
    conv1 = ct2.get("encoder/conv1/weight")
    dims = WhisperDims(
        vocab_size=int(vocab_size),
        num_mel_bins=int(conv1.shape[1]),
        d_model=int(d_model),
        encoder_layers=_count_layers(ct2, "encoder"),
        decoder_layers=_count_layers(ct2, "decoder"),
        encoder_attention_heads=ct2.scalar("encoder/num_heads"),
        decoder_attention_heads=ct2.scalar("decoder/num_heads"),
        encoder_ffn_dim=int(ct2.get("encoder/layer_0/ffn/linear_0/weight").shape[0]),
        decoder_ffn_dim=int(ct2.get("decoder/layer_0/ffn/linear_0/weight").shape[0]),
        max_source_positions=int(ct2.get("encoder/position_encodings/encodings").shape[0]),
        max_target_positions=int(ct2.get("decoder/position_encodings/encodings").shape[0]),
        tied_projection=_projection_is_tied(ct2),
    )
    m = _Mapper(ct2, dims)
    m.explain("encoder/num_heads", "read into config.encoder_attention_heads")
    m.explain("decoder/num_heads", "read into config.decoder_attention_heads")
    m.explain("decoder/alignment_heads", _ALIGN_WHY)
    m.explain("decoder/alignment_layer", _ALIGN_WHY)
    m.flags("encoder")
    m.flags("decoder")

    enc, dec = "model.encoder", "model.decoder"
    for i in (1, 2):
        m.linear(f"{enc}.conv{i}", f"encoder/conv{i}")
    m.put(f"{enc}.embed_positions.weight", "encoder/position_encodings/encodings")
    m.norm(f"{enc}.layer_norm", "encoder/layer_norm")
    for i in range(dims.encoder_layers):
        hf, ct = f"{enc}.layers.{i}", f"encoder/layer_{i}"
        att = f"{hf}.self_attn"
        m.norm(f"{hf}.self_attn_layer_norm", f"{ct}/self_attention/layer_norm")
        m.split(f"{ct}/self_attention/linear_0", _qkv(att), dims.d_model)
        m.linear(f"{att}.out_proj", f"{ct}/self_attention/linear_1")
        m.norm(f"{hf}.final_layer_norm", f"{ct}/ffn/layer_norm")
        m.linear(f"{hf}.fc1", f"{ct}/ffn/linear_0")
        m.linear(f"{hf}.fc2", f"{ct}/ffn/linear_1")

    m.put(f"{dec}.embed_tokens.weight", "decoder/embeddings/weight")
    m.put(f"{dec}.embed_positions.weight", "decoder/position_encodings/encodings")
    m.norm(f"{dec}.layer_norm", "decoder/layer_norm")
    if dims.tied_projection:
        if ct2.has("decoder/projection/weight"):
            m.take("decoder/projection/weight")
            m.out.used["decoder/projection/weight"].append("proj_out.weight (tied to embed_tokens)")
    else:
        m.put("proj_out.weight", "decoder/projection/weight")
    if ct2.has("decoder/projection/bias"):
        bias = ct2.get("decoder/projection/bias")
        if np.any(bias != 0):
            raise ModelError(
                "CTranslate2 decoder/projection/bias is non-zero; HF proj_out has no bias"
            )
        m.explain("decoder/projection/bias", "all zeros; HF proj_out has no bias")
    for i in range(dims.decoder_layers):
        hf, ct = f"{dec}.layers.{i}", f"decoder/layer_{i}"
        att, xatt = f"{hf}.self_attn", f"{hf}.encoder_attn"
        m.norm(f"{hf}.self_attn_layer_norm", f"{ct}/self_attention/layer_norm")
        m.split(f"{ct}/self_attention/linear_0", _qkv(att), dims.d_model)
        m.linear(f"{att}.out_proj", f"{ct}/self_attention/linear_1")
        m.norm(f"{hf}.encoder_attn_layer_norm", f"{ct}/attention/layer_norm")
        m.linear(f"{xatt}.q_proj", f"{ct}/attention/linear_0")
        m.split(f"{ct}/attention/linear_1", _qkv(xatt)[1:], dims.d_model)
        m.linear(f"{xatt}.out_proj", f"{ct}/attention/linear_2")
        m.norm(f"{hf}.final_layer_norm", f"{ct}/ffn/layer_norm")
        m.linear(f"{hf}.fc1", f"{ct}/ffn/linear_0")
        m.linear(f"{hf}.fc2", f"{ct}/ffn/linear_1")

    leftovers = sorted(set(ct2.names) - set(m.out.used) - set(m.out.explained))
    if leftovers:
        shown = ", ".join(leftovers[:20]) + (" ..." if len(leftovers) > 20 else "")
        raise ModelError(
            f"CTranslate2 Whisper import left {len(leftovers)} variable(s) unused and "
            f"unexplained (unsupported spec revision or variant?): {shown}"
        )
    return m.out


def _qkv(attention: str) -> list[tuple[str, bool]]:
    return [
        (f"{attention}.q_proj", True),
        (f"{attention}.k_proj", False),
        (f"{attention}.v_proj", True),
    ]


def _projection_is_tied(ct2: CT2Model) -> bool:
    name = "decoder/projection/weight"
    if not ct2.has(name):
        return True  # CTranslate2 always projects with the embedding when no projection is stored
    if ct2.aliases.get(name) == "decoder/embeddings/weight":
        return True
    return bool(np.array_equal(ct2.get(name), ct2.get("decoder/embeddings/weight")))
