"""WhisperFineTune manifests for the scenarios, starting from the committed
examples so the e2e suite exercises what users are told to apply."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from whisperft import names

from .cluster import REPO

EXAMPLES = REPO / "manifests" / "examples"
CHART = REPO / "charts" / "whisperft"
CRD_DIR = CHART / "crds"


def example(name: str) -> dict[str, Any]:
    """A committed example (manifests/examples/<name>.yaml)."""
    docs = [d for d in yaml.safe_load_all((EXAMPLES / f"{name}.yaml").read_text()) if d]
    assert len(docs) == 1, f"{name}.yaml: expected one document"
    return dict(docs[0])


def finetune(name: str, *, base: str = "minimal", **spec_overrides: Any) -> dict[str, Any]:
    """The example `base` renamed to `name`, with top-level spec keys replaced
    or (for dict values) merged one level deep."""
    doc = copy.deepcopy(example(base))
    doc["metadata"] = {"name": name}
    spec = doc["spec"]
    for key, value in spec_overrides.items():
        if value is None:
            spec.pop(key, None)
        elif isinstance(value, dict) and isinstance(spec.get(key), dict):
            spec[key] = {**spec[key], **value}
        else:
            spec[key] = value
    assert doc["apiVersion"] == names.API_VERSION and doc["kind"] == names.KIND
    return doc


def dump(*docs: dict[str, Any]) -> str:
    return yaml.safe_dump_all(list(docs), sort_keys=False)


def crd_file() -> Path:
    return CRD_DIR / f"{names.CRD_NAME}.yaml"
