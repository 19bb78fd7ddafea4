"""Build a TrainConfig in tests: a spec (wire-form dicts) plus a local runtime."""

from __future__ import annotations

from typing import Any

from whisperft.operator.api.resource import parse_resource
from whisperft.trainer.config import ResolvedDeepSpeed, Runtime, TrainConfig


def train_config(
    *,
    training: dict[str, Any] | None = None,
    dataset: dict[str, Any] | None = None,
    model: dict[str, Any] | None = None,
    stage: int = 2,
    offload_optimizer: bool = False,
    offload_params: bool = False,
    name: str = "t",
    **runtime: Any,
) -> TrainConfig:
    spec = {
        "model": model or {"name": "bundled:tiny.en", "language": "en"},
        "dataset": {"path": "bundled:en", **(dataset or {})},
        "training": training if training is not None else {"maxSteps": 100},
        "checkpoints": {"size": "1Gi"},
    }
    resource = parse_resource(
        {
            "apiVersion": "whisperft.io/v1alpha1",
            "kind": "WhisperFineTune",
            "metadata": {"name": name},
            "spec": spec,
        }
    )
    rt = Runtime.model_validate(
        {
            "workers": 2,
            "useGpu": False,
            "cpusPerWorker": 1.0,
            "deepspeed": ResolvedDeepSpeed(
                stage=stage,  # type: ignore[arg-type]
                offload_optimizer=offload_optimizer,
                offload_params=offload_params,
            ),
            "dataPath": resource.spec.dataset.path,
            "storagePath": "runs/t/checkpoints",
            "outputDir": "runs/t",
            **runtime,
        }
    )
    return TrainConfig.build(resource, rt)
