"""The ConfigMap holding the trainer's TrainConfig YAML for one attempt."""

from __future__ import annotations

from typing import Any

from whisperft import names
from whisperft.operator.render.meta import Meta, config_map_name, object_meta
from whisperft.trainer.config import TrainConfig


def render_config_map(config: TrainConfig, meta: Meta, attempt: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": object_meta(
            meta, config_map_name(meta.name, attempt), "config", attempt=attempt
        ),
        # Immutable: an attempt's config never changes under a running job.
        "immutable": True,
        "data": {names.CONFIG_FILE_NAME: config.to_yaml()},
    }
