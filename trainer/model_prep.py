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


def checked_prefix(tokenizer: Any, generation_config: Any, cfg: TrainConfig) -> Prefix:
    """The decoder prefix for the run's language token, or a ModelError naming the field.

    This is where a model known only by its files (a path, `ct2:`) meets the
    language for the first time, before any feature or GPU time is spent.
    """
    from whisperft.languages import suggest_languages, token_language
    from whisperft.trainer.model.errors import ModelError

    m = cfg.model
    token = token_language(m.language, m.train_as_language)
    field = "spec.model.trainAsLanguage" if m.train_as_language else "spec.model.language"
    multilingual = bool(getattr(generation_config, "is_multilingual", False))
    if not multilingual:
        if token not in (None, "en"):
            raise ModelError(
                f"{field}: {token!r}, but model {m.name!r} is English-only; use a multilingual "
                "Whisper (e.g. openai/whisper-small) or language en"
            )
    else:
        known = sorted(k.strip("<|>") for k in (getattr(generation_config, "lang_to_id", {}) or {}))
        if token is None or token not in known:
            hint = ", ".join(suggest_languages(token or "", known)) or ", ".join(known[:5])
            extra = (
                "; to train a language Whisper has no token for, set "
                "spec.model.trainAsLanguage to a related language's code"
                if not m.train_as_language
                else ""
            )
            raise ModelError(
                f"{field}: model {m.name!r} has no language token {token!r} "
                f"(nearest: {hint}){extra}"
            )
    return decoder_prefix(
        tokenizer, generation_config, multilingual=multilingual, language=token, task=m.task
    )


def uses_encoder_cache(cfg: TrainConfig) -> bool:
    t = cfg.training
    return t.freeze_encoder and t.cache_encoder_outputs and not t.spec_augment


def prepare_for_training(model: Any, cfg: TrainConfig) -> dict[str, int]:
    """Apply freezing, LoRA adapters and memory options; returns trainable/total parameter counts."""
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
    if t.audio_context_margin_seconds is not None:
        from whisperft.trainer.audio_context import allow_short_inputs

        allow_short_inputs(model)  # batches cut to their clips (trainer/audio_context.py)
    if cfg.lora is not None:
        from whisperft.trainer import lora

        lora.apply(model, cfg)  # in place; only the adapters train from here on
    if cfg.gradient_checkpointing:
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
