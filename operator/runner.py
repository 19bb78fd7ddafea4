"""`whisperft operator run`: kopf.run with our defaults (standalone, JSON logs, liveness)."""

from __future__ import annotations

import importlib
import logging


def run_operator(
    *,
    namespaces: list[str],
    all_namespaces: bool,
    liveness: str | None,
    standalone: bool,
    verbose: bool,
    log_format: str,
) -> int:
    import kopf

    from whisperft.operator.settings import load_settings

    settings = load_settings()
    formats = {
        "json": kopf.LogFormat.JSON,
        "plain": kopf.LogFormat.PLAIN,
        "full": kopf.LogFormat.FULL,
    }
    kopf.configure(verbose=verbose, log_format=formats[log_format])
    importlib.import_module("whisperft.operator.main")
    watch = namespaces or ([] if all_namespaces else settings.namespaces)
    logging.getLogger(__name__).info("watching %s", ", ".join(watch) if watch else "all namespaces")
    kopf.run(
        standalone=standalone,
        clusterwide=not watch,
        namespaces=watch,
        liveness_endpoint=liveness,
    )
    return 0
