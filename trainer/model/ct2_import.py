"""Convert a CTranslate2 (faster-whisper) Whisper export into a Hugging Face model directory."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from whisperft.trainer.model.ct2_format import CT2Model, read_ct2_model
from whisperft.trainer.model.ct2_tokenizer import (
    build_generation_config,
    build_tokenizer,
    read_vocabulary,
    special_ids,
)
from whisperft.trainer.model.ct2_whisper import MappedWeights, WhisperDims, map_whisper
from whisperft.trainer.model.errors import ModelError
from whisperft.trainer.model.quiet_save import no_save_progress

# Bump when the conversion output changes: it is part of every cache key.
IMPORTER_VERSION = 1
REPORT_FILE = "whisperft_import.json"


@dataclass(frozen=True)
class CT2Source:
    """A CTranslate2 Whisper export: model.bin (maybe split in parts) plus its side files."""

    name: str
    model_parts: tuple[Path, ...]
    directory: Path  # config.json, tokenizer.json, vocabulary.txt|json
    # file name -> SHA-256 the files must have (bundled models); None: not checked
    digests: Mapping[str, str] | None = None

    @property
    def files(self) -> list[Path]:
        side = [
            self.directory / n
            for n in ("config.json", "tokenizer.json", "vocabulary.txt", "vocabulary.json")
        ]
        return [*self.model_parts, *(p for p in side if p.exists())]


def _whisper_config(dims: WhisperDims, gen: Any) -> Any:
    from transformers import WhisperConfig

    return WhisperConfig(
        vocab_size=dims.vocab_size,
        num_mel_bins=dims.num_mel_bins,
        d_model=dims.d_model,
        encoder_layers=dims.encoder_layers,
        decoder_layers=dims.decoder_layers,
        encoder_attention_heads=dims.encoder_attention_heads,
        decoder_attention_heads=dims.decoder_attention_heads,
        encoder_ffn_dim=dims.encoder_ffn_dim,
        decoder_ffn_dim=dims.decoder_ffn_dim,
        max_source_positions=dims.max_source_positions,
        max_target_positions=dims.max_target_positions,
        activation_function="gelu",
        scale_embedding=False,
        tie_word_embeddings=dims.tied_projection,
        pad_token_id=gen.pad_token_id,
        bos_token_id=gen.bos_token_id,
        eos_token_id=gen.eos_token_id,
        decoder_start_token_id=gen.decoder_start_token_id,
        suppress_tokens=gen.suppress_tokens,
        begin_suppress_tokens=gen.begin_suppress_tokens,
        use_cache=True,
    )


def _build_model(config: Any, mapped: MappedWeights) -> Any:
    """An fp32 HF model holding exactly the mapped weights; fails on any gap or shape mismatch."""
    import torch
    from transformers import WhisperForConditionalGeneration

    state = dict(mapped.state_dict)
    if mapped.dims.tied_projection:
        state["proj_out.weight"] = state["model.decoder.embed_tokens.weight"]
    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if expected[k] != tuple(state[k].shape))
    if missing or unexpected or wrong:
        raise ModelError(
            "CTranslate2 -> HF mapping does not match WhisperForConditionalGeneration: "
            f"missing {missing[:10]}, unexpected {unexpected[:10]}, "
            f"wrong shape {[(k, expected[k], state[k].shape) for k in wrong[:10]]}"
        )
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}
    model.load_state_dict(tensors, strict=True, assign=True)
    model.tie_weights()
    if (
        mapped.dims.tied_projection
        and model.proj_out.weight is not model.model.decoder.embed_tokens.weight
    ):
        raise ModelError("proj_out is not tied to embed_tokens after loading")
    # Non-persistent buffers are not in the state dict; none may stay on the meta device.
    on_meta = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if on_meta:
        raise ModelError(f"weights left unfilled after import: {on_meta[:10]}")
    return model.eval()


def convert_ct2(source: CT2Source, out_dir: Path) -> dict[str, Any]:
    """Write the HF model, processor and an import report into ``out_dir``; returns the report."""
    from transformers import WhisperFeatureExtractor, WhisperProcessor

    started = time.monotonic()
    config_path = source.directory / "config.json"
    tokenizer_path = source.directory / "tokenizer.json"
    for needed in (config_path, tokenizer_path):
        if not needed.is_file():
            raise ModelError(f"CTranslate2 Whisper export {source.directory} lacks {needed.name}")
    try:
        ct2_config = json.loads(config_path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ModelError(f"{config_path} is not valid JSON: {exc}") from exc

    ct2: CT2Model = read_ct2_model(source.model_parts)
    dtypes = sorted({ct2.dtypes[n] for n, v in ct2.variables.items() if v.ndim > 0})
    mapped = map_whisper(ct2)
    dims = mapped.dims
    vocabulary = read_vocabulary(source.directory)
    if len(vocabulary) != dims.vocab_size:
        raise ModelError(
            f"vocabulary has {len(vocabulary)} tokens but the embedding has {dims.vocab_size} rows"
        )
    ids = special_ids(vocabulary)
    # OpenAI's own rule: only multilingual checkpoints have the 51865-token vocabulary.
    multilingual = dims.vocab_size >= 51865
    ct2_langs = [int(i) for i in ct2_config.get("lang_ids") or []]
    notes = []
    if not multilingual and ct2_langs and ct2_langs != sorted(ids.languages.values()):
        notes.append("config.json lang_ids are off by one for this English-only export; ignored")
    tokenizer = build_tokenizer(tokenizer_path, vocabulary, ids)
    generation = build_generation_config(ids, dims, ct2_config, multilingual=multilingual)
    config = _whisper_config(dims, generation)
    model = _build_model(config, mapped)
    model.generation_config = generation
    del ct2  # float32 copies live in the model; drop the source arrays

    processor = WhisperProcessor(
        feature_extractor=WhisperFeatureExtractor(feature_size=dims.num_mel_bins),
        tokenizer=tokenizer,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    with no_save_progress():
        model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    report = {
        "importer_version": IMPORTER_VERSION,
        "source": source.name,
        "source_files": [str(p) for p in source.files],
        "source_dtypes": dtypes,
        "multilingual": multilingual,
        "dims": dims.__dict__,
        "ct2_shapes": {k: list(v) for k, v in mapped.source_shapes.items()},
        "used": mapped.used,
        "explained": mapped.explained,
        "notes": notes,
        "seconds": round(time.monotonic() - started, 2),
    }
    (out_dir / REPORT_FILE).write_text(json.dumps(report, indent=1), encoding="utf-8")
    return report
