"""Create/resume, spec changes and deletion of a WhisperFineTune."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from whisperft.operator import reconcile
from whisperft.operator.handlers.common import RESOURCE, counted, settings


@kopf.on.resume(*RESOURCE)
@kopf.on.create(*RESOURCE)
@counted("create")
def create(
    body: kopf.Body,
    patch: kopf.Patch,
    logger: logging.Logger | logging.LoggerAdapter[Any],
    **_: Any,
) -> None:
    reconcile.on_create(dict(body), patch, settings(), logger)


@kopf.on.update(*RESOURCE, field="spec")
@counted("update")
def update(
    body: kopf.Body,
    patch: kopf.Patch,
    old: Any,
    new: Any,
    logger: logging.Logger | logging.LoggerAdapter[Any],
    **_: Any,
) -> None:
    reconcile.on_spec_change(dict(body), patch, settings(), old, new, logger)


@kopf.on.delete(*RESOURCE)
@counted("delete")
def delete(body: kopf.Body, logger: logging.Logger | logging.LoggerAdapter[Any], **_: Any) -> None:
    reconcile.on_delete(dict(body), logger)
