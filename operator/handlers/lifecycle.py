"""Create/resume, spec changes and deletion of a WhisperFineTune."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from whisperft.operator import reconcile
from whisperft.operator.decide import SpecEdit
from whisperft.operator.handlers.common import (
    RESOURCE,
    counted,
    forget,
    indexed_rayjobs,
    one_at_a_time,
    settings,
)


@kopf.on.resume(*RESOURCE)
@kopf.on.create(*RESOURCE)
@counted("create")
def create(body: kopf.Body, rayjobs: kopf.Index[Any, Any], **_: Any) -> None:
    with one_at_a_time(body):
        reconcile.reconcile(dict(body), settings(), rayjobs=indexed_rayjobs(body, rayjobs))


@kopf.on.update(*RESOURCE, field="spec")
@counted("update")
def update(body: kopf.Body, old: Any, new: Any, rayjobs: kopf.Index[Any, Any], **_: Any) -> None:
    with one_at_a_time(body):
        reconcile.reconcile(
            dict(body),
            settings(),
            rayjobs=indexed_rayjobs(body, rayjobs),
            edit=SpecEdit(dict(old or {}), dict(new or {})),
        )


@kopf.on.delete(*RESOURCE)
@counted("delete")
def delete(body: kopf.Body, logger: logging.Logger | logging.LoggerAdapter[Any], **_: Any) -> None:
    with one_at_a_time(body):
        reconcile.on_delete(dict(body), settings(), logger)
    forget(body)
