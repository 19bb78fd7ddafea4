"""Status sync: an index of our RayJobs, and a timer mapping each one onto its owner."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from whisperft import names
from whisperft.operator import reconcile
from whisperft.operator.handlers.common import RESOURCE, counted, settings


@kopf.index("ray.io", "v1", "rayjobs", labels={names.LABEL_MANAGED_BY: names.MANAGED_BY})
def rayjobs(
    namespace: str | None, name: str, body: kopf.Body, **_: Any
) -> dict[tuple[str | None, str], dict[str, Any]]:
    """(namespace, name) -> RayJob, kept current by a watch: the timer reads it without API calls."""
    return {(namespace, name): {"metadata": dict(body.metadata), "status": dict(body.status)}}


@kopf.timer(*RESOURCE, interval=settings().sync_interval_seconds, initial_delay=1.0)
@counted("sync")
def sync(
    body: kopf.Body,
    patch: kopf.Patch,
    rayjobs: kopf.Index[Any, Any],
    logger: logging.Logger | logging.LoggerAdapter[Any],
    **_: Any,
) -> None:
    status = body.get("status") or {}
    job = status.get("rayJobName")
    found = None
    if job:
        for obj in rayjobs.get((body.metadata.namespace, job), []):
            found = obj
    reconcile.sync(dict(body), patch, settings(), found, logger)
