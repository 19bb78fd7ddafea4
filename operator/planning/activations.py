"""Activation memory of one Whisper micro-batch, per component, as the planner
predicts it: the bytes autograd keeps from the forward to the backward, and the
largest moment of the backward above them.

Derived from Hugging Face's Whisper layers op by op (what each op saves for its
backward) and calibrated against ``bench/planner.py``, which measures the real
allocations on the CPU (torch profiler memory events; errors in
``bench/results/planner.json``). Sizes below are in elements per micro-batch;
``B`` clips, ``s`` = 1500 encoder positions, ``T`` label tokens, ``h`` = d_model,
``f`` = 4h (MLP), ``H`` heads, ``V`` vocabulary, ``r`` LoRA rank.

Full fine-tuning, one encoder layer keeps ``B·s·(9h + 2f) = 17·B·s·h``: the
layer input (saved by the first layer norm), the norm's output (the q/k/v
projections' input, one tensor), q, k, v and the attention output (SDPA's
backward inputs), the out-projection's input (a contiguous copy), the residual
sum (the second norm's input), its output (fc1's input), fc1's output (GELU's
input) and GELU's output (fc2's input); plus fp32 row statistics (SDPA's
log-sum-exp, ``B·H·s``, and each norm's mean and rstd). Eager attention keeps
the ``B·H·s²`` softmax probabilities instead of the SDPA output. A decoder
layer keeps ``B·T·(14h + 2f)`` (self-attention, cross-attention, MLP) and the
cross-attention's key and value of the encoder output, ``2·B·s·h`` - which do
not shrink with short labels. The conv stem keeps ``5·B·s·h`` (both conv
outputs, the first GELU's output at 2s positions) and the mel input
(``B·n_mels·2s``); the final norms keep their input and output.

LoRA (peft; rank ``r``, adapter dropout ``p``, adapters on q/k/v/out_proj and
fc1/fc2) freezes the base weights, so a base linear keeps nothing, but each
adapter keeps its own dropout output (a copy of the linear's input, ``in``
wide), the dropout mask (1 byte per element on CUDA, the activation's dtype on
the CPU) and its ``r``-wide hidden: with all six targets an encoder layer keeps
``19·h`` activations and ``9·h`` mask elements per position, more than full
fine-tuning. The first layer's input needs no gradient (frozen embeddings), so
its first norm and the q/k/v masks keep nothing; the frozen conv stem keeps
nothing.

A frozen encoder keeps only its output; gradient checkpointing keeps each
checkpointed layer's input (the stem and the final norms are not
checkpointed). The logits component is the logits (kept by the model output)
and the log-softmax the loss saves, ``2·B·T·V`` in the activation dtype.

``transient`` is the largest moment of the backward above what the forward
keeps, the largest of: the loss's backward (two more ``B·T·V`` gradients); the
token embedding's backward when it trains (tied to ``proj_out``, its gradient
from the logits waits in autograd's input buffer while the embedding's own is
computed and summed: three ``V·h`` tensors, while the encoder's activations
are still alive); the last encoder layer's backward (with checkpointing its
recomputed activations, ``17·B·s·h`` with full fine-tuning, plus gradients);
the last decoder layer's backward likewise; and a frozen encoder's own forward
(one layer's working set). With checkpointing the recompute usually decides
it, so it cannot be left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from whisperft.operator.planning.whisper_sizes import ENCODER_POSITIONS, WhisperDims

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")
FP32 = 4  # SDPA's log-sum-exp and the norms' statistics are fp32 in every precision
GRAD_TEMPS = (
    5  # gradients alive in a layer's backward, in layer-input units (fc2's f + the output's)
)
FROZEN_FORWARD = 10  # a no-grad encoder layer's peak working set, in layer-input units


@dataclass(frozen=True)
class Activations:
    """Bytes for one micro-batch on one GPU."""

    encoder: (
        float  # kept for backward by the conv stem, the encoder layers and norm (incl. its output)
    )
    decoder: float  # kept by the decoder (self- and cross-attention, MLP, cross keys/values)
    logits: float  # the logits and the log-softmax the loss saves
    transient: float  # the backward's largest moment above the three

    @property
    def total(self) -> float:
        return self.encoder + self.decoder + self.logits + self.transient


def _layer(
    *,
    positions: float,
    cross: float | None,
    h: int,
    heads: int,
    e: int,
    sdpa: bool,
    lora: frozenset[str] | None,
    dropout: bool,
    mask: float,
    rank: int,
    first: bool,
    cross_grad: bool,
) -> float:
    """Bytes one encoder (``cross`` None) or decoder layer keeps for its backward.

    ``positions`` query (and self-attention key) positions, ``cross`` the
    encoder positions a decoder layer attends to; ``first``: under LoRA the
    layer's input needs no gradient; ``cross_grad``: the encoder output needs a
    gradient (so the cross k/v adapters keep dropout masks).
    """
    f = 4 * h

    def attention(q_pos: float, k_pos: float) -> float:
        qkv = (q_pos + 2 * k_pos) * h * e  # q, k, v: the attention kernel's inputs
        if sdpa:
            return qkv + q_pos * h * e + q_pos * heads * FP32  # output, log-sum-exp
        return qkv + heads * q_pos * k_pos * e  # eager: softmax probabilities

    out = attention(positions, positions)
    norms = 2
    # each linear: (name, the tensor it reads, positions, width, whether that tensor needs a gradient)
    linears = [
        ("q_proj", "ln1", positions, h, not first),
        ("k_proj", "ln1", positions, h, not first),
        ("v_proj", "ln1", positions, h, not first),
        ("out_proj", "o", positions, h, True),
    ]
    if cross is not None:
        out += attention(positions, cross)
        norms = 3
        linears += [
            ("q_proj", "ln2", positions, h, True),
            ("k_proj", "enc", cross, h, cross_grad),
            ("v_proj", "enc", cross, h, cross_grad),
            ("out_proj", "co", positions, h, True),
        ]
    linears += [("fc1", "ln_mlp", positions, h, True), ("fc2", "g", positions, f, True)]
    out += norms * 2 * positions * FP32  # each norm's mean and rstd
    # the norms' inputs (the residual stream) and GELU's input
    out += (norms * positions * h + positions * f) * e
    if first:
        out -= positions * h * e  # a frozen first norm on an input without gradient keeps nothing
    kept: dict[str, float] = {}  # linear inputs kept as they are (shared by q/k/v)
    for name, tensor, pos, width, needs_grad in linears:
        # the encoder output (cross k/v's input) is counted with the encoder
        if (lora is None or (name in lora and not dropout)) and tensor != "enc":
            kept[tensor] = pos * width * e
        if lora is not None and name in lora:
            if dropout:
                out += pos * width * e  # the dropout output lora_A keeps
                if needs_grad:
                    out += pos * width * mask
            out += pos * rank * e  # lora_A's output, lora_B's input
    return out + sum(kept.values())


def activations(
    dims: WhisperDims,
    *,
    batch: int,
    label_tokens: int,
    precision: str,
    gradient_checkpointing: bool,
    frozen_encoder: bool,
    lora: bool = False,
    sdpa: bool = True,
    lora_rank: int = 32,
    lora_dropout: float = 0.05,
    lora_targets: tuple[str, ...] = LORA_TARGETS,
    train_top_encoder_layers: int = 0,
    device: Literal["cuda", "cpu"] = "cuda",
) -> Activations:
    """Activation bytes of one micro-batch of ``batch`` clips with ``label_tokens`` labels.

    ``precision`` fp32 keeps 4-byte activations, anything else 2 (bf16/fp16
    weights, no autocast). ``device`` cpu models the CPU's dropout, which keeps
    its mask in the activation dtype (CUDA keeps a bool mask).
    ``train_top_encoder_layers`` with a frozen encoder: how many top layers
    still train (they keep their activations; their input needs no gradient).
    """
    e = 4 if precision == "fp32" else 2
    h, heads, vocab = dims.d_model, dims.heads, dims.vocab
    s, t, b = ENCODER_POSITIONS, label_tokens, batch
    ckpt = gradient_checkpointing
    unit_s = s * h * e  # one encoder-wide activation (a layer input), per clip
    unit_t = t * h * e
    mask = 1.0 if device == "cuda" else float(e)
    targets = frozenset(lora_targets) if lora else None
    dropout = lora and lora_dropout > 0
    trained_enc = 0 if not frozen_encoder else min(train_top_encoder_layers, dims.encoder_layers)
    enc_trains = not frozen_encoder or trained_enc > 0
    n_enc = dims.encoder_layers if not frozen_encoder else trained_enc

    def layer(positions: float, cross: float | None, first: bool) -> float:
        return _layer(
            positions=positions,
            cross=cross,
            h=h,
            heads=heads,
            e=e,
            sdpa=sdpa,
            lora=targets,
            dropout=dropout,
            mask=mask,
            rank=lora_rank,
            first=first and lora,
            cross_grad=enc_trains,
        )

    mel = dims.n_mels * 2 * s * e
    # -- encoder: stem, layers, final norm (input and output)
    if not enc_trains:
        enc = mel + unit_s
        layer_enc = 0.0
    else:
        stem = 5 * unit_s if not lora and not frozen_encoder else 0.0
        layer_enc = layer(s, None, False)
        layers = n_enc * unit_s if ckpt else layer(s, None, True) + (n_enc - 1) * layer_enc
        enc = mel + stem + layers + 2 * unit_s
    # -- decoder: layers, final norm (input and output; a frozen proj_out keeps no input,
    # so under LoRA the output is freed again while the logits are computed)
    layer_dec = layer(t, s, False)
    n_dec = dims.decoder_layers
    layers_d = n_dec * unit_t if ckpt else layer(t, s, True) + (n_dec - 1) * layer_dec
    ids = 2 * t * 8  # decoder input ids and labels, int64
    dec = layers_d + 2 * unit_t + ids
    # -- logits: logits and log-softmax
    btv = t * vocab * e
    logits = 2 * btv - (unit_t if lora else 0.0)
    held = enc + dec + logits
    # -- the backward's largest moments (per clip, except the embedding's gradient)
    emb_grad = 0.0 if lora else vocab * h * e  # tied token embedding / proj_out weight
    g_enc = unit_s if enc_trains else 0.0  # gradient of the encoder output
    moments = [held + 2 * btv, held - btv + emb_grad / b]
    if emb_grad:
        moments.append(enc + g_enc + btv + 3 * emb_grad / b)
    if enc_trains:
        recompute = layer_enc - unit_s if ckpt else 0.0
        # the final norm's backward has consumed the encoder output's gradient by now
        moments.append(enc + btv + recompute + GRAD_TEMPS * unit_s)
    recompute_d = layer_dec - unit_t if ckpt else 0.0
    cross_kv = 2 * unit_s if (not lora or {"k_proj", "v_proj"} & set(lora_targets)) else 0.0
    moments.append(held - btv + emb_grad / b + recompute_d + GRAD_TEMPS * unit_t + cross_kv + g_enc)
    if not enc_trains or frozen_encoder:
        moments.append(mel + FROZEN_FORWARD * unit_s)
    transient = max(0.0, max(moments) - held)
    return Activations(
        encoder=b * enc,
        decoder=b * dec,
        logits=b * logits,
        transient=b * transient,
    )
