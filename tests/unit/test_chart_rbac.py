"""The chart's RBAC: exactly the intended rules, scoped as the watch scope says."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from toolbin import helm_template, require_tool

pytestmark = pytest.mark.unit

Rule = tuple[str, str, tuple[str, ...], tuple[str, ...]]  # group, resource, verbs, names

# The operator's whole need. A new API call in operator/ needs a line here and
# in charts/whisperft/templates/_rbac.tpl (the e2e suite runs the operator with
# exactly these rights).
OPERATOR_RULES: set[Rule] = {
    ("whisperft.io", "whisperfinetunes", ("get", "list", "patch", "watch"), ()),
    ("whisperft.io", "whisperfinetunes/status", ("patch",), ()),
    ("whisperft.io", "whisperfinetunes/finalizers", ("update",), ()),
    ("ray.io", "rayjobs", ("create", "delete", "get", "list", "patch", "watch"), ()),
    ("", "configmaps", ("create", "get"), ()),
    # patch: drop the owner reference of a claim holding a succeeded run's only model;
    # delete: what the OwnerReferencesPermissionEnforcement plugin demands for that patch
    ("", "persistentvolumeclaims", ("create", "delete", "get", "patch"), ()),
    ("", "serviceaccounts", ("create", "get"), ()),
    ("rbac.authorization.k8s.io", "roles", ("create", "get"), ()),
    ("rbac.authorization.k8s.io", "rolebindings", ("create", "get"), ()),
    ("networking.k8s.io", "networkpolicies", ("create", "get"), ()),
    ("", "events", ("create",), ()),
    # read-only, to say why the Ray pods do not start (operator/startup.py)
    ("", "pods", ("list", "watch"), ()),
}
# Peering (the chart's default: two replicas) keeps alive in a KopfPeering of each
# served namespace, or one ClusterKopfPeering with scope "all".
PEERING_RULE: Rule = ("kopf.dev", "kopfpeerings", ("list", "patch", "watch"), ())
CLUSTER_PEERING_RULE: Rule = ("kopf.dev", "clusterkopfpeerings", ("list", "patch", "watch"), ())
# What the operator itself grants each fine-tune's training pods (it can only
# create a Role whose rights it holds): patch on that resource's status.
TRAINER_RULES: set[Rule] = {("whisperft.io", "whisperfinetunes/status", ("patch",), ())}
RBAC_KINDS = {"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}


@pytest.fixture(scope="module")
def helm() -> Path:
    return require_tool("helm")


def flatten(rules: list[dict[str, Any]]) -> set[Rule]:
    out: set[Rule] = set()
    for rule in rules:
        assert "nonResourceURLs" not in rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                key = (
                    group,
                    resource,
                    tuple(sorted(rule["verbs"])),
                    tuple(rule.get("resourceNames", ())),
                )
                assert key not in out, f"duplicate rule {key}"
                out.add(key)
    return out


def rbac(docs: list[dict[str, Any]]) -> dict[tuple[str, str | None, str], dict[str, Any]]:
    return {
        (d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]): d
        for d in docs
        if d["kind"] in RBAC_KINDS
    }


def test_rule_sets_are_exact_and_free_of_wildcards(helm: Path) -> None:
    for scope, values in (("release", {}), ("all", {"watch": {"scope": "all"}})):
        for doc in rbac(helm_template(helm, values)).values():
            for rule in doc.get("rules", []):
                text = yaml.safe_dump(rule)
                assert "'*'" not in text, f"{scope}: wildcard in {doc['metadata']['name']}: {rule}"
                assert not {"escalate", "impersonate"} & set(rule["verbs"])
                assert "secrets" not in rule["resources"], "the operator never reads Secrets"
                if "pods" in rule["resources"]:  # KubeRay, not us, manages pods: we only read
                    assert set(rule["verbs"]) <= {"list", "watch"}, rule


def test_release_scope_is_namespaced_only(helm: Path) -> None:
    objects = rbac(helm_template(helm, namespace="ml"))
    assert set(objects) == {
        ("Role", "ml", "wft-whisperft-operator"),
        ("RoleBinding", "ml", "wft-whisperft-operator"),
    }
    rules = flatten(objects["Role", "ml", "wft-whisperft-operator"]["rules"])
    assert rules == OPERATOR_RULES | {PEERING_RULE}


def test_namespace_list_gets_a_role_pair_in_each_namespace(helm: Path) -> None:
    values = {"watch": {"scope": "namespaces", "namespaces": ["team-a", "team-b"]}}
    docs = helm_template(helm, values, namespace="whisperft-system")
    objects = rbac(docs)
    assert not any(kind.startswith("Cluster") for kind, _, _ in objects)
    for ns in ("team-a", "team-b"):
        operator_binding = objects["RoleBinding", ns, "wft-whisperft-operator"]
        assert operator_binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": "wft-whisperft-operator",
        }
        # The operator runs in the release namespace and is granted rights here.
        assert operator_binding["subjects"] == [
            {
                "kind": "ServiceAccount",
                "name": "wft-whisperft-operator",
                "namespace": "whisperft-system",
            }
        ]
        rules = flatten(objects["Role", ns, "wft-whisperft-operator"]["rules"])
        assert rules == OPERATOR_RULES | {PEERING_RULE}
    # Nothing is granted in the release namespace itself: it is not watched.
    assert not [key for key in objects if key[1] == "whisperft-system"]
    container = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"][
        "containers"
    ][0]
    assert [a for a in container["args"] if "namespace" in a] == [
        "--namespace=team-a",
        "--namespace=team-b",
    ]


def test_all_scope_is_the_only_one_with_cluster_roles(helm: Path) -> None:
    docs = helm_template(helm, {"watch": {"scope": "all"}}, namespace="whisperft-system")
    objects = rbac(docs)
    assert set(objects) == {
        ("ClusterRole", None, "wft-whisperft-operator"),
        ("ClusterRoleBinding", None, "wft-whisperft-operator"),
    }
    rules = flatten(objects["ClusterRole", None, "wft-whisperft-operator"]["rules"])
    assert rules == OPERATOR_RULES | {CLUSTER_PEERING_RULE}
    assert objects["ClusterRoleBinding", None, "wft-whisperft-operator"]["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": "wft-whisperft-operator",
            "namespace": "whisperft-system",
        }
    ]
    settings = yaml.safe_load(
        next(d for d in docs if d["kind"] == "ConfigMap")["data"]["settings.yaml"]
    )
    assert settings["namespaces"] == []
    container = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"][
        "containers"
    ][0]
    assert "--all-namespaces" in container["args"]
    assert not [a for a in container["args"] if a.startswith("--namespace")]


def test_operator_holds_every_right_it_grants_training_pods() -> None:
    # RBAC refuses to let anyone create a Role with rights they lack (no
    # `escalate` verb here), so the trainer Role the operator renders must be
    # covered by the operator's own rules.
    from whisperft.operator.render.meta import Meta
    from whisperft.operator.render.rbac import render_trainer_rbac

    (role,) = [d for d in render_trainer_rbac(Meta("ft", "ml", "uid")) if d["kind"] == "Role"]
    for group, resource, verbs, _names in flatten(role["rules"]):
        held = {v for g, r, vs, _ in OPERATOR_RULES if (g, r) == (group, resource) for v in vs}
        assert set(verbs) <= held, f"operator lacks {set(verbs) - held} on {group}/{resource}"
    assert {(g, r, v) for g, r, v, _ in flatten(role["rules"])} == {
        (g, r, v) for g, r, v, _ in TRAINER_RULES
    }


def test_rbac_can_be_left_to_the_platform_team(helm: Path) -> None:
    docs = helm_template(
        helm, {"rbac": {"create": False}, "serviceAccount": {"create": False, "name": "ops-sa"}}
    )
    assert not rbac(docs)
    assert not [
        d for d in docs if d["kind"] == "ServiceAccount" and d["metadata"]["name"] == "ops-sa"
    ]
    pod = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "ops-sa"


def test_operator_may_create_every_kind_of_child_it_renders() -> None:
    """A new kind of child in operator/render needs a rule here, or it 403s."""
    from whisperft.operator.api.resource import load_resources
    from whisperft.operator.render.bundle import render_attempt
    from whisperft.operator.render.meta import Meta
    from whisperft.operator.settings import Settings

    plural = {
        "ConfigMap": ("", "configmaps"),
        "PersistentVolumeClaim": ("", "persistentvolumeclaims"),
        "ServiceAccount": ("", "serviceaccounts"),
        "Role": ("rbac.authorization.k8s.io", "roles"),
        "RoleBinding": ("rbac.authorization.k8s.io", "rolebindings"),
        "NetworkPolicy": ("networking.k8s.io", "networkpolicies"),
        "RayJob": ("ray.io", "rayjobs"),
    }
    example = (
        Path(__file__).resolve().parents[2] / "manifests" / "examples" / "minimal.yaml"
    ).read_text()
    (res,) = load_resources(example, source="minimal.yaml")
    out = render_attempt(res.spec, Meta(res.metadata.name, "ml", "uid-1"), Settings(), 1)
    assert out.problem is None
    kinds = {child["kind"] for child in out.children}
    assert kinds >= {"ConfigMap", "RayJob", "PersistentVolumeClaim"}
    for kind in kinds:
        assert kind in plural, f"operator renders {kind}: add it to the chart's RBAC and this map"
        group, resource = plural[kind]
        held = {v for g, r, vs, _ in OPERATOR_RULES if (g, r) == (group, resource) for v in vs}
        assert {"create", "get"} <= held, f"operator cannot create-or-get {kind}"
