"""Every rendered RayJob validates against KubeRay's own RayJob CRD schema (the
version the e2e suite runs; see tests/kuberay_crd.py), with unknown fields an
error, since the API server would silently prune them."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from whisperft.operator.api.resource import parse_resource
from whisperft.operator.render.bundle import render_attempt
from whisperft.operator.render.meta import Meta

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import kuberay_crd
from test_render_golden import CASES, SETTINGS

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def validator() -> Any:
    return kuberay_crd.rayjob_validator()


def _rayjob(body: dict[str, Any], attempt: int) -> dict[str, Any]:
    res = parse_resource(body)
    out = render_attempt(res.spec, Meta(res.metadata.name, "ml", "uid"), SETTINGS, attempt)
    return out.of_kind("RayJob")[0]


@pytest.mark.parametrize(("name", "body", "attempt"), CASES, ids=[c[0] for c in CASES])
def test_rendered_rayjob_is_valid_for_kuberay(
    validator: Any, name: str, body: dict[str, Any], attempt: int
) -> None:
    errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(_rayjob(body, attempt))]
    assert not errors, f"KubeRay {kuberay_crd.kuberay_version()} refuses {name}:\n" + "\n".join(
        errors
    )


def test_the_check_catches_a_field_kuberay_does_not_know(validator: Any) -> None:
    rayjob = _rayjob(CASES[0][1], 1)
    rayjob["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["gpusPerWorker"] = 1
    rayjob["spec"]["shutdownAfterJobFinishes"] = "yes"
    messages = [e.message for e in validator.iter_errors(rayjob)]
    assert any("gpusPerWorker" in m for m in messages)
    assert any("'yes' is not of type 'boolean'" in m for m in messages)
