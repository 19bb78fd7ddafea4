"""What the planner benchmark's modules share: Whisper from its published dims, the
trainer's model preparation, the trainer's DeepSpeed JSON, the relative error."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path
from typing import Any

from whisperft.operator.planning.whisper_sizes import WhisperDims

HERE = Path(__file__).resolve().parent
TARGET = 0.10  # every component and the total within 10%
MIB = 2**20
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")


def rel(pred: float, meas: float) -> float | None:
    """(predicted - measured) / measured; None where nothing was measured."""
    return None if meas == 0 else round((pred - meas) / meas, 4)


def whisper(dims: WhisperDims, attn: str = "sdpa") -> Any:
    """WhisperForConditionalGeneration with the published dims, random weights."""
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    cfg = WhisperConfig(
        d_model=dims.d_model,
        encoder_layers=dims.encoder_layers,
        decoder_layers=dims.decoder_layers,
        encoder_attention_heads=dims.heads,
        decoder_attention_heads=dims.heads,
        encoder_ffn_dim=4 * dims.d_model,
        decoder_ffn_dim=4 * dims.d_model,
        vocab_size=dims.vocab,
        num_mel_bins=dims.n_mels,
        use_cache=False,
    )
    cfg._attn_implementation = attn
    return WhisperForConditionalGeneration(cfg)


def prepare(model: Any, *, frozen_encoder: bool, lora: bool, ckpt: bool) -> Any:
    """What trainer.model_prep.prepare_for_training does: freeze, LoRA (as trainer.lora), checkpointing."""
    import torch

    if frozen_encoder:
        model.model.encoder.requires_grad_(False)
    if lora:
        from peft import LoraConfig, get_peft_model

        names = [
            n
            for n, mod in model.named_modules()
            if n.split(".")[-1] in LORA_TARGETS
            and isinstance(mod, torch.nn.Linear)
            and (
                n.startswith("model.decoder.layers.")
                or (n.startswith("model.encoder.layers.") and not frozen_encoder)
            )
        ]
        config = LoraConfig(r=32, lora_alpha=64, lora_dropout=0.05, target_modules=names)
        get_peft_model(model, config)  # in place, as the trainer
    if ckpt:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model


def _train_config(
    stage: int,
    *,
    model: str = "bundled:tiny.en",
    training: dict[str, Any] | None = None,
    dataset: dict[str, Any] | None = None,
    use_gpu: bool = False,
    storage: str = "/tmp/planner-bench",
) -> Any:
    """A TrainConfig with the given ZeRO stage (DeepSpeed's JSON is built from it as the trainer
    does); one worker, the bundled English corpus, spec fields as in a WhisperFineTune."""
    from whisperft.operator.api.resource import parse_resource
    from whisperft.trainer.config import ResolvedDeepSpeed, Runtime, TrainConfig

    resource = parse_resource(
        {
            "apiVersion": "whisperft.io/v1alpha1",
            "kind": "WhisperFineTune",
            "metadata": {"name": "planner-bench"},
            "spec": {
                "model": {"name": model, "language": "en"},
                "dataset": {"path": "bundled:en", **(dataset or {})},
                "training": training or {"maxSteps": 2, "batchSizePerWorker": 1},
                "checkpoints": {"size": "1Gi"},
            },
        }
    )
    rt = Runtime(
        workers=1,
        use_gpu=use_gpu,
        cpus_per_worker=1.0,
        deepspeed=ResolvedDeepSpeed(stage=stage),
        data_path="bundled:en",
        storage_path=storage,
        output_dir=storage,
    )
    return TrainConfig.build(resource, rt)


def single_process_group(backend: str) -> None:
    """torch.distributed with this process as the only rank (what Ray Train sets up for one worker)."""
    import os

    import deepspeed

    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(_free_port()),
        RANK="0",
        LOCAL_RANK="0",
        WORLD_SIZE="1",
        LOCAL_WORLD_SIZE="1",
    )
    deepspeed.init_distributed(dist_backend=backend)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=HERE, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
