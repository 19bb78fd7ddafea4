"""Turning a loaded Whisper into a training model: prefix tokens, freezing, memory savers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from whisperft.trainer.config import TrainConfig


@dataclass(frozen=True)
class Prefix:
    """The decoder prompt every label starts with, and the end-of-text id."""

    ids: tuple[int, ...]
    eot: int
    pad: int


def decoder_prefix(
    tokenizer: Any, generation_config: Any, *, multilingual: bool, language: str | None, task: str
) -> Prefix:
    """``<|startoftranscript|> [<|lang|> <|task|>] <|notimestamps|>`` as ids.

    Ids come from the generation config, never from hard-coded numbers, because
    English-only and multilingual checkpoints number their special tokens
    differently (off by one).
    """
    gc = generation_config
    ids: list[int] = [int(gc.decoder_start_token_id)]
    if multilingual:
        if not language:
            raise ValueError("a multilingual model needs model.language (e.g. 'sw', 'cy', 'en')")
        lang_to_id = dict(getattr(gc, "lang_to_id", {}) or {})
        key = language if language.startswith("<|") else f"<|{language}|>"
        if key not in lang_to_id:
            known = ", ".join(sorted(k.strip("<|>") for k in lang_to_id)[:20])
            raise ValueError(
                f"language {language!r} is not one this model knows (e.g. {known}, ...)"
            )
        ids.append(int(lang_to_id[key]))
        ids.append(int(gc.task_to_id[task]))
    ids.append(int(gc.no_timestamps_token_id))
    eos = gc.eos_token_id
    eot = int(eos[0] if isinstance(eos, list) else eos)
    pad = int(gc.pad_token_id) if getattr(gc, "pad_token_id", None) is not None else eot
    return Prefix(ids=tuple(ids), eot=eot, pad=pad)


def uses_encoder_cache(cfg: TrainConfig) -> bool:
    t = cfg.training
    return t.freeze_encoder and t.cache_encoder_outputs and not t.spec_augment


def prepare_for_training(model: Any, cfg: TrainConfig) -> dict[str, int]:
    """Apply freezing and memory options; returns trainable/total parameter counts."""
    t = cfg.training
    if t.freeze_encoder:
        enc = model.model.encoder
        if t.train_top_encoder_layers > len(enc.layers):
            raise ValueError(
                f"train_top_encoder_layers={t.train_top_encoder_layers}, but the encoder has {len(enc.layers)} layers"
            )
        enc.requires_grad_(False)
        if t.train_top_encoder_layers:
            for layer in enc.layers[len(enc.layers) - t.train_top_encoder_layers :]:
                layer.requires_grad_(True)
            enc.layer_norm.requires_grad_(True)
    if t.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if t.spec_augment:
        model.config.apply_spec_augment = True
        model.config.mask_time_prob = max(model.config.mask_time_prob, 0.05)
        model.config.mask_feature_prob = max(model.config.mask_feature_prob, 0.05)
    else:
        model.config.apply_spec_augment = False
    # The prompt is given explicitly at generate time; stale forced ids would conflict.
    model.generation_config.forced_decoder_ids = None
    model.config.forced_decoder_ids = None
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"trainable": trainable, "total": total}
