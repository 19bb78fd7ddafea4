"""The Argo CD health check (manifests/argocd/health.lua), run in Lua 5.1 (what
Argo CD's gopher-lua implements) against sample WhisperFineTune statuses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from lupa import lua51

pytestmark = pytest.mark.unit

REPO_ROOT = Path(__file__).resolve().parents[2]
HEALTH_LUA = REPO_ROOT / "manifests" / "argocd" / "health.lua"
ARGOCD_CM = REPO_ROOT / "manifests" / "argocd" / "argocd-cm.yaml"


def health(obj: dict[str, Any]) -> tuple[str, str]:
    """Run the script as Argo CD does: `obj` global, the chunk returns {status, message}."""
    lua = lua51.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute(HEALTH_LUA.read_text())
    return str(result["status"]), str(result["message"])


def finetune(status: dict[str, Any] | None = None, generation: int = 1) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "whisperft.io/v1alpha1",
        "kind": "WhisperFineTune",
        "metadata": {"name": "ft", "namespace": "ml", "generation": generation},
        "spec": {"dataset": {"path": "bundled:en"}, "checkpoints": {"size": "1Gi"}},
    }
    if status is not None:
        obj["status"] = status
    return obj


def cond(type_: str, status: str, reason: str, message: str = "") -> dict[str, str]:
    return {"type": type_, "status": status, "reason": reason, "message": message}


CASES: list[tuple[str, dict[str, Any] | None, int, str, str]] = [
    ("no status yet", None, 1, "Progressing", "Waiting for the whisperft operator"),
    ("empty status", {}, 1, "Progressing", "Waiting for the whisperft operator"),
    (
        "spec changed, not yet observed",
        {"phase": "Succeeded", "observedGeneration": 1},
        2,
        "Progressing",
        "Waiting for the operator to act on generation 2",
    ),
    (
        "planning",
        {"phase": "Planning", "observedGeneration": 1, "message": "Checking the memory plan"},
        1,
        "Progressing",
        "Checking the memory plan",
    ),
    (
        "queued by Kueue",
        {
            "phase": "Pending",
            "observedGeneration": 1,
            "conditions": [cond("Planned", "True", "PlanFits")],
        },
        1,
        "Progressing",
        "Pending",
    ),
    (
        "training",
        {
            "phase": "Running",
            "observedGeneration": 1,
            "progressText": "120/1000 (12%)",
            "conditions": [cond("Running", "True", "JobRunning")],
        },
        1,
        "Progressing",
        "Training: step 120/1000 (12%)",
    ),
    (
        "succeeded",
        {
            "phase": "Succeeded",
            "observedGeneration": 1,
            "progress": {"testWerAfter": 0.0731, "evalWer": 0.08},
            "conditions": [cond("Succeeded", "True", "JobSucceeded")],
        },
        1,
        "Healthy",
        "Fine-tune succeeded (test WER 7.3%)",
    ),
    ("succeeded without progress", {"phase": "Succeeded"}, 1, "Healthy", "Fine-tune succeeded"),
    (
        "failed after restarts",
        {
            "phase": "Failed",
            "observedGeneration": 1,
            "conditions": [
                cond("Failed", "True", "RestartsExhausted", "attempt 3 of 3 failed: AppFailed")
            ],
        },
        1,
        "Degraded",
        "attempt 3 of 3 failed: AppFailed",
    ),
    (
        "failed condition while the phase lags",
        {"phase": "Running", "conditions": [cond("Failed", "True", "JobFailed")]},
        1,
        "Degraded",
        "JobFailed",
    ),
    (
        "unknown accelerator",
        {
            "phase": "Pending",
            "conditions": [
                cond("Planned", "False", "UnknownAccelerator", "no node pool provides nvidia-b200")
            ],
        },
        1,
        "Degraded",
        "no node pool provides nvidia-b200",
    ),
    (
        "suspended",
        {
            "phase": "Suspended",
            "conditions": [cond("Suspended", "True", "Suspended", "GPUs released")],
        },
        1,
        "Suspended",
        "GPUs released",
    ),
    (
        "suspending",
        {"phase": "Running", "conditions": [cond("Suspended", "True", "Suspending")]},
        1,
        "Suspended",
        "Suspending",
    ),
    (
        "resumed (Suspended condition False)",
        {"phase": "Running", "conditions": [cond("Suspended", "False", "NotSuspended")]},
        1,
        "Progressing",
        "Training",
    ),
]


@pytest.mark.parametrize(
    ("status", "generation", "want_status", "want_message"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_health(
    status: dict[str, Any] | None, generation: int, want_status: str, want_message: str
) -> None:
    assert health(finetune(status, generation)) == (want_status, want_message)


def test_every_argo_cd_status_it_returns_is_a_real_one() -> None:
    allowed = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}
    assert {c[3] for c in CASES} <= allowed
    assert {c[3] for c in CASES} == {"Healthy", "Progressing", "Degraded", "Suspended"}


def test_phases_match_the_operator_vocabulary() -> None:
    from whisperft.operator.api.phase import ConditionType, Phase

    script = HEALTH_LUA.read_text()
    for phase in ("Succeeded", "Failed", "Suspended", "Running"):
        assert Phase(phase) and f'"{phase}"' in script
    for ctype in ("Failed", "Planned", "Suspended"):
        assert ConditionType(ctype) and f'"{ctype}"' in script


def test_argocd_cm_snippet_embeds_this_script() -> None:
    cm = yaml.safe_load(ARGOCD_CM.read_text())
    assert cm["metadata"]["name"] == "argocd-cm"
    assert (
        cm["data"]["resource.customizations.health.whisperft.io_WhisperFineTune"]
        == HEALTH_LUA.read_text()
    )
