"""What bench/gpu_throughput.py needs around the trainer: Ray Train's context for
one in-process rank, a random-weight Whisper folder, the machine's description."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

from planner_common import whisper

from whisperft.operator.planning.whisper_sizes import WhisperDims

# The configuration keys whose token ids a random model takes from the template.
TOKEN_KEYS = ("pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id")


@contextlib.contextmanager
def one_rank() -> Iterator[None]:
    """Ray Train's context as rank 0 of 1 (the Worker asks it for rank and world size).

    The process group itself is set up once (``single_process_group``), as Ray
    Train's TorchConfig does for its worker; without Ray installed (a bare GPU
    machine) a stand-in ``ray.train`` module answers the one call.
    """
    ctx = types.SimpleNamespace(get_world_rank=lambda: 0, get_world_size=lambda: 1)
    try:
        from ray import train
    except ImportError:
        train = types.ModuleType("ray.train")
        ray = sys.modules.setdefault("ray", types.ModuleType("ray"))
        ray.train = train  # type: ignore[attr-defined]
        sys.modules.setdefault("ray.train", train)
    with mock.patch.object(train, "get_context", lambda: ctx, create=True):
        yield


def random_model_dir(name: str, dims: WhisperDims, template: Path, root: Path) -> Path:
    """A Hugging Face Whisper directory with random weights of ``dims``."""
    import torch
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperProcessor,
    )

    out = root / name
    if (out / "config.json").is_file():
        return out
    torch.manual_seed(0)
    model = whisper(dims)
    ref = WhisperConfig.from_pretrained(template)
    for key in TOKEN_KEYS:
        setattr(model.config, key, getattr(ref, key))
    model.config.use_cache = True  # as a published config; the trainer turns it off
    model.generation_config = GenerationConfig.from_pretrained(template)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer = WhisperProcessor.from_pretrained(template).tokenizer
    features = WhisperFeatureExtractor(feature_size=dims.n_mels)
    WhisperProcessor(feature_extractor=features, tokenizer=tokenizer).save_pretrained(out)
    return out


def machine(peak: tuple[str | None, float | None]) -> dict[str, Any]:
    import deepspeed
    import torch
    import transformers

    cuda = torch.cuda.is_available()
    props = torch.cuda.get_device_properties(0) if cuda else None
    out: dict[str, Any] = {
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "gpu_memory_gib": round(props.total_memory / 2**30, 1) if props else None,
        "peak_bf16_tflops": peak[1],
        "peak_from": peak[0],
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "deepspeed": deepspeed.__version__,
        "transformers": transformers.__version__,
    }
    smi = ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out["driver"] = subprocess.run(
            smi, capture_output=True, text=True, timeout=20
        ).stdout.strip()
    return out
