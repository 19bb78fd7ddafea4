"""manifests/: generated from the chart (no drift), every overlay builds, and the
examples are valid WhisperFineTunes the operator can run with the chart's settings."""

from __future__ import annotations

import copy
import difflib
import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from toolbin import REPO_ROOT, helm_template, require_tool, run_tool

pytestmark = pytest.mark.unit

MANIFESTS = REPO_ROOT / "manifests"
EXAMPLES = sorted((MANIFESTS / "examples").glob("*.yaml"))
KUSTOMIZATIONS = ["base", "overlays/gke", "overlays/dev"]
NAMESPACE = "whisperft-system"


@pytest.fixture(scope="module")
def helm() -> Path:
    return require_tool("helm")


@pytest.fixture(scope="module")
def kubectl() -> Path:
    return require_tool("kubectl")


@pytest.fixture(scope="module")
def render_manifests() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "render_manifests", REPO_ROOT / "tools" / "render_manifests.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def crd_file() -> Path:
    path = MANIFESTS / "base" / "crd.yaml"
    if not path.is_file():
        pytest.fail(f"{path} is missing: run `make crd` (whisperft crd --write)", pytrace=False)
    return path


@pytest.fixture(scope="module")
def built(kubectl: Path) -> dict[str, list[dict[str, Any]]]:
    crd_file()
    out: dict[str, list[dict[str, Any]]] = {}
    for name in KUSTOMIZATIONS:
        text = run_tool([kubectl, "kustomize", MANIFESTS / name]).stdout
        out[name] = [d for d in yaml.safe_load_all(text) if d]
    return out


