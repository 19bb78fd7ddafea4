"""The ConfigMap of one attempt: the resource as admitted and the runtime the
operator resolved for it, the two files `whisperft train` reads in the pod."""

from __future__ import annotations

from typing import Any

from whisperft import names
from whisperft.operator.api.resource import dump_yaml
from whisperft.operator.render.meta import Meta, config_map_name, object_meta
from whisperft.trainer.config import TrainConfig


def render_config_map(config: TrainConfig, meta: Meta, attempt: int) -> dict[str, Any]:
    resource = {
        "apiVersion": names.API_VERSION,
        "kind": names.KIND,
        "metadata": {"name": meta.name, "namespace": meta.namespace},
        "spec": config.spec.to_wire(),
    }
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": object_meta(
            meta, config_map_name(meta.name, attempt), "config", attempt=attempt
        ),
        # Immutable: an attempt's config never changes under a running job.
        "immutable": True,
        "data": {
            names.FINETUNE_FILE_NAME: dump_yaml(resource),
            names.RUNTIME_FILE_NAME: dump_yaml(config.runtime.to_wire()),
        },
    }
