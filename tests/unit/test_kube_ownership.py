"""Create-or-get adopts only what is already ours."""

from __future__ import annotations

from typing import Any

import pytest

from whisperft.operator.kube import ownership_problem

pytestmark = pytest.mark.unit


def manifest(owner_uid: str | None) -> dict[str, Any]:
    md: dict[str, Any] = {"name": "wft-1-config", "namespace": "ml"}
    if owner_uid:
        md["ownerReferences"] = [{"uid": owner_uid, "controller": True}]
    return {"kind": "ConfigMap", "metadata": md}


def test_ours_is_adopted() -> None:
    assert ownership_problem(manifest("u1"), {"u1"}) is None


def test_another_owner_is_a_conflict_naming_it() -> None:
    problem = ownership_problem(manifest("u1"), {"u2"})
    assert problem is not None
    assert "ConfigMap ml/wft-1-config" in problem and "another owner (uid u2)" in problem


def test_an_unowned_object_is_not_taken_over() -> None:
    problem = ownership_problem(manifest("u1"), set())
    assert problem is not None and "not controlled by this WhisperFineTune" in problem


def test_a_leftover_kept_claim_points_at_claim_name() -> None:
    claim = manifest("u1")
    claim["kind"] = "PersistentVolumeClaim"
    problem = ownership_problem(claim, set())
    assert problem is not None and "set checkpoints.claimName to it" in problem


def test_a_kept_claim_reuses_what_is_there() -> None:
    assert ownership_problem(manifest(None), set()) is None
    assert ownership_problem(manifest(None), {"u9"}) is None
