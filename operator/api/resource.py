"""The whole `WhisperFineTune` object, as read from a file or the API server."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import ConfigDict, Field, ValidationError

from whisperft.operator.api.base import ApiModel
from whisperft.operator.api.spec import NAME_MAX_LENGTH, NAME_PATTERN, WhisperFineTuneSpec
from whisperft.operator.api.status import WhisperFineTuneStatus
from whisperft.validation import describe_errors


class SpecError(ValueError):
    """A WhisperFineTune that cannot be used, with every problem named."""


class ObjectMeta(ApiModel):
    model_config = ConfigDict(extra="allow")

    name: str = Field(min_length=1, max_length=NAME_MAX_LENGTH, pattern=NAME_PATTERN)
    namespace: str = "default"
    uid: str | None = None
    generation: int | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class WhisperFineTune(ApiModel):
    api_version: Literal["whisperft.io/v1alpha1"] = "whisperft.io/v1alpha1"
    kind: Literal["WhisperFineTune"] = "WhisperFineTune"
    metadata: ObjectMeta
    spec: WhisperFineTuneSpec
    status: WhisperFineTuneStatus | None = None


def parse_spec(raw: Any, *, source: str = "spec") -> WhisperFineTuneSpec:
    try:
        return WhisperFineTuneSpec.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(describe_errors(exc, source)) from None


def parse_resource(raw: Any, *, source: str = "resource") -> WhisperFineTune:
    if not isinstance(raw, dict):
        raise SpecError(f"{source}: expected a mapping, got {type(raw).__name__}")
    raw = {k: v for k, v in raw.items() if k != "status"}
    try:
        return WhisperFineTune.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(describe_errors(exc, source)) from None


class KubeYamlLoader(yaml.SafeLoader):
    """PyYAML resolving plain scalars the way kubectl's YAML library does.

    Two differences matter for a spec: kubectl reads `1e-5` as a number (PyYAML,
    wanting a dot, reads a string), and it has no base-60 numbers (PyYAML reads
    `1:30` as 90). Everything else (quoted scalars stay strings, yes/no/on/off
    are booleans) already agrees.
    """


KubeYamlLoader.yaml_implicit_resolvers = {
    key: [
        (tag, rx)
        for tag, rx in resolvers
        if tag not in ("tag:yaml.org,2002:float", "tag:yaml.org,2002:int")
    ]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
KubeYamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"),
    list("-+0123456789"),
)
KubeYamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9][0-9_]*(?:\.[0-9_]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


class KubeYamlDumper(yaml.SafeDumper):
    """Quotes every string KubeYamlLoader would read as another type (e.g. '1e-5')."""


KubeYamlDumper.yaml_implicit_resolvers = KubeYamlLoader.yaml_implicit_resolvers


def dump_yaml(data: Any) -> str:
    """YAML that kubectl and `parse_yaml` read back to the same values."""
    return yaml.dump(data, Dumper=KubeYamlDumper, sort_keys=False)


def parse_yaml(text: str, *, source: str) -> list[Any]:
    """The non-empty documents of a YAML text, scalars typed as kubectl types them."""
    try:
        return [d for d in yaml.load_all(text, Loader=KubeYamlLoader) if d is not None]
    except yaml.YAMLError as exc:
        raise SpecError(f"{source}: cannot parse YAML: {exc}") from None


def set_field(raw: dict[str, Any], key: str, value: Any, *, what: str | None = None) -> None:
    """Set one dotted wire-form field (`spec.training.maxSteps`) in a resource body."""
    parts = key.split(".")
    if not key or any(not part for part in parts):
        raise SpecError(f"{what or key!r}: expected a dotted field, e.g. spec.training.maxSteps")
    node = raw
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise SpecError(f"{what or key!r}: {part} is not a section")
        node = child
    node[parts[-1]] = value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """`--set spec.training.maxSteps=20`: one dotted wire-form key per item, YAML-typed value."""
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SpecError(f"--set {item!r}: expected KEY=VALUE, e.g. spec.training.maxSteps=50")
        docs = parse_yaml(value, source=f"--set {item!r}") if value.strip() else []
        set_field(raw, key, docs[0] if docs else None, what=f"--set {item}")
    return raw


def load_resources(text: str, *, source: str) -> list[WhisperFineTune]:
    """Every WhisperFineTune document in a (multi-document) YAML text."""
    docs = parse_yaml(text, source=source)
    if not docs:
        raise SpecError(f"{source}: no documents")
    return [parse_resource(d, source=f"{source}[{i}]") for i, d in enumerate(docs)]


def read_text(path: str | Path) -> str:
    p = Path(path)
    try:
        return p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{p}: file not found") from None
    except IsADirectoryError:
        raise SpecError(f"{p}: is a directory, not a WhisperFineTune file") from None
    except UnicodeDecodeError as exc:
        raise SpecError(f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def load_resource_file(path: str | Path, overrides: list[str] | None = None) -> WhisperFineTune:
    """The one WhisperFineTune in a file, with `--set` overrides applied before validation."""
    source = str(path)
    docs = parse_yaml(read_text(path), source=source)
    if len(docs) != 1:
        raise SpecError(
            f"{source}: expected one WhisperFineTune document, found {len(docs)} "
            "(whisperft render takes several)"
        )
    raw = docs[0]
    if not isinstance(raw, dict):
        raise SpecError(f"{source}: expected a mapping, got {type(raw).__name__}")
    return parse_resource(apply_overrides(raw, list(overrides or [])), source=source)
