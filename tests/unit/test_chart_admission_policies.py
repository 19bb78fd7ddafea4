"""The chart's ValidatingAdmissionPolicies as rendered: on by default, bound to
the operator's own ServiceAccount, fed by the trainer image values, covering
every *SecretRef field of the CRD. (tests/e2e/test_e2e_13_admission_policies.py
runs them on a real API server.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from toolbin import CHART_DIR, helm_template, helm_template_text, require_tool

pytestmark = pytest.mark.unit

CRD = CHART_DIR / "crds" / "whisperfinetunes.whisperft.io.yaml"
VAP = "ValidatingAdmissionPolicy"
BINDING = "ValidatingAdmissionPolicyBinding"


@pytest.fixture(scope="module")
def helm() -> Path:
    return require_tool("helm")


def policies(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == VAP}


def variables(policy: dict[str, Any]) -> dict[str, str]:
    return {v["name"]: v["expression"] for v in policy["spec"].get("variables", [])}


def test_on_by_default_and_bound_with_deny(helm: Path) -> None:
    docs = helm_template(helm, release="wft", namespace="ml-system")
    vaps = policies(docs)
    assert sorted(vaps) == ["wft-whisperft-ml-system-rayjobs", "wft-whisperft-ml-system-secretrefs"]
    bindings = {d["spec"]["policyName"]: d for d in docs if d["kind"] == BINDING}
    assert set(bindings) == set(vaps)
    for name, binding in bindings.items():
        assert binding["metadata"]["name"] == name
        assert binding["spec"]["validationActions"] == ["Deny"]
        assert "paramRef" not in binding["spec"] and "matchResources" not in binding["spec"]
    for vap in vaps.values():
        assert vap["apiVersion"] == "admissionregistration.k8s.io/v1"
        assert vap["spec"]["failurePolicy"] == "Fail"
        assert "namespace" not in vap["metadata"]  # cluster-scoped


def test_rayjob_policy_matches_only_the_operator_account(helm: Path) -> None:
    docs = helm_template(helm, release="wft", namespace="ml-system")
    vap = policies(docs)["wft-whisperft-ml-system-rayjobs"]
    (rule,) = vap["spec"]["matchConstraints"]["resourceRules"]
    assert (rule["apiGroups"], rule["resources"]) == (["ray.io"], ["rayjobs"])
    assert sorted(rule["operations"]) == ["CREATE", "UPDATE"]
    (cond,) = vap["spec"]["matchConditions"]
    (sa,) = [d for d in docs if d["kind"] == "ServiceAccount"]
    assert sa["metadata"]["name"] == "wft-whisperft-operator"
    assert cond["expression"] == (
        'request.userInfo.username == "system:serviceaccount:ml-system:wft-whisperft-operator"'
    )
    # An existing ServiceAccount named in the values is the one matched.
    docs = helm_template(
        helm, {"serviceAccount": {"create": False, "name": "ops"}}, namespace="ml-system"
    )
    (vap,) = [d for d in docs if d["kind"] == VAP and d["metadata"]["name"].endswith("-rayjobs")]
    assert vap["spec"]["matchConditions"][0]["expression"].endswith(
        '"system:serviceaccount:ml-system:ops"'
    )


def test_trainer_image_values_reach_the_rayjob_policy(helm: Path) -> None:
    default = variables(
        policies(helm_template(helm, release="wft", namespace="n"))["wft-whisperft-n-rayjobs"]
    )
    assert default["trainerImage"] == '"ghcr.io/whisperft/trainer:0.1.0"'
    assert default["trainerRepository"] == '"ghcr.io/whisperft/trainer"'
    assert default["allowedPrefixes"] == "[]"
    assert default["requireDigest"] == "false"
    values = {
        "trainer": {
            "image": {
                "repository": "reg.corp/ml/whisperft",
                "tag": "2",
                "digest": "sha256:" + "a" * 64,
            },
            "allowedImages": ["reg.corp/ml/", "reg.corp/speech"],
            "requireDigest": True,
        }
    }
    got = variables(
        policies(helm_template(helm, values, release="wft", namespace="n"))[
            "wft-whisperft-n-rayjobs"
        ]
    )
    assert got["trainerImage"] == f'"reg.corp/ml/whisperft:2@sha256:{"a" * 64}"'
    assert got["allowedPrefixes"] == '["reg.corp/ml","reg.corp/speech"]'  # whole segments
    assert got["requireDigest"] == "true"


def _secret_ref_paths(schema: dict[str, Any], prefix: str = "") -> list[str]:
    out: list[str] = []
    for key, sub in (schema.get("properties") or {}).items():
        path = f"{prefix}{key}"
        if key.endswith("SecretRef"):
            out.append(path)
        out += _secret_ref_paths(sub, path + ".")
        if "items" in sub:
            out += _secret_ref_paths(sub["items"], path + "[].")
    return out


def test_every_secret_ref_of_the_crd_is_checked(helm: Path) -> None:
    crd = yaml.safe_load(CRD.read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v.get("storage")]
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    refs = _secret_ref_paths(spec)
    assert "hfTokenSecretRef" in refs
    (vap,) = [
        d
        for d in helm_template(helm, namespace="n")
        if d["kind"] == VAP and d["metadata"]["name"].endswith("-secretrefs")
    ]
    (rule,) = vap["spec"]["matchConstraints"]["resourceRules"]
    assert (rule["apiGroups"], rule["resources"]) == (["whisperft.io"], ["whisperfinetunes"])
    assert "matchConditions" not in vap["spec"]  # every user, the operator included
    checked = {
        ref
        for ref in refs
        for v in vap["spec"]["validations"]
        if f"object.spec.{ref}.name" in v["expression"]
        and 'check("get").allowed()' in v["expression"]
        and f"spec.{ref}.name" in v["messageExpression"]
    }
    assert checked == set(refs), f"*SecretRef fields not checked: {sorted(set(refs) - checked)}"


def test_policies_can_be_turned_off_or_only_warn(helm: Path) -> None:
    off = helm_template(helm, {"admissionPolicies": {"enabled": False}})
    assert not [d for d in off if d["kind"] in {VAP, BINDING}]
    only = helm_template(helm, {"admissionPolicies": {"secretRefs": {"enabled": False}}})
    assert [d["metadata"]["name"].rsplit("-", 1)[1] for d in only if d["kind"] == VAP] == [
        "rayjobs"
    ]
    warn = helm_template(helm, {"admissionPolicies": {"validationActions": ["Warn", "Audit"]}})
    assert {tuple(d["spec"]["validationActions"]) for d in warn if d["kind"] == BINDING} == {
        ("Warn", "Audit")
    }


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ({"admissionPolicies": {"validationActions": ["Deny", "Warn"]}}, "/admissionPolicies/validationActions"),
        ({"admissionPolicies": {"validationActions": ["Refuse"]}}, "/admissionPolicies/validationActions/0"),
        ({"admissionPolicies": {"validationActions": []}}, "/admissionPolicies/validationActions"),
        ({"admissionPolicies": {"rayjobs": {"enabled": True}}}, "additional properties 'rayjobs'"),
    ],
)  # fmt: skip
def test_schema_refuses_bad_admission_values(
    helm: Path, values: dict[str, Any], reason: str
) -> None:
    out = helm_template_text(helm, values, check=False)
    assert out.returncode != 0
    assert reason in out.stderr, out.stderr


def test_older_kubernetes_is_told_to_turn_the_policies_off(helm: Path) -> None:
    out = subprocess.run(
        [str(helm), "template", "wft", str(CHART_DIR), "--kube-version", "1.29.4"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode != 0
    assert "Kubernetes 1.30+" in out.stderr and "admissionPolicies.enabled=false" in out.stderr
    out = subprocess.run(
        [str(helm), "template", "wft", str(CHART_DIR), "--kube-version", "1.29.4",
         "--set", "admissionPolicies.enabled=false"],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
