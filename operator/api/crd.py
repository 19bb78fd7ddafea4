"""Generate the WhisperFineTune CustomResourceDefinition from the pydantic models.

The models are the single source of truth; this module only translates
pydantic's JSON Schema (draft 2020-12) into the structural OpenAPI v3 subset
that apiextensions.k8s.io/v1 accepts: `$ref`s inlined, `Optional[X]` turned
into an optional X, numeric exclusive bounds rewritten, titles dropped.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from whisperft import names
from whisperft.operator.api.base import cel
from whisperft.operator.api.spec import NAME_MAX_LENGTH, NAME_PATTERN, WhisperFineTuneSpec
from whisperft.operator.api.status import WhisperFineTuneStatus

# Relative to the repository root; `whisperft crd --write` keeps both current.
CRD_FILES = (
    Path("charts/whisperft/crds") / f"{names.CRD_NAME}.yaml",
    Path("manifests/base/crd.yaml"),
)

_DROP = {"title", "$defs", "discriminator"}

PRINTER_COLUMNS: list[dict[str, Any]] = [
    {
        "name": "Phase",
        "type": "string",
        "jsonPath": ".status.phase",
        "description": "Lifecycle phase.",
    },
    {
        "name": "Progress",
        "type": "string",
        "jsonPath": ".status.progressText",
        "description": "Optimizer steps done / planned.",
    },
    {
        "name": "Eval WER",
        "type": "number",
        "jsonPath": ".status.progress.evalWer",
        "description": "Eval-split WER at the last evaluation (a fraction).",
    },
    {
        "name": "Test before",
        "type": "number",
        "jsonPath": ".status.progress.testWerBefore",
        "priority": 1,
        "description": "Test-split WER of the starting model (a fraction).",
    },
    {
        "name": "Test after",
        "type": "number",
        "jsonPath": ".status.progress.testWerAfter",
        "description": "Test-split WER after fine-tuning (a fraction).",
    },
    {
        "name": "Attempt",
        "type": "integer",
        "jsonPath": ".status.attempt",
        "priority": 1,
        "description": "Current attempt.",
    },
    {
        "name": "RayJob",
        "type": "string",
        "jsonPath": ".status.rayJobName",
        "priority": 1,
        "description": "RayJob of the current attempt.",
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]

ROOT_RULES = [
    cel(
        f"self.metadata.name.size() <= {NAME_MAX_LENGTH}",
        f"metadata.name must be at most {NAME_MAX_LENGTH} characters (the RayJob name adds '-<attempt>' and KubeRay allows 47)",
    ),
    cel(
        f"self.metadata.name.matches('{NAME_PATTERN}')",
        "metadata.name must be a DNS-1035 label (lowercase letters, digits and '-', starting "
        "with a letter): KubeRay names Services after the RayJob, whose name starts with it",
    ),
]


class SchemaError(ValueError):
    """The models produced something the CRD schema cannot express."""


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Inline `$ref` / single-entry `allOf`, keeping sibling keys (description, default...)."""
    node = dict(node)
    if "$ref" in node:
        target = copy.deepcopy(defs[node.pop("$ref").rsplit("/", 1)[-1]])
        target.update(node)  # field-level description/default win over the class's
        node = target
    if "allOf" in node and len(node["allOf"]) == 1:
        inner = _resolve(node.pop("allOf")[0], defs)
        inner.update(node)
        node = inner
    if "anyOf" in node:
        branches = [b for b in node["anyOf"] if b.get("type") != "null"]
        if len(branches) != 1:
            raise SchemaError(f"union types are not structural: {node['anyOf']}")
        inner = _resolve(branches[0], defs)
        outer = {k: v for k, v in node.items() if k != "anyOf"}
        inner.update(outer)
        node = inner
    return node


