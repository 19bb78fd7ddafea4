"""Operator start-up: Kopf persistence under our group, peering, client config,
metrics, and the resync that drops index entries of objects deleted unseen."""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import Iterator
from typing import Any

import kopf

from whisperft import names
from whisperft.operator import kube, metrics
from whisperft.operator.handlers.common import settings

# The finalizer Kopf puts on every WhisperFineTune (removed on uninstall by
# `whisperft operator remove-finalizers`, operator/cli.py).
FINALIZER = f"{names.GROUP}/finalizer"


# Kopf retries a failed request (connection refused, 5xx, 403 during upgrades) with
# these waits, then escalates, and an escalated watch stops the operator. About ten
# minutes in all, so an API-server outage or a slow restart (503 until its paths are
# installed, which lasted over a minute on a loaded test machine) is waited out; a
# longer one restarts the pod. The price: a real 403 takes as long to surface.
ERROR_BACKOFFS = (1, 2, 5, 10, 20, *([30] * 19))


@kopf.on.startup()
def configure(
    settings: kopf.OperatorSettings, logger: logging.Logger | logging.LoggerAdapter[Any], **_: Any
) -> None:
    cfg = _settings()
    # Finalizer and handler progress live under our group, not kopf.zalando.org.
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=names.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=names.GROUP, key="last-handled-configuration"
    )
    # Events are posted explicitly on transitions, not for every log line.
    settings.posting.level = logging.WARNING
    # Survive API server restarts: short watch timeouts, bounded backoff.
    settings.watching.server_timeout = 120
    settings.watching.client_timeout = 150
    settings.watching.connect_timeout = 10
    settings.networking.error_backoffs = list(ERROR_BACKOFFS)
    settings.execution.max_workers = 32
    _configure_peering(settings.peering, logger)
    # No cluster-wide listing of namespaces/CRDs: the operator watches the
    # namespaces it is given (or all), and finds CRDs by API discovery at start,
    # so its RBAC needs nothing cluster-scoped. A KubeRay installed later is
    # noticed on the operator's next restart.
    settings.scanning.disabled = True
    # Kopf logs every successful timer run; at 5 s per resource that drowns the rest.
    logging.getLogger("kopf.objects").addFilter(_QuietTimer())
    kube.load_config()
    metrics.serve(cfg.metrics_port)
    logger.info(
        "whisperft operator: pools %s, image %s, metrics on :%s",
        sorted(cfg.node_pools),
        cfg.trainer_image,
        cfg.metrics_port or "off",
    )


class _QuietTimer(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.levelno <= logging.INFO and str(record.msg).startswith("Timer 'sync' succeeded")
        )


def _settings() -> Any:
    return settings()


@kopf.on.probe(id="pools")
def pools(**_: Any) -> list[str]:
    """Shown by the liveness endpoint: the node pools this operator knows."""
    return sorted(settings().node_pools)


# Set by `whisperft operator run --peering` (operator/cli.py); read here so that
# `kopf run -m whisperft.operator.main` honours them too.
ENV_PEERING = "WHISPERFT_PEERING"  # the peering object's name; unset: standalone
ENV_PEERING_PRIORITY = "WHISPERFT_PEERING_PRIORITY"  # unset: random
ENV_PEERING_LIFETIME = "WHISPERFT_PEERING_LIFETIME"  # seconds
ENV_INDEX_RESYNC = "WHISPERFT_INDEX_RESYNC_SECONDS"
DEFAULT_INDEX_RESYNC_SECONDS = 30.0


def _configure_peering(peering: Any, logger: logging.Logger | logging.LoggerAdapter[Any]) -> None:
    """Kopf peering is not leader election: every replica that sees a live peer of
    the same or a higher priority pauses. So each replica takes a distinct
    (random) priority; the highest runs and the others stand by, resuming when
    its keep-alive is older than the lifetime (a crash) or at once when it
    leaves (it removes itself on SIGTERM). Peering is mandatory when named: a
    replica that cannot find the peering object stays paused rather than
    running unpeered next to another."""
    name = os.environ.get(ENV_PEERING)
    if not name:
        return
    peering.standalone = False
    peering.mandatory = True
    peering.name = name
    priority = os.environ.get(ENV_PEERING_PRIORITY)
    peering.priority = int(priority) if priority else random.randint(1, 2**31 - 1)
    lifetime = os.environ.get(ENV_PEERING_LIFETIME)
    if lifetime:
        peering.lifetime = int(lifetime)
    logger.info("peering %r: priority %d, lifetime %ds", name, peering.priority, peering.lifetime)


def index_entries(index: Any, kind: str) -> Iterator[kube.ObjectKey]:
    """(namespace, name, uid) of the object behind each entry of our `rayjobs` or
    `pod_problems` index (handlers/sync.py): how Kopf keys it internally."""
    for key in list(index):
        for value in list(index.get(key, ())):
            if kind == "rayjobs":
                md = value.get("metadata") or {}
                ns, name, uid = md.get("namespace"), md.get("name"), md.get("uid")
            else:
                ns, name, uid = key[0], value.get("pod"), value.get("uid")
            if name and uid:
                yield (ns, name, uid)


async def resync_indexes(
    indexes: dict[str, Any], logger: logging.Logger | logging.LoggerAdapter[Any]
) -> list[kube.ObjectKey]:
    """One pass: drop the entries of RayJobs and pods that no longer exist.

    Runs on Kopf's event loop, as Kopf's own index updates do; only the list
    calls go to a thread. `Index._discard` is Kopf's internal indexer protocol
    (pinned by requirements.lock and by tests/e2e/test_e2e_16_ha.py)."""
    dropped: list[kube.ObjectKey] = []
    for kind, index in indexes.items():
        known = list(index_entries(index, kind))
        if not known:
            continue
        gone = await asyncio.to_thread(kube.gone_objects, kind, known)
        discard = getattr(index, "_discard", None)
        for key in gone:
            if discard is None:
                logger.warning(
                    "cannot drop stale %s entry %s: Kopf has no Index._discard", kind, key
                )
                break
            discard(key)
            dropped.append(key)
            logger.info(
                "%s %s/%s (uid %s) was deleted while the watch was down: dropped from the index",
                "RayJob" if kind == "rayjobs" else "pod",
                *key,
            )
    return dropped


async def _resync_forever(
    indexes: dict[str, Any], interval: float, logger: logging.Logger | logging.LoggerAdapter[Any]
) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await resync_indexes(indexes, logger)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # an outage: try again next time
            logger.warning("index resync failed (retried in %.0fs): %s", interval, exc)


@kopf.on.startup(id="index-resync")
async def start_index_resync(
    memo: Any, logger: logging.Logger | logging.LoggerAdapter[Any], **kwargs: Any
) -> None:
    """Every WHISPERFT_INDEX_RESYNC_SECONDS (30), drop index entries of RayJobs and
    pods deleted while the watch was down, so the status sync sees them missing
    (and recreates a live attempt's RayJob). Costs one list per namespace that
    has entries; an idle sync still makes no API call."""
    interval = float(os.environ.get(ENV_INDEX_RESYNC) or DEFAULT_INDEX_RESYNC_SECONDS)
    # Kopf passes every index to every handler, under the indexing function's name.
    indexes = {"rayjobs": kwargs["rayjobs"], "pods": kwargs["pod_problems"]}
    memo.index_resync = asyncio.create_task(_resync_forever(indexes, interval, logger))


@kopf.on.cleanup(id="index-resync")
async def stop_index_resync(memo: Any, **_: Any) -> None:
    task = memo.get("index_resync")
    if task is not None:
        task.cancel()
