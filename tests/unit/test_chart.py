"""The Helm chart: metadata, lint, documented values, and the operator Deployment."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from toolbin import (
    CHART_DIR,
    KUBE_VERSION,
    REPO_ROOT,
    helm_template,
    helm_template_text,
    require_tool,
    run_tool,
)

import whisperft

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def helm() -> Path:
    return require_tool("helm")


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def the_deployment(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = by_kind(docs, "Deployment")
    return deployment


def test_app_version_is_the_package_version() -> None:
    chart = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()
    (project_version,) = re.findall(r'(?m)^version = "([^"]+)"', pyproject)
    assert chart["appVersion"] == project_version == whisperft.__version__


def test_helm_lint_is_clean(helm: Path) -> None:
    proc = run_tool([helm, "lint", CHART_DIR, "--strict", "--kube-version", KUBE_VERSION])
    assert "0 chart(s) failed" in proc.stdout
    # --strict turns warnings into failures; only the icon hint may remain.
    findings = [line for line in proc.stdout.splitlines() if line.startswith("[")]
    assert findings == ["[INFO] Chart.yaml: icon is recommended"], proc.stdout


def test_default_values_satisfy_the_schema() -> None:
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.Draft7Validator(schema).validate(values)


_KEY = re.compile(r"^(?P<indent>\s*)(?:- )?(?P<key>[\w./-]+):(?P<rest>.*)$")


def undocumented_values(text: str) -> list[str]:
    """Leaf keys of values.yaml with no `# --` comment on them or on an ancestor."""
    missing: list[str] = []
    stack: list[tuple[int, str, bool]] = []  # (indent, key, documented)
    comment: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            comment = []
            continue
        if stripped.startswith("#"):
            comment.append(stripped)
            continue
        match = _KEY.match(line)
        if match is None:  # a list item scalar: covered by its parent
            comment = []
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        documented = any(c.startswith("# --") for c in comment) or any(d for _, _, d in stack)
        path = ".".join([k for _, k, _ in stack] + [match["key"]])
        rest = match["rest"].split(" #")[0].strip()
        if rest and not documented:
            missing.append(path)
        stack.append((indent, match["key"], documented))
        comment = []
    return missing


def test_every_value_is_documented() -> None:
    assert undocumented_values((CHART_DIR / "values.yaml").read_text()) == []


def test_the_documentation_check_can_fail() -> None:
    text = "a:\n  # -- fine\n  b: 1\n  c: 2\n# -- whole block\nd:\n  e: 3\n"
    assert undocumented_values(text) == ["a.c"]


def test_default_render_has_the_expected_objects(helm: Path) -> None:
    docs = helm_template(helm, release="wft", namespace="whisperft-system")
    kinds = sorted((d["kind"], d["metadata"]["name"], d["metadata"].get("namespace")) for d in docs)
    assert kinds == sorted(
        [
            ("ServiceAccount", "wft-whisperft-operator", "whisperft-system"),
            ("ConfigMap", "wft-whisperft-settings", "whisperft-system"),
            ("Role", "wft-whisperft-operator", "whisperft-system"),
            ("RoleBinding", "wft-whisperft-operator", "whisperft-system"),
            ("Service", "wft-whisperft-metrics", "whisperft-system"),
            ("Deployment", "wft-whisperft-operator", "whisperft-system"),
            # two peered replicas by default
            ("PodDisruptionBudget", "wft-whisperft-operator", "whisperft-system"),
            ("KopfPeering", "wft-whisperft-whisperft-system", "whisperft-system"),
            # Cluster-scoped, so named after the release's namespace too.
            ("ValidatingAdmissionPolicy", "wft-whisperft-whisperft-system-rayjobs", None),
            ("ValidatingAdmissionPolicyBinding", "wft-whisperft-whisperft-system-rayjobs", None),
            ("ValidatingAdmissionPolicy", "wft-whisperft-whisperft-system-secretrefs", None),
            ("ValidatingAdmissionPolicyBinding", "wft-whisperft-whisperft-system-secretrefs", None),
        ]
    )


def test_operator_pod_meets_the_restricted_pod_security_standard(helm: Path) -> None:
    pod = the_deployment(helm_template(helm))["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not {"hostNetwork", "hostPID", "hostIPC"} & pod.keys()
    assert all("hostPath" not in v for v in pod["volumes"])
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["privileged"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["readOnlyRootFilesystem"] is True
    # Read-only root: /tmp is the one writable place, a size-capped emptyDir.
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts["/tmp"]]["emptyDir"]["sizeLimit"] == "64Mi"
    assert container["resources"]["limits"]["memory"] == "1Gi"
    assert container["resources"]["requests"]["cpu"] == "100m"


def test_probes_hit_the_kopf_liveness_endpoint_the_operator_is_told_to_serve(helm: Path) -> None:
    deployment = the_deployment(helm_template(helm, {"probes": {"port": 8181}}))
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["whisperft", "operator", "run"]
    assert "--liveness=http://0.0.0.0:8181/healthz" in container["args"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["healthz"] == 8181
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "healthz"}


def test_settings_are_mounted_where_the_env_says_and_roll_the_pod(helm: Path) -> None:
    docs = helm_template(helm)
    pod = the_deployment(docs)["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    settings_path = Path(env["WHISPERFT_SETTINGS_FILE"])
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == str(settings_path.parent)]
    (volume,) = [v for v in pod["spec"]["volumes"] if v["name"] == mount["name"]]
    (configmap,) = by_kind(docs, "ConfigMap")
    assert volume["configMap"]["name"] == configmap["metadata"]["name"]
    assert settings_path.name in configmap["data"]
    # A settings change must change the pod template so the operator restarts.
    changed = the_deployment(helm_template(helm, {"operator": {"syncIntervalSeconds": 10}}))
    assert (
        changed["spec"]["template"]["metadata"]["annotations"]["checksum/settings"]
        != pod["metadata"]["annotations"]["checksum/settings"]
    )


def test_notes_explain_how_to_submit_and_watch_a_first_finetune(helm: Path, tmp_path: Path) -> None:
    # NOTES.txt only renders on install; render it as a template in a copy.
    chart = tmp_path / "whisperft"
    shutil.copytree(CHART_DIR, chart)
    shutil.copy(chart / "templates" / "NOTES.txt", chart / "notes.txt")
    (chart / "templates" / "zz-notes.yaml").write_text(
        'notes: |\n  {{- tpl (.Files.Get "notes.txt") . | nindent 2 }}\n'
    )
    values = {"watch": {"scope": "namespaces", "namespaces": ["speech-a", "speech-b"]}}
    docs = helm_template(helm, values, chart=chart, namespace="whisperft-system")
    (notes,) = [d["notes"] for d in docs if "notes" in d]
    assert "The operator serves WhisperFineTunes in: speech-a, speech-b" in notes
    assert "kubectl -n speech-a get wft first-finetune -w" in notes
    assert "rollout status deployment/wft-whisperft-operator" in notes
    # The example it prints is a real resource: it parses and uses a listed pool.
    example = yaml.safe_load(
        notes.split("<<'YAML'", 1)[1].split("\n", 1)[1].split("     YAML", 1)[0]
    )
    assert example["kind"] == "WhisperFineTune"
    assert example["spec"]["resources"]["accelerator"] == "nvidia-l4"
    assert example["metadata"]["name"] == "first-finetune"
    # ...and one the operator accepts (its pydantic twin of the CRD's rules).
    from whisperft.operator.api.resource import load_resources

    (resource,) = load_resources(yaml.safe_dump(example), source="NOTES.txt")
    assert resource.spec.resources.accelerator == "nvidia-l4"


def test_chart_readme_covers_every_top_level_value() -> None:
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    readme = (CHART_DIR / "README.md").read_text()
    missing = [key for key in values if f"`{key}" not in readme]
    assert not missing, f"charts/whisperft/README.md does not mention: {missing}"


# ---- high availability (issue 15): replicas, peering, PodDisruptionBudget ----


def _operator_args(docs: list[dict[str, Any]]) -> list[str]:
    (container,) = the_deployment(docs)["spec"]["template"]["spec"]["containers"]
    return list(container["args"])


def _rules(doc: dict[str, Any]) -> set[tuple[str, str, tuple[str, ...]]]:
    return {
        (g, r, tuple(sorted(rule["verbs"])))
        for rule in doc["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
    }


def test_default_is_two_peered_replicas_with_a_pdb(helm: Path) -> None:
    """High availability out of the box: a platform team upgrades the operator while
    fine-tunes run, and a node drain never takes the only replica."""
    docs = helm_template(helm)
    deployment = the_deployment(docs)
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    assert [a for a in _operator_args(docs) if a.startswith("--peering=")]
    assert len(by_kind(docs, "PodDisruptionBudget")) == 1
    assert by_kind(docs, "KopfPeering")
    (role,) = by_kind(docs, "Role")
    assert ("kopf.dev", "kopfpeerings", ("list", "patch", "watch")) in _rules(role)


def test_peering_off_is_one_standalone_replica_without_peering_or_pdb(helm: Path) -> None:
    docs = helm_template(helm, {"peering": {"enabled": False}})
    deployment = the_deployment(docs)
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert not [a for a in _operator_args(docs) if a.startswith("--peering")]
    assert not by_kind(docs, "PodDisruptionBudget")
    assert not by_kind(docs, "KopfPeering") and not by_kind(docs, "ClusterKopfPeering")
    (role,) = by_kind(docs, "Role")
    assert not [r for r in _rules(role) if r[0] == "kopf.dev"]


def test_peering_runs_two_rolling_replicas_with_a_pdb_and_a_peering_per_namespace(
    helm: Path,
) -> None:
    values = {
        "peering": {"enabled": True},
        "watch": {"scope": "namespaces", "namespaces": ["team-a", "team-b"]},
    }
    docs = helm_template(helm, values, namespace="whisperft-system")
    deployment = the_deployment(docs)
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    (pdb,) = by_kind(docs, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"]
    assert pdb["metadata"]["namespace"] == "whisperft-system"
    # One peering object per served namespace, named as the operator is told.
    peerings = by_kind(docs, "KopfPeering")
    assert sorted(p["metadata"]["namespace"] for p in peerings) == ["team-a", "team-b"]
    assert {p["apiVersion"] for p in peerings} == {"kopf.dev/v1"}
    (name,) = {p["metadata"]["name"] for p in peerings}
    args = _operator_args(docs)
    assert f"--peering={name}" in args and "--peering-lifetime=30" in args
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    # Each served namespace's Role may see and keep alive in the peering object.
    for role in by_kind(docs, "Role"):
        assert ("kopf.dev", "kopfpeerings", ("list", "patch", "watch")) in _rules(role)


def test_peering_cluster_wide_uses_one_cluster_peering(helm: Path) -> None:
    docs = helm_template(
        helm, {"peering": {"enabled": True, "lifetimeSeconds": 20}, "watch": {"scope": "all"}}
    )
    (peering,) = by_kind(docs, "ClusterKopfPeering")
    assert "namespace" not in peering["metadata"]
    assert not by_kind(docs, "KopfPeering")
    args = _operator_args(docs)
    assert f"--peering={peering['metadata']['name']}" in args
    assert "--peering-lifetime=20" in args
    (role,) = by_kind(docs, "ClusterRole")
    assert ("kopf.dev", "clusterkopfpeerings", ("list", "patch", "watch")) in _rules(role)
    assert not [r for r in _rules(role) if r[1] == "kopfpeerings"]


def test_the_pdb_follows_the_replica_count(helm: Path) -> None:
    one = helm_template(helm, {"peering": {"enabled": True}, "replicaCount": 1})
    assert the_deployment(one)["spec"]["replicas"] == 1
    assert not by_kind(one, "PodDisruptionBudget")
    three = helm_template(helm, {"peering": {"enabled": True}, "replicaCount": 3})
    assert the_deployment(three)["spec"]["replicas"] == 3
    assert len(by_kind(three, "PodDisruptionBudget")) == 1
    off = helm_template(
        helm, {"peering": {"enabled": True}, "podDisruptionBudget": {"enabled": False}}
    )
    assert not by_kind(off, "PodDisruptionBudget")


def test_more_than_one_replica_needs_peering(helm: Path) -> None:
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    off = {"enabled": False, "lifetimeSeconds": 30}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(schema).validate({**values, "replicaCount": 2, "peering": off})
    jsonschema.Draft7Validator(schema).validate(
        {**values, "replicaCount": 2, "peering": {"enabled": True, "lifetimeSeconds": 30}}
    )
    proc = helm_template_text(helm, {"replicaCount": 2, "peering": {"enabled": False}}, check=False)
    assert proc.returncode != 0 and "peering/enabled" in proc.stderr, proc.stderr


def test_chart_ships_the_kopf_peering_crds() -> None:
    docs = list(yaml.safe_load_all((CHART_DIR / "crds" / "kopf-peering.yaml").read_text()))
    by_name = {d["metadata"]["name"]: d for d in docs if d}
    assert set(by_name) == {"kopfpeerings.kopf.dev", "clusterkopfpeerings.kopf.dev"}
    assert by_name["kopfpeerings.kopf.dev"]["spec"]["scope"] == "Namespaced"
    assert by_name["clusterkopfpeerings.kopf.dev"]["spec"]["scope"] == "Cluster"
    for crd in by_name.values():
        (version,) = crd["spec"]["versions"]
        # Kopf patches status through the main resource: no status subresource.
        assert "subresources" not in version and version["name"] == "v1"