def _convert(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    node = _resolve(node, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP:
            continue
        if key == "default" and value is None:
            continue
        if key == "additionalProperties" and isinstance(value, bool):
            # False: unknown fields are refused by field validation / pruned; True
            # (dict[str, Any]) is spelled x-kubernetes-preserve-unknown-fields.
            continue
        if key == "const":
            out["enum"] = [value]
            continue
        if key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
            continue
        if key == "properties":
            out[key] = {name: _convert(sub, defs) for name, sub in value.items()}
            continue
        if key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = _convert(value, defs)
            continue
        out[key] = copy.deepcopy(value)
    if "enum" in out and "type" not in out:
        kinds = {type(v) for v in out["enum"]}
        out["type"] = "integer" if kinds == {int} else "string"
    if out.get("type") == "object" and "properties" in out and not out.get("required"):
        out.pop("required", None)
    return out


def _filled(node: dict[str, Any], value: Any) -> Any:
    """`value` with the schema's nested defaults applied, as the API server would."""
    if node.get("type") != "object" or not isinstance(value, dict):
        return value
    out = dict(value)
    for name, sub in node.get("properties", {}).items():
        if name not in out and "default" in sub:
            out[name] = copy.deepcopy(sub["default"])
        if name in out:
            out[name] = _filled(sub, out[name])
    return out


def _expand_defaults(node: dict[str, Any]) -> None:
    """Spell object defaults out in full: the API server checks a default against
    the CEL rules without applying the nested defaults first."""
    for sub in node.get("properties", {}).values():
        _expand_defaults(sub)
    if isinstance(node.get("items"), dict):
        _expand_defaults(node["items"])
    if node.get("type") == "object" and isinstance(node.get("default"), dict):
        node["default"] = _filled(node, node["default"])


def openapi_schema(model: type[BaseModel]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    schema = _convert(raw, raw.get("$defs", {}))
    _expand_defaults(schema)
    return schema


def _status_schema() -> dict[str, Any]:
    schema = openapi_schema(WhisperFineTuneStatus)
    conditions = schema["properties"]["conditions"]
    conditions["x-kubernetes-list-type"] = "map"
    conditions["x-kubernetes-list-map-keys"] = ["type"]
    return schema


def build_crd() -> dict[str, Any]:
    spec_schema = openapi_schema(WhisperFineTuneSpec)
    spec_schema["description"] = "What to fine-tune, on what data, with which resources."
    status_schema = _status_schema()
    status_schema["description"] = "Observed state, written by the operator and the trainer."
    root = {
        "type": "object",
        "description": "A Whisper fine-tuning run, executed as a KubeRay RayJob on a GPU node pool.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "whisperft.io/v1alpha1"},
            "kind": {"type": "string", "description": "WhisperFineTune"},
            # The API server forbids anything but name/generateName here.
            "metadata": {"type": "object"},
            "spec": spec_schema,
            "status": status_schema,
        },
        "x-kubernetes-validations": ROOT_RULES,
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": names.CRD_NAME,
            "labels": {names.LABEL_PART_OF: names.APP_NAME, names.LABEL_NAME: names.APP_NAME},
        },
        "spec": {
            "group": names.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": names.KIND,
                "listKind": f"{names.KIND}List",
                "plural": names.PLURAL,
                "singular": names.SINGULAR,
                "shortNames": list(names.SHORT_NAMES),
                "categories": [names.APP_NAME],
            },
            "versions": [
                {
                    "name": names.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {"openAPIV3Schema": root},
                }
            ],
        },
    }


def crd_yaml() -> str:
    header = (
        "# GENERATED by `whisperft crd --write` from whisperft/operator/api (pydantic models).\n"
        "# Do not edit by hand: tests/unit/test_crd.py fails when this copy drifts.\n"
    )
    return header + yaml.safe_dump(build_crd(), sort_keys=False, width=120)


def write_crd_files(repo_root: Path) -> list[Path]:
    text = crd_yaml()
    written = []
    for rel in CRD_FILES:
        path = repo_root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            written.append(path)
    return written
