"""The whole `WhisperFineTune` object, as read from a file or the API server."""

from __future__ import annotations

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


def load_resources(text: str, *, source: str) -> list[WhisperFineTune]:
    """Every WhisperFineTune document in a (multi-document) YAML text."""
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise SpecError(f"{source}: cannot parse YAML: {exc}") from None
    if not docs:
        raise SpecError(f"{source}: no documents")
    return [parse_resource(d, source=f"{source}[{i}]") for i, d in enumerate(docs)]
