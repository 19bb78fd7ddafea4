"""The generated CRD: committed copies current, structural, documented, with a
CEL rule (and a matching pydantic check) for every cross-field rule."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from whisperft import names
from whisperft.operator.api.crd import CRD_FILES, build_crd, crd_yaml
from whisperft.operator.api.resource import SpecError, parse_spec

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from kuberay_crd import to_json_schema

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def crd() -> dict[str, Any]:
    return build_crd()


@pytest.fixture(scope="module")
def root(crd: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


@pytest.mark.parametrize("rel", CRD_FILES, ids=str)
def test_committed_copy_is_current(rel: Path) -> None:
    path = REPO / rel
    assert path.exists(), f"{rel} missing: run `whisperft crd --write`"
    assert path.read_text() == crd_yaml(), (
        f"{rel} drifted from the API types: run `whisperft crd --write`"
    )


def test_field_reference_is_current_and_lists_every_spec_field() -> None:
    from whisperft.operator.api.reference import REFERENCE_FILE, reference_markdown

    text = reference_markdown()
    assert (REPO / REFERENCE_FILE).read_text() == text, (
        f"{REFERENCE_FILE} drifted from the API types: run `whisperft crd --write`"
    )

    def leaves(node: dict[str, Any], path: str) -> list[str]:
        out = []
        for name, sub in node.get("properties", {}).items():
            out.append(f"{path}.{name}")
            out += leaves(sub, f"{path}.{name}")
        return out

    schema = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for field in leaves(schema["properties"]["spec"], "spec"):
        assert f"| `{field}` |" in text, field


def test_names_come_from_whisperft_names(crd: dict[str, Any]) -> None:
    assert crd["metadata"]["name"] == names.CRD_NAME
    n = crd["spec"]["names"]
    assert (n["kind"], n["plural"], n["singular"]) == (names.KIND, names.PLURAL, names.SINGULAR)
    assert n["shortNames"] == ["wft"]
    version = crd["spec"]["versions"][0]
    assert (crd["spec"]["group"], version["name"]) == (names.GROUP, names.VERSION)
    assert version["subresources"] == {"status": {}}
    cols = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert cols["Phase"] == ".status.phase"
    assert cols["Progress"] == ".status.progressText"
    assert cols["Eval WER"] == ".status.progress.evalWer"
    assert cols["Test before"] == ".status.progress.testWerBefore"
    assert cols["Test after"] == ".status.progress.testWerAfter"
    assert cols["Age"] == ".metadata.creationTimestamp"


def _walk(node: dict[str, Any], path: str = "") -> Any:
    yield path, node
    for name, sub in node.get("properties", {}).items():
        yield from _walk(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _walk(node["additionalProperties"], f"{path}{{}}")


def test_schema_is_structural(root: dict[str, Any]) -> None:
    for path, node in _walk(root):
        assert "type" in node, f"{path} has no type"
        for banned in ("$ref", "anyOf", "allOf", "oneOf", "not", "title", "$defs"):
            assert banned not in node, f"{path} uses {banned}"
        assert node.get("additionalProperties") is not False, path
        if "default" in node and node["type"] == "object":
            # Spelled out in full: the API server checks defaults against CEL as written.
            for name, sub in node.get("properties", {}).items():
                if "default" in sub:
                    assert name in node["default"], f"{path}.{name}"


def test_every_field_is_described(root: dict[str, Any]) -> None:
    missing = [
        p
        for p, n in _walk(root)
        if p and p != ".metadata" and not p.endswith(("[]", "{}")) and not n.get("description")
    ]
    assert not missing, f"fields without a description: {missing}"


def test_strings_and_lists_touched_by_cel_are_bounded(root: dict[str, Any]) -> None:
    # Unbounded strings make CEL cost estimates explode and the API server
    # refuses the CRD; keep every spec string bounded.
    for path, node in _walk(root["properties"]["spec"], "spec"):
        if node["type"] == "string" and "enum" not in node:
            assert "maxLength" in node, path
        if node["type"] == "array":
            assert "maxItems" in node, path


def _rules(root: dict[str, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for path, node in _walk(root):
        for rule in node.get("x-kubernetes-validations", []):
            out.setdefault(path or "(root)", []).append(rule["rule"])
    return out


def test_cross_field_rules_are_cel(root: dict[str, Any]) -> None:
    rules = _rules(root)
    assert "has(self.maxSteps) != has(self.epochs)" in rules[".spec.training"]
    assert "has(self.claimName) != has(self.size)" in rules[".spec.checkpoints"]
    assert "!has(self.storageClass) || has(self.size)" in rules[".spec.checkpoints"]
    assert any("self.gpusPerWorker > 0" in r for r in rules[".spec.resources"])
    assert "self == oldSelf" in rules[".spec.model"]
    assert "self == oldSelf" in rules[".spec.checkpoints"]
    assert any("metadata.name.size()" in r for r in rules["(root)"])


# Each CEL rule has a pydantic twin so `whisperft render` refuses what the API server refuses:
# (change to a valid spec, a phrase of the CEL message that the pydantic error must contain too).
VIOLATIONS: list[tuple[dict[str, Any], str]] = [
    (
        {"training": {"maxSteps": 10, "epochs": 1}},
        "exactly one of training.maxSteps or training.epochs",
    ),
    ({"training": {}}, "exactly one of training.maxSteps or training.epochs"),
    ({"checkpoints": {}}, "exactly one of checkpoints.claimName"),
    ({"checkpoints": {"claimName": "mine", "size": "1Gi"}}, "exactly one of checkpoints.claimName"),
    (
        {"checkpoints": {"claimName": "mine", "storageClass": "fast"}},
        "checkpoints.storageClass needs checkpoints.size",
    ),
    (
        {"checkpoints": {"claimName": "mine", "keepClaim": True}},
        "keepClaim applies to a claim the operator creates",
    ),
    ({"resources": {"accelerator": "nvidia-l4", "gpusPerWorker": 0}}, "gpusPerWorker must be > 0"),
    ({"resources": {"gpusPerWorker": 2}}, "gpusPerWorker > 0 needs an accelerator"),
    (
        {"model": {"name": "openai/whisper-small.en", "task": "translate"}},
        "task translate needs a multilingual model",
    ),
    (
        {"dataset": {"path": "x", "minDurationSeconds": 5, "maxDurationSeconds": 2}},
        "minDurationSeconds must be below",
    ),
    (
        {"training": {"maxSteps": 1, "deepspeed": {"stage": 2}}},
        "chosen by the planner when mode is auto",
    ),
    ({"training": {"maxSteps": 1, "deepspeed": {"mode": "explicit"}}}, "mode explicit needs stage"),
    (
        {
            "training": {
                "maxSteps": 1,
                "deepspeed": {"mode": "explicit", "stage": 2, "offloadParams": True},
            }
        },
        "offloadParams needs ZeRO stage 3",
    ),
    (
        {
            "training": {
                "maxSteps": 1,
                "deepspeed": {"mode": "explicit", "stage": 0, "offloadOptimizer": True},
            }
        },
        "offloadOptimizer needs ZeRO stage 1, 2 or 3",
    ),
    ({"output": {"formats": ["ct2"]}}, "output.formats must include hf"),
]
VALID: dict[str, Any] = {
    "dataset": {"path": "bundled:en"},
    "training": {"maxSteps": 10},
    "checkpoints": {"size": "10Gi"},
}


@pytest.mark.parametrize(("change", "phrase"), VIOLATIONS, ids=[v[1][:40] for v in VIOLATIONS])
def test_pydantic_twin_refuses_with_the_cel_message(
    root: dict[str, Any], change: dict[str, Any], phrase: str
) -> None:
    messages = [r["message"] for _, n in _walk(root) for r in n.get("x-kubernetes-validations", [])]
    assert any(phrase in m for m in messages), f"no CEL rule says {phrase!r}"
    with pytest.raises(SpecError, match=phrase.replace("(", r"\(").replace(".", r"\.")):
        parse_spec({**VALID, **change})


def test_valid_spec_passes_both(root: dict[str, Any]) -> None:
    parse_spec(VALID)
    obj = {"apiVersion": names.API_VERSION, "kind": names.KIND, "metadata": {}, "spec": VALID}
    assert not list(jsonschema.Draft7Validator(to_json_schema(root)).iter_errors(obj))


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"resources": {"workers": 0}}, "workers"),
        ({"resources": {"workers": "two"}}, "workers"),
        ({"training": {"maxSteps": -5}}, "maxSteps"),
        ({"training": {"maxSteps": 5, "precision": "int4"}}, "precision"),
        ({"dataset": {"path": "x", "format": "csv"}}, "format"),
        ({"checkpoints": {"size": "ten gigs"}}, "size"),
        ({"maxRestarts": 1000}, "maxRestarts"),
        ({"hfTokenSecretRef": {"name": "hf", "value": "hf_secret"}}, "value"),
        ({"hfToken": "hf_secret"}, "hfToken"),
        ({"dataset": {}}, "path"),
    ],
)
def test_schema_refuses_bad_values_naming_the_field(
    root: dict[str, Any], change: dict[str, Any], field: str
) -> None:
    obj = {
        "apiVersion": names.API_VERSION,
        "kind": names.KIND,
        "metadata": {},
        "spec": {**VALID, **change},
    }
    errors = list(jsonschema.Draft7Validator(to_json_schema(root)).iter_errors(obj))
    assert errors and any(field in (e.json_path + e.message) for e in errors)
    with pytest.raises(SpecError, match=field):
        parse_spec({**VALID, **change})


def test_secrets_only_by_reference(root: dict[str, Any]) -> None:
    secretish = ("token", "password", "secret", "credential", "apikey")
    for path, node in _walk(root["properties"]["spec"], "spec"):
        leaf = path.rsplit(".", 1)[-1].lower()
        if leaf.endswith(secretish) or "secretref" in leaf:
            # a Secret's key, or a whole Secret (storageSecretRef): a name, never a value
            assert node["type"] == "object" and set(node["properties"]) in (
                {"name", "key"},
                {"name"},
            ), path


def test_missing_dataset_training_and_checkpoints_are_refused(root: dict[str, Any]) -> None:
    assert set(root["properties"]["spec"]["required"]) == {"dataset", "training", "checkpoints"}


def test_crd_yaml_round_trips(crd: dict[str, Any]) -> None:
    assert yaml.safe_load(crd_yaml()) == crd
