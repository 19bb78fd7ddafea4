"""Shared pydantic base and CRD schema annotations for the API types."""

from __future__ import annotations

import types
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator
from pydantic.alias_generators import to_camel

# Kubernetes resource.Quantity, as the API server's own OpenAPI writes it.
QUANTITY_PATTERN = r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"
# DNS-1123 label / subdomain, for names the resource points at.
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


def cel(
    rule: str, message: str, *, field_path: str | None = None, reason: str | None = None
) -> dict[str, Any]:
    """One `x-kubernetes-validations` entry; the API server refuses the object with `message`."""
    out: dict[str, Any] = {"rule": rule, "message": message}
    if field_path:
        out["fieldPath"] = field_path
    if reason:
        out["reason"] = reason
    return out


def crd_extra(*rules: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """json_schema_extra carrying CEL rules (and other x-kubernetes-* keys) into the CRD."""
    out: dict[str, Any] = dict(extra)
    if rules:
        out["x-kubernetes-validations"] = list(rules)
    return out


IMMUTABLE = cel(
    "self == oldSelf",
    "is immutable: create a new WhisperFineTune instead",
    reason="FieldValueForbidden",
)


def _integer_only(annotation: Any) -> bool:
    """Whether a field takes integers but not floats (int, Literal[0, 1], int | None)."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        return bool(args) and all(_integer_only(a) for a in args)
    if origin is Literal:
        return all(isinstance(v, int) and not isinstance(v, bool) for v in get_args(annotation))
    return annotation is int


class ApiModel(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown fields are an error.

    Strict, like the API server's schema check: a quoted number or boolean
    (`workers: "2"`, `suspend: "true"`) is refused, not coerced. The one
    coercion the server also makes is an integral float for an integer field.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        strict=True,
        use_attribute_docstrings=False,
    )

    @field_validator("*", mode="before")
    @classmethod
    def _integral_float(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, float) and value.is_integer() and info.field_name:
            field = cls.model_fields.get(info.field_name)
            if field is not None and _integer_only(field.annotation):
                return int(value)
        return value

    def to_wire(self) -> dict[str, Any]:
        """The JSON form the API server stores (camelCase, unset optionals left out)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
