"""Operator start-up: Kopf persistence under our group, client config, metrics."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from whisperft import names
from whisperft.operator import kube, metrics
from whisperft.operator.handlers.common import settings


@kopf.on.startup()
def configure(
    settings: kopf.OperatorSettings, logger: logging.Logger | logging.LoggerAdapter[Any], **_: Any
) -> None:
    cfg = _settings()
    # Finalizer and handler progress live under our group, not kopf.zalando.org.
    settings.persistence.finalizer = f"{names.GROUP}/finalizer"
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
    settings.networking.error_backoffs = [1, 2, 5, 10, 20, 30]
    settings.execution.max_workers = 32
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
