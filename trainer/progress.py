"""Where rank 0 sends progress: the console locally, the resource status on a cluster.

The operator points the trainer at its WhisperFineTune through two env vars
(names in whisperft.names); the training pods' ServiceAccount may patch only
that resource's status. Publishing is best effort: a failed patch is logged
and never stops training.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from dataclasses import dataclass
from typing import Any, Protocol

from whisperft import names

log = logging.getLogger(__name__)


@dataclass
class Progress:
    step: int
    total_steps: int
    epoch: float
    loss: float | None = None
    eval_wer: float | None = None
    best_eval_wer: float | None = None
    best_step: int | None = None
    test_wer_before: float | None = None
    test_wer_after: float | None = None
    samples_per_second: float | None = None
    last_checkpoint: str | None = None
    model_path: str | None = None  # the exported model, once written (with the step it holds)
    attempt: int | None = None  # set by the sink: the attempt this trainer runs for

    def status_patch(self) -> dict[str, Any]:
        progress = {
            "attempt": self.attempt,
            "step": self.step,
            "totalSteps": self.total_steps,
            "epoch": round(self.epoch, 4),
            "loss": _round(self.loss),
            "evalWer": _round(self.eval_wer),
            "bestEvalWer": _round(self.best_eval_wer),
            "bestStep": self.best_step,
            "testWerBefore": _round(self.test_wer_before),
            "testWerAfter": _round(self.test_wer_after),
            "samplesPerSecond": _round(self.samples_per_second),
            "updatedAt": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        patch: dict[str, Any] = {"progress": {k: v for k, v in progress.items() if v is not None}}
        if self.last_checkpoint:
            patch["lastCheckpoint"] = self.last_checkpoint
        if self.model_path:
            model = {
                "attempt": self.attempt,
                "path": self.model_path,
                "step": self.step,
                "checkpoint": self.last_checkpoint,
            }
            patch["model"] = {k: v for k, v in model.items() if v is not None}
        return {"status": patch}


def _round(x: float | None) -> float | None:
    return None if x is None else round(float(x), 5)


class ProgressSink(Protocol):
    def publish(self, progress: Progress) -> None: ...


class LogSink:
    """Local mode: progress goes to the log (the console shows a bar and eval lines)."""

    def publish(self, progress: Progress) -> None:
        log.debug("progress %s", progress)


class StatusSink:
    """Cluster mode: merge-patch the WhisperFineTune's status subresource."""

    def __init__(self, name: str, namespace: str, attempt: int | None = None) -> None:
        from kubernetes import client, config

        try:
            config.load_incluster_config()
        except config.ConfigException:
            # Outside a pod; the client read $KUBECONFIG at import, so pass it on.
            config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))
        self._api = client.CustomObjectsApi()
        self.name, self.namespace, self.attempt = name, namespace, attempt

    def publish(self, progress: Progress) -> None:
        progress.attempt = self.attempt
        try:
            self._api.patch_namespaced_custom_object_status(
                names.GROUP,
                names.VERSION,
                self.namespace,
                names.PLURAL,
                self.name,
                progress.status_patch(),
            )
        except Exception as exc:  # best effort: never stop training for a status update
            log.warning("could not publish progress to %s/%s: %s", self.namespace, self.name, exc)


def sink_from_env(env: dict[str, str] | None = None) -> ProgressSink:
    env = dict(os.environ) if env is None else env
    name, ns = env.get(names.ENV_FINETUNE_NAME), env.get(names.ENV_FINETUNE_NAMESPACE)
    if name and ns:
        attempt = env.get(names.ENV_ATTEMPT, "")
        return StatusSink(name, ns, int(attempt) if attempt.isdigit() else None)
    return LogSink()
