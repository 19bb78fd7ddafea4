"""Why a fine-tune's pods do not start, read from the pods KubeRay made (pure).

The scheduler and the kubelet already say it, on the pod: `PodScheduled=False`
with the scheduler's reason (no node with free GPUs, a claim that does not
exist or does not bind), or a container waiting to pull an image that cannot
be pulled. The operator copies that into the resource's conditions, so a user
who reads nothing but `kubectl get wft` / `describe wft` sees it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from whisperft.operator.api.phase import Reason

IMAGE_PULL = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}
CONFIG = {"CreateContainerConfigError", "CreateContainerError"}
DEFAULT_STARTUP_DEADLINE_SECONDS = 900


@dataclass(frozen=True)
class StartupProblem:
    reason: Reason
    message: str
    pod: str
    attempt: int | None = None


def pod_problem(pod: dict[str, Any]) -> StartupProblem | None:
    """What keeps one pod from running, or None."""
    md = pod.get("metadata") or {}
    name = md.get("name", "?")
    status = pod.get("status") or {}
    label = (md.get("labels") or {}).get("whisperft.io/attempt")
    attempt = int(label) if label and str(label).isdigit() else None
    for c in status.get("containerStatuses") or []:
        waiting = (c.get("state") or {}).get("waiting") or {}
        why = waiting.get("reason")
        if why in IMAGE_PULL:
            image = c.get("image", "")
            return StartupProblem(
                Reason.IMAGE_PULL_FAILED,
                f"pod {name}: image {image} cannot be pulled ({why}): {waiting.get('message', '')}".rstrip(
                    ": "
                ),
                name,
                attempt,
            )
        if why in CONFIG:
            return StartupProblem(
                Reason.POD_CONFIG_ERROR,
                f"pod {name}: container cannot start ({why}): {waiting.get('message', '')}".rstrip(
                    ": "
                ),
                name,
                attempt,
            )
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            text = cond.get("message") or cond.get("reason") or "not scheduled"
            claim = "persistentvolumeclaim" in text.lower()
            return StartupProblem(
                Reason.CLAIM_NOT_BOUND if claim else Reason.UNSCHEDULABLE,
                (
                    f"pod {name}: its claim does not exist or does not bind: {text}"
                    if claim
                    else f"pod {name} cannot be scheduled: {text}"
                ),
                name,
                attempt,
            )
    return None


def summary(pod: dict[str, Any]) -> dict[str, Any] | None:
    """The little the operator keeps per pod in its index (None: nothing wrong)."""
    p = pod_problem(pod)
    if p is None:
        return None
    # The uid lets the operator drop the entry of a pod deleted while its watch
    # was down (kube.gone_objects), which Kopf's index would otherwise keep.
    uid = (pod.get("metadata") or {}).get("uid")
    return {
        "reason": p.reason.value,
        "message": p.message,
        "pod": p.pod,
        "attempt": p.attempt,
        "uid": uid,
    }


def from_summary(raw: dict[str, Any]) -> StartupProblem:
    return StartupProblem(Reason(raw["reason"]), raw["message"], raw["pod"], raw.get("attempt"))
