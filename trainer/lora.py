"""LoRA adapters (``spec.training.lora``) through ``peft``: where they go, what a
checkpoint holds of them, and the merged model that is exported.

- Adapters go on the decoder's layers and on the encoder layers that train:
  all of them, or with ``freezeEncoder`` only the top ``trainTopEncoderLayers``.
  The frozen encoder prefix gets none, so it computes what the base model
  computes and its cached outputs (trainer.encoder_cache) stay valid.
- Only the adapters train. The training model's ``state_dict`` then holds only
  them (``checkpoint_only_trainable``), so DeepSpeed's model states are the
  adapters alone: ``exclude_frozen_parameters`` drops frozen weights by
  parameter, but a tied weight (Whisper's ``proj_out``, the token embedding)
  would still come along under its second name. A resume loads them back
  through ``load_trainable``, which insists on exactly the adapters.
- The final model is rebuilt on rank 0 from the base weights on the CPU, the
  trained adapters loaded into it, saved as a peft adapter (``adapter/``) and
  merged (``merge_and_unload``) into plain Whisper weights for ``model/``.

peft (and torch) are imported inside the functions: the operator imports the
trainer's config but never this module's dependencies.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from whisperft.operator.api.spec_training import LoraSpec
from whisperft.trainer.config import ConfigError, TrainConfig

ADAPTER_DIR = "adapter"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
_MARK = ".lora_"  # in the name of every adapter parameter peft adds


@dataclass(frozen=True)
class LoraSummary:
    """What results.json records of a LoRA run."""

    rank: int
    alpha: int
    dropout: float
    target_modules: list[str]
    adapted_layers: int
    trainable_parameters: int
    adapter_bytes: int
    adapter_dir: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "alpha": self.alpha,
            "dropout": self.dropout,
            "targetModules": self.target_modules,
            "adaptedLayers": self.adapted_layers,
            "trainableParameters": self.trainable_parameters,
            "adapterBytes": self.adapter_bytes,
            "adapterDir": self.adapter_dir,
        }


def adapted_modules(model: Any, cfg: TrainConfig, lora: LoraSpec) -> list[str]:
    """Full names of the Linear layers that get adapters (see the module docstring)."""
    from torch import nn

    t = cfg.training
    n_enc = len(model.model.encoder.layers)
    first_trained = n_enc - t.train_top_encoder_layers if t.freeze_encoder else 0
    targets = set(lora.target_modules)
    names: list[str] = []
    for name, module in model.named_modules():
        parts = name.split(".")
        if parts[-1] not in targets or not isinstance(module, nn.Linear):
            continue
        if name.startswith("model.encoder.layers."):
            if int(parts[3]) < first_trained:
                continue
        elif not name.startswith("model.decoder.layers."):
            continue
        names.append(name)
    if not names:
        raise ValueError(
            f"spec.training.lora.targetModules {lora.target_modules}: no layer of this model "
            "trains with them"
        )
    return names


def _config(model: Any, cfg: TrainConfig, lora: LoraSpec) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=lora.rank,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=adapted_modules(model, cfg, lora),
        bias="none",
    )


def apply(model: Any, cfg: TrainConfig) -> Any:
    """Inject the run's adapters into ``model`` in place; returns the peft wrapper.

    Everything but the adapters is frozen afterwards. The adapters start the
    same on every rank (seeded by ``training.seed`` alone, not by rank); B
    starts at zero, so the adapted model computes what the base model does.
    """
    import torch
    from peft import get_peft_model

    lora = cfg.lora
    if lora is None:
        raise ValueError("apply() on a run that trains no adapters")
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        # peft 0.21 asks transformers 5 for a renamed attribute: noise in every log.
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*deprecated")
        torch.manual_seed(cfg.training.seed)
        return get_peft_model(model, _config(model, cfg, lora))


def checkpoint_only_trainable(module: Any) -> None:
    """Make ``module.state_dict()`` hold only its trainable parameters (and buffers).

    That is what DeepSpeed's ``save_checkpoint`` writes as the model states.
    """
    trainable = {n for n, p in module.named_parameters(remove_duplicate=False) if p.requires_grad}
    buffers = {n for n, _ in module.named_buffers()}
    keep = trainable | buffers

    def hook(mod: Any, state_dict: dict[str, Any], prefix: str, local_metadata: Any) -> None:
        for key in list(state_dict):
            if key.removeprefix(prefix) not in keep:
                del state_dict[key]

    module.register_state_dict_post_hook(hook)


def load_trainable(src: dict[str, Any], dst: Any) -> None:
    """DeepSpeed ``custom_load_fn``: a checkpoint's model states into the training model.

    Exactly the trainable parameters must be there: a checkpoint of a full
    fine-tune (or of other adapters) is refused rather than half-loaded.
    """
    trainable = {n for n, p in dst.named_parameters() if p.requires_grad}
    buffers = {n for n, _ in dst.named_buffers()}
    missing = sorted(trainable - set(src))
    unexpected = sorted(set(src) - trainable - buffers)
    if missing or unexpected:
        raise RuntimeError(
            "the checkpoint does not hold this run's LoRA adapters: missing "
            f"{missing[:3]}{'...' if len(missing) > 3 else ''}, unexpected "
            f"{unexpected[:3]}{'...' if len(unexpected) > 3 else ''}"
        )
    dst.load_state_dict(src, strict=False)


def adapter_weights(state: dict[str, Any] | None, module: Any) -> dict[str, Any]:
    """The adapters' weights by Whisper-relative name, in fp32 on the CPU.

    From ``state`` (a ZeRO-3 consolidated state dict) when given, else from the
    parameters of ``module`` (ZeRO 0-2 hold them whole on every rank).
    """
    items = state.items() if state is not None else module.named_parameters()
    return {k.removeprefix("whisper."): v.detach().float().cpu() for k, v in items if _MARK in k}


def export(
    model_dir: Path, cfg: TrainConfig, weights: dict[str, Any], out_dir: Path
) -> tuple[Any, LoraSummary]:
    """The base model with ``weights`` as its adapters: saves ``out_dir/adapter``
    (peft format) and returns the merged plain Whisper with what was saved."""
    import torch
    from transformers import WhisperForConditionalGeneration

    from whisperft.trainer.model.quiet_save import no_save_progress

    lora = cfg.lora
    assert lora is not None
    # fp32 whatever the base is stored in: the merge adds small updates to the weights.
    base = WhisperForConditionalGeneration.from_pretrained(
        model_dir, attn_implementation="sdpa", dtype=torch.float32
    )
    peft_model = apply(base, cfg)
    wanted = {n for n, _ in base.named_parameters() if _MARK in n}
    if set(weights) != wanted:
        raise RuntimeError(
            f"trained adapters do not match the export model: {sorted(set(weights) ^ wanted)[:5]}"
        )
    result = base.load_state_dict(weights, strict=False)
    assert not result.unexpected_keys, result.unexpected_keys
    adapter_dir = out_dir / ADAPTER_DIR
    with no_save_progress():
        peft_model.save_pretrained(str(adapter_dir), safe_serialization=True)
    summary = LoraSummary(
        rank=lora.rank,
        alpha=lora.alpha,
        dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        adapted_layers=sum(1 for _, m in base.named_modules() if hasattr(m, "lora_A")),
        trainable_parameters=sum(w.numel() for w in weights.values()),
        adapter_bytes=(adapter_dir / ADAPTER_WEIGHTS).stat().st_size,
        adapter_dir=str(adapter_dir),
    )
    merged = peft_model.merge_and_unload()
    merged.eval()
    return merged, summary


def load_adapted(model_dir: str | Path, adapter_dir: str | Path) -> Any:
    """The base Whisper with a saved adapter injected, not merged (as it trained)."""
    import torch
    from peft import PeftModel
    from transformers import WhisperForConditionalGeneration

    base = WhisperForConditionalGeneration.from_pretrained(
        model_dir, attn_implementation="sdpa", dtype=torch.float32
    )
    return PeftModel.from_pretrained(base, str(adapter_dir)).get_base_model().eval()


def resume_problem(saved_config: dict[str, Any], cfg: TrainConfig) -> str | None:
    """Why a checkpoint's adapters (or their absence) cannot continue in this run."""
    try:
        saved = TrainConfig.from_dict(saved_config, source="checkpoint").lora
    except ConfigError:  # an older schema: load_trainable still checks the keys
        return None
    now = cfg.lora
    if (saved is None) == (now is None):
        if saved is None or now is None:
            return None
        keys = ("rank", "target_modules")
        changed = [k for k in keys if getattr(saved, k) != getattr(now, k)]
        if not changed:
            return None
        return (
            f"spec.training.lora: the checkpoint's adapters have {', '.join(changed)} "
            f"{[getattr(saved, k) for k in changed]}, this run {[getattr(now, k) for k in changed]}; "
            "adapters of another shape cannot continue them (start a new run under another name)"
        )
    what = "LoRA adapters" if saved is not None else "a full fine-tune"
    return (
        f"spec.training.lora: the checkpoint holds {what}, but this run "
        f"{'trains adapters' if now is not None else 'is a full fine-tune'}; "
        "one cannot continue the other (start a new run under another name)"
    )
