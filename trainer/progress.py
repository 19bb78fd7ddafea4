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
import threading
import time
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
    model_path: str | None = None  # the exported model, once written
    model_step: int | None = None  # the step whose weights it holds
    model_checkpoint: str | None = None  # the checkpoint holding the same weights
    model_selected: str | None = None  # "bestEval" or "last"
    model_formats: list[str] | None = None
    preempted_at_step: int | None = None  # saved here because the pods were being stopped
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
            "preemptedAtStep": self.preempted_at_step,
            "updatedAt": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        patch: dict[str, Any] = {"progress": {k: v for k, v in progress.items() if v is not None}}
        if self.last_checkpoint:
            patch["lastCheckpoint"] = self.last_checkpoint
        if self.model_path:
            model = {
                "attempt": self.attempt,
                "path": self.model_path,
                "step": self.step if self.model_step is None else self.model_step,
                "checkpoint": self.model_checkpoint or self.last_checkpoint,
                "selected": self.model_selected,
                "formats": self.model_formats,
            }
            patch["model"] = {k: v for k, v in model.items() if v is not None}
        return {"status": patch}


def _round(x: float | None) -> float | None:
    return None if x is None else round(float(x), 5)


class ProgressSink(Protocol):
    def publish(self, progress: Progress) -> None: ...

    def flush(self, timeout_s: float) -> bool: ...


class LogSink:
    """Local mode: progress goes to the log (the console shows a bar and eval lines)."""

    def publish(self, progress: Progress) -> None:
        log.debug("progress %s", progress)

    def flush(self, timeout_s: float) -> bool:
        return True


# A patch that takes longer than this is abandoned (and logged); the next report
# carries everything again, so nothing is lost but time.
STATUS_TIMEOUT_S = 10.0


class StatusSink:
    """Cluster mode: merge-patch the WhisperFineTune's status subresource.

    Patches are sent from a thread of their own, so a slow or unreachable API
    server never stalls a training step: ``publish`` only merges the report into
    the one pending patch (reports made while a patch is in flight coalesce, the
    newest value of each field winning), and ``flush`` waits, bounded, for the
    last one (the exported model's) before the trainer exits."""

    def __init__(
        self,
        name: str,
        namespace: str,
        attempt: int | None = None,
        *,
        api: Any = None,
        timeout_s: float = STATUS_TIMEOUT_S,
    ) -> None:
        if api is None:
            from kubernetes import client, config

            try:
                config.load_incluster_config()
            except config.ConfigException:
                # Outside a pod; the client read $KUBECONFIG at import, so pass it on.
                config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))
            api = client.CustomObjectsApi()
        self._api = api
        self.name, self.namespace, self.attempt = name, namespace, attempt
        self.timeout_s = timeout_s
        self._cv = threading.Condition()
        self._pending: dict[str, Any] | None = None
        self._busy = False
        self._thread = threading.Thread(
            target=self._send_loop, name="whisperft-status", daemon=True
        )
        self._thread.start()

    def publish(self, progress: Progress) -> None:
        progress.attempt = self.attempt
        patch = progress.status_patch()
        with self._cv:
            self._pending = patch if self._pending is None else merge(self._pending, patch)
            self._cv.notify_all()

    def flush(self, timeout_s: float) -> bool:
        """True once every report so far has been sent (or given up on)."""
        deadline = time.monotonic() + timeout_s
        with self._cv:
            while self._pending is not None or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(left)
        return True

    def _send_loop(self) -> None:
        while True:
            with self._cv:
                while self._pending is None:
                    self._cv.wait()
                patch, self._pending, self._busy = self._pending, None, True
            try:
                self._api.patch_namespaced_custom_object_status(
                    names.GROUP,
                    names.VERSION,
                    self.namespace,
                    names.PLURAL,
                    self.name,
                    patch,
                    _request_timeout=self.timeout_s,
                )
            except Exception as exc:  # best effort: never stop training for a status update
                log.warning(
                    "could not publish progress to %s/%s: %s", self.namespace, self.name, exc
                )
            finally:
                with self._cv:
                    self._busy = False
                    self._cv.notify_all()


def merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """JSON merge patch of two patches (RFC 7386 without nulls: reports never delete)."""
    out = dict(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def sink_from_env(env: dict[str, str] | None = None) -> ProgressSink:
    env = dict(os.environ) if env is None else env
    name, ns = env.get(names.ENV_FINETUNE_NAME), env.get(names.ENV_FINETUNE_NAMESPACE)
    if name and ns:
        attempt = env.get(names.ENV_ATTEMPT, "")
        return StatusSink(name, ns, int(attempt) if attempt.isdigit() else None)
    return LogSink()
