"""Security contexts that pass the PodSecurity `restricted` profile."""

from __future__ import annotations

from typing import Any

from whisperft.operator.settings import Settings

RUNTIME_DEFAULT = {"type": "RuntimeDefault"}


def pod_security_context(settings: Settings) -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": settings.run_as_user,
        "runAsGroup": settings.fs_group,
        "fsGroup": settings.fs_group,
        # Without it the kubelet re-chowns every file of the claim at each mount: minutes
        # for a claim of checkpoints and features, at every attempt.
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": dict(RUNTIME_DEFAULT),
    }


def container_security_context(settings: Settings) -> dict[str, Any]:
    # Repeated per container because KubeRay copies the Ray container's
    # context onto the init containers it injects.
    return {
        "runAsNonRoot": True,
        "runAsUser": settings.run_as_user,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": dict(RUNTIME_DEFAULT),
    }
