"""Export a Hugging Face Whisper directory to the CTranslate2 format that
faster-whisper loads, with CTranslate2's own Transformers converter.

The export holds ``model.bin`` and ``config.json`` (the converter's), plus what
faster-whisper reads beside them: ``tokenizer.json``, ``preprocessor_config.json``
(the feature extractor: n_mels decides 80 or 128 mel bins) and the
``generation_config.json`` that names the language a whisperft model was trained
under. ``whisperft_export.json`` records the source, the quantization and sizes.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import get_args

from whisperft.operator.api.spec import OutputSpec
from whisperft.operator.api.types import Ct2Quantization
from whisperft.trainer.model.errors import ModelError

QUANTIZATIONS: tuple[str, ...] = get_args(Ct2Quantization)
DEFAULT_QUANTIZATION = OutputSpec.model_fields["ct2_quantization"].default
REPORT = "whisperft_export.json"
_COPIED = ("tokenizer.json", "generation_config.json")


@dataclass(frozen=True)
class ExportReport:
    source: str
    out: str
    quantization: str
    model_bytes: int
    source_bytes: int
    seconds: float


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _check_source(model_dir: Path) -> None:
    config = model_dir / "config.json"
    if not config.is_file():
        raise ModelError(f"{model_dir}: not a Hugging Face model directory (no config.json)")
    try:
        model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type")
    except json.JSONDecodeError as exc:
        raise ModelError(f"{config}: not valid JSON: {exc}") from None
    if model_type != "whisper":
        raise ModelError(f"{model_dir}: model_type {model_type!r}, expected a Whisper model")
    if not (model_dir / "tokenizer.json").is_file():
        raise ModelError(f"{model_dir}: no tokenizer.json, which faster-whisper needs")


def export_ct2(
    model_dir: str | Path,
    out: str | Path,
    *,
    quantization: str = DEFAULT_QUANTIZATION,
    replace: bool = False,
) -> ExportReport:
    """Convert ``model_dir`` into ``out``, which must not exist or be empty unless
    ``replace`` (a trainer attempt re-exporting): then the old export is swapped out
    only once the new one is complete."""
    import ctranslate2.converters
    from transformers import WhisperFeatureExtractor

    src, dst = Path(model_dir), Path(out)
    if quantization not in QUANTIZATIONS:
        raise ModelError(f"quantization {quantization!r}: choose one of {', '.join(QUANTIZATIONS)}")
    _check_source(src)
    if dst.exists() and any(dst.iterdir()) and not replace:
        raise ModelError(f"{dst} exists and is not empty; choose another --out or remove it")
    started = time.monotonic()
    # Converted next to the target and renamed, so a failed export leaves no half model.
    tmp = dst.with_name(f".{dst.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        converter = ctranslate2.converters.TransformersConverter(
            str(src), copy_files=[f for f in _COPIED if (src / f).is_file()]
        )
        converter.convert(str(tmp), quantization=quantization, force=True)
        WhisperFeatureExtractor.from_pretrained(src).to_json_file(tmp / "preprocessor_config.json")
    except Exception as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, ModelError):
            raise
        raise ModelError(f"CTranslate2 conversion of {src} failed: {exc}") from exc
    old = dst.with_name(f".{dst.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if dst.exists():
        dst.rename(old)
    tmp.rename(dst)
    shutil.rmtree(old, ignore_errors=True)
    report = ExportReport(
        source=str(src),
        out=str(dst),
        quantization=quantization,
        model_bytes=(dst / "model.bin").stat().st_size,
        source_bytes=_dir_bytes(src),
        seconds=round(time.monotonic() - started, 2),
    )
    (dst / REPORT).write_text(json.dumps(asdict(report), indent=2), encoding="utf-8")
    return report


def is_ct2_dir(path: Path) -> bool:
    return (path / "model.bin").is_file() and (path / "preprocessor_config.json").is_file()