def settings_in(docs: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    (cm,) = [d for d in docs if d["kind"] == "ConfigMap"]
    return cm["metadata"]["name"], yaml.safe_load(cm["data"]["settings.yaml"])


def operator_accepts(settings: dict[str, Any], tmp_path: Path) -> Any:
    from whisperft.operator.settings import ENV_SETTINGS_FILE, load_settings

    path = tmp_path / "settings.yaml"
    path.write_text(yaml.safe_dump(settings))
    return load_settings({ENV_SETTINGS_FILE: str(path)})


def test_committed_manifests_are_what_the_chart_renders(
    helm: Path, render_manifests: ModuleType
) -> None:
    rendered: dict[Path, str] = render_manifests.render_all(helm)
    assert MANIFESTS / "base" / "kustomization.yaml" in rendered
    assert {p.parent.name for p in rendered} >= {"base", "gke", "dev"}
    stale = []
    for path, text in rendered.items():
        current = path.read_text() if path.is_file() else ""
        if current != text:
            diff = difflib.unified_diff(
                current.splitlines(), text.splitlines(), str(path), "rendered", lineterm="", n=1
            )
            stale.append("\n".join(list(diff)[:40]))
    assert not stale, "manifests/ is stale; run `make manifests`:\n" + "\n\n".join(stale)


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_every_kustomization_builds_a_complete_install(
    name: str, built: dict[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    docs = built[name]
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == sorted(
        [
            "Namespace",
            "CustomResourceDefinition",
            "ServiceAccount",
            "Role",
            "RoleBinding",
            "ConfigMap",
            "Service",
            "Deployment",
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding",
            "ValidatingAdmissionPolicyBinding",
        ]
    )
    for doc in docs:
        if doc["kind"] not in {
            "Namespace",
            "CustomResourceDefinition",
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding",
        }:
            assert doc["metadata"]["namespace"] == NAMESPACE, doc["metadata"]
    # The Deployment mounts the generated (hash-suffixed) ConfigMap, which the
    # operator can load.
    cm_name, settings = settings_in(docs)
    assert cm_name.startswith("whisperft-settings-")
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["settings"]["configMap"]["name"] == cm_name
    assert "checksum/settings" not in deployment["spec"]["template"]["metadata"].get(
        "annotations", {}
    )
    loaded = operator_accepts(settings, tmp_path)
    assert loaded.namespaces == [NAMESPACE]  # namespaced: the install namespace
    (crd,) = [d for d in docs if d["kind"] == "CustomResourceDefinition"]
    assert crd["metadata"]["name"] == "whisperfinetunes.whisperft.io"


def test_base_is_the_chart_with_its_default_namespaced_scope(
    helm: Path, built: dict[str, list[dict[str, Any]]]
) -> None:
    # the chart's defaults but one standalone replica (manifests/base/values.yaml)
    chart = helm_template(
        helm, {"peering": {"enabled": False}}, release="whisperft", namespace=NAMESPACE
    )
    base = built["base"]

    def key(d: dict[str, Any]) -> tuple[str, str]:
        return d["kind"], d["metadata"]["name"]

    chart_objects = {key(d): d for d in chart if d["kind"] != "ConfigMap"}
    base_objects = {
        key(d): d
        for d in base
        if d["kind"] not in {"ConfigMap", "Namespace", "CustomResourceDefinition"}
    }
    assert set(chart_objects) == set(base_objects)
    for k, obj in chart_objects.items():
        # Same object except Helm's own labels and the checksum the hash replaces.
        assert obj.get("rules") == base_objects[k].get("rules")
        assert obj.get("subjects") == base_objects[k].get("subjects")
        if k[0] == "Deployment":
            chart_pod = copy.deepcopy(obj["spec"]["template"]["spec"])
            base_pod = copy.deepcopy(base_objects[k]["spec"]["template"]["spec"])
            for pod in (chart_pod, base_pod):
                for v in pod["volumes"]:
                    if "configMap" in v:
                        v["configMap"]["name"] = "settings"
            assert chart_pod == base_pod
    chart_settings = yaml.safe_load(
        next(d for d in chart if d["kind"] == "ConfigMap")["data"]["settings.yaml"]
    )
    assert settings_in(base)[1] == chart_settings


def test_gke_overlay_selects_gke_accelerator_labels(built: dict[str, list[dict[str, Any]]]) -> None:
    _, settings = settings_in(built["overlays/gke"])
    assert set(settings["nodePools"]) == {"nvidia-l4", "nvidia-a100-80gb", "nvidia-h100-80gb"}
    for name, pool in settings["nodePools"].items():
        assert pool["nodeSelector"] == {"cloud.google.com/gke-accelerator": name}
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pool[
            "tolerations"
        ]
    (deployment,) = [d for d in built["overlays/gke"] if d["kind"] == "Deployment"]
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "us-docker.pkg.dev/PROJECT/whisperft/whisperft-operator:0.1.0"


def test_dev_overlay_has_debug_logs_local_images_and_small_defaults(
    built: dict[str, list[dict[str, Any]]],
) -> None:
    (deployment,) = [d for d in built["overlays/dev"] if d["kind"] == "Deployment"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "localhost:5001/whisperft-operator:dev"
    assert container["imagePullPolicy"] == "Always"
    assert "--verbose" in container["args"] and "--log-format=plain" in container["args"]
    assert "--log-format=json" not in container["args"]
    _, settings = settings_in(built["overlays/dev"])
    assert settings["trainerImage"] == "localhost:5001/whisperft-trainer:dev"
    assert settings["workerDefaults"] == {"cpu": "2", "memory": "8Gi"}
    assert list(settings["nodePools"]) == ["nvidia-l4"]


# --- examples ----------------------------------------------------------------


def crd_schema() -> dict[str, Any]:
    crd = yaml.safe_load(crd_file().read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def finetunes(path: Path) -> list[dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    return [d for d in docs if d.get("kind") == "WhisperFineTune"]


def strict(node: Any) -> Any:
    """Refuse unknown fields, as the API server does under kubectl's default
    strict field validation (a structural schema cannot say so itself)."""
    if isinstance(node, dict):
        out = {k: strict(v) for k, v in node.items()}
        if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
        return out
    if isinstance(node, list):
        return [strict(v) for v in node]
    return node


def validator() -> jsonschema.Draft4Validator:
    # OpenAPI v3.0 schemas use draft-4 style boolean exclusiveMinimum/Maximum;
    # x-kubernetes-* keys are unknown keywords and ignored (the operator's
    # pydantic twin of each CEL rule is checked below instead).
    return jsonschema.Draft4Validator(strict(crd_schema()))


def test_the_four_documented_examples_exist_one_resource_each() -> None:
    assert {p.stem for p in EXAMPLES} >= {
        "minimal",
        "multilingual-commonvoice",
        "deepspeed-explicit",
        "kueue",
    }
    # One document per file: `kubectl apply -f` of one example is one fine-tune,
    # and the e2e suite loads them that way.
    for path in EXAMPLES:
        assert len([d for d in yaml.safe_load_all(path.read_text()) if d]) == 1, path.name


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_validates_against_the_crd_schema(path: Path) -> None:
    docs = finetunes(path)
    assert docs, f"{path} has no WhisperFineTune"
    check = validator()
    for doc in docs:
        errors = [
            f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in check.iter_errors(doc)
        ]
        assert not errors, f"{path.name}: {errors}"


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_renders_with_the_charts_settings(path: Path, helm: Path, tmp_path: Path) -> None:
    """Cross-field rules hold and the accelerator is in the chart's default pools."""
    from whisperft.operator.api.resource import load_resources
    from whisperft.operator.render.bundle import render_attempt
    from whisperft.operator.render.meta import Meta

    (cm,) = [d for d in helm_template(helm) if d["kind"] == "ConfigMap"]
    settings = operator_accepts(yaml.safe_load(cm["data"]["settings.yaml"]), tmp_path)
    for res in load_resources(path.read_text(), source=str(path)):
        out = render_attempt(res.spec, Meta(res.metadata.name, "ml", None), settings, 1)
        assert out.problem is None, f"{path.name}: {out.problem}"
        kinds = {c["kind"] for c in out.children}
        assert "RayJob" in kinds


def test_example_validation_catches_bad_resources() -> None:
    (doc,) = finetunes(MANIFESTS / "examples" / "minimal.yaml")
    check = validator()
    bad_type = copy.deepcopy(doc)
    bad_type["spec"]["resources"]["workers"] = "two"
    unknown = copy.deepcopy(doc)
    unknown["spec"]["training"]["maxStep"] = 5
    missing = copy.deepcopy(doc)
    del missing["spec"]["dataset"]
    for bad in (bad_type, unknown, missing):
        assert list(check.iter_errors(bad)), f"accepted {bad['spec']}"


def test_kueue_example_is_labelled_for_its_queue(helm: Path, tmp_path: Path) -> None:
    from whisperft.operator.api.resource import load_resources
    from whisperft.operator.render.bundle import render_attempt
    from whisperft.operator.render.meta import KUEUE_QUEUE_LABEL, Meta

    (cm,) = [d for d in helm_template(helm) if d["kind"] == "ConfigMap"]
    settings = operator_accepts(yaml.safe_load(cm["data"]["settings.yaml"]), tmp_path)
    (res,) = load_resources((MANIFESTS / "examples" / "kueue.yaml").read_text(), source="kueue")
    out = render_attempt(res.spec, Meta(res.metadata.name, "ml", None), settings, 1)
    (rayjob,) = [c for c in out.children if c["kind"] == "RayJob"]
    assert rayjob["metadata"]["labels"][KUEUE_QUEUE_LABEL] == "speech-team"


def test_gitops_guide_overlay_without_the_crd_builds(kubectl: Path, tmp_path: Path) -> None:
    """docs/gitops.md's operator-only overlay (for a separate CRD application)."""
    guide = (REPO_ROOT / "docs" / "gitops.md").read_text()
    block = (
        guide.split("<!-- operator-without-crd -->", 1)[1]
        .split("```yaml\n", 1)[1]
        .split("```", 1)[0]
    )
    repo = tmp_path / "repo"
    (repo / "manifests").mkdir(parents=True)
    for part in ("base", "overlays"):
        shutil.copytree(MANIFESTS / part, repo / "manifests" / part)
    overlay = repo / "clusters" / "prod" / "whisperft"
    overlay.mkdir(parents=True)
    (overlay / "kustomization.yaml").write_text(block)
    docs = [d for d in yaml.safe_load_all(run_tool([kubectl, "kustomize", overlay]).stdout) if d]
    kinds = {d["kind"] for d in docs}
    assert "CustomResourceDefinition" not in kinds
    assert {"Deployment", "Role", "ConfigMap", "Namespace", "ValidatingAdmissionPolicy"} <= kinds
