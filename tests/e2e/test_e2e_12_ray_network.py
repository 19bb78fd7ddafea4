"""Scenario 12: what fences a job's Ray cluster, checked against what the real
KubeRay makes of the rendered RayJob.

* Ray token auth: KubeRay creates the cluster's token Secret and sets
  RAY_AUTH_MODE=token and RAY_AUTH_TOKEN (from that Secret) on every container
  of the head and worker pods and on the submitter; those exact variables, as
  the pod resolves them, put the pinned Ray in token mode with that token.
* The NetworkPolicies: their pod selectors, evaluated by the API server
  itself (`-l`), pick exactly the head and exactly the workers KubeRay made;
  their `from` selectors admit the job's own pods (and for the workers, only
  its Ray nodes), not another fine-tune's; the namespace selector picks the
  KubeRay namespace the operator was configured with; they go with the
  resource (owner references, garbage collector).
* Tokens: the head pod gets no ServiceAccount token volume, the workers do.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
from e2e_harness.cluster import ControlPlane
from e2e_harness.kube import Kube, owned_by
from e2e_harness.operator_proc import OperatorProcess
from e2e_harness.resources import dump, finetune

from whisperft.operator.render.meta import rayjob_name
from whisperft.operator.render.network import (
    DASHBOARD_PORT,
    head_policy_name,
    workers_policy_name,
)

pytestmark = [pytest.mark.e2e]

AUTH_ENV = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")


def selector_string(sel: dict[str, Any]) -> str:
    """A LabelSelector as the `-l` string, so the API server evaluates it."""
    parts = [f"{k}={v}" for k, v in sel.get("matchLabels", {}).items()]
    for e in sel.get("matchExpressions", []):
        op, key = e["operator"], e["key"]
        if op in ("In", "NotIn"):
            parts.append(f"{key} {op.lower()} ({','.join(e['values'])})")
        elif op == "Exists":
            parts.append(key)
        else:
            parts.append(f"!{key}")
    assert parts, "an empty selector selects everything"
    return ",".join(parts)


def _names(items: list[dict[str, Any]]) -> set[str]:
    return {i["metadata"]["name"] for i in items}


def _ray_pods(kube: Kube, ns: str, cluster_name: str, node_type: str) -> list[dict[str, Any]]:
    return kube.items("pods", ns, f"ray.io/cluster={cluster_name},ray.io/node-type={node_type}")


def _containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return list(pod["spec"]["containers"]) + list(pod["spec"].get("initContainers") or [])


def _token_volumes(pod: dict[str, Any]) -> list[str]:
    """The ServiceAccount admission plugin's token volume, there when automounted."""
    return [
        v["name"]
        for v in pod["spec"].get("volumes") or []
        if any("serviceAccountToken" in s for s in (v.get("projected") or {}).get("sources", []))
    ]


def _ray_auth_state(env: dict[str, str]) -> dict[str, Any]:
    """What the installed (pinned) Ray makes of `env`: its auth mode and token."""
    code = (
        "import json\n"
        "from ray._raylet import AuthenticationMode, AuthenticationTokenLoader, Config,"
        " get_authentication_mode\n"
        "Config.initialize('')\n"
        "loader = AuthenticationTokenLoader.instance()\n"
        "print(json.dumps({'token_mode': get_authentication_mode() == AuthenticationMode.TOKEN,"
        " 'token': loader.get_raw_token() if loader.has_token() else None}))\n"
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**base, "HOME": "/nonexistent", **env},  # no ~/.ray/auth_token to fall back on
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def test_kuberay_enforces_ray_token_auth_and_the_policies_fit_its_pods(
    cluster: ControlPlane,
    kube: Kube,
    namespace: str,
    operator_factory: Callable[..., OperatorProcess],
) -> None:
    kuberay_ns = kube.namespace(f"{namespace[:50]}-kuberay")
    try:
        _scenario(cluster, kube, namespace, kuberay_ns, operator_factory)
    finally:
        kube.delete_namespace(kuberay_ns)


def _scenario(
    cluster: ControlPlane,
    kube: Kube,
    namespace: str,
    kuberay_ns: str,
    operator_factory: Callable[..., OperatorProcess],
) -> None:
    operator_factory("fence", [namespace], extra_env={"WHISPERFT_KUBERAY_NAMESPACE": kuberay_ns})
    name, other = "fenced", "neighbour"
    cluster.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=dump(
            finetune(name, resources={"workers": 2}), finetune(other, resources={"workers": 1})
        ),
    )
    wft = kube.wait("the resource", lambda: kube.wft(namespace, name))
    job = rayjob_name(name, 1)
    rayjob = kube.wait(f"RayJob {job}", lambda: kube.rayjob(namespace, job), timeout=90)
    assert rayjob["spec"]["rayClusterSpec"]["authOptions"] == {"mode": "token"}
    policies = {}
    for pname in (head_policy_name(name, 1), workers_policy_name(name, 1)):
        p = kube.get("networkpolicy", namespace, pname)
        assert p is not None, f"NetworkPolicy {pname} was not created with the RayJob"
        assert owned_by(p, wft), f"NetworkPolicy {pname} lacks the owner reference"
        policies[pname] = p
    head_p, workers_p = policies[head_policy_name(name, 1)], policies[workers_policy_name(name, 1)]

    # What KubeRay made: the RayCluster, its pods, the submitter Job's pod.
    rc = kube.wait("the RayCluster name", lambda: kube.rayjob_cluster(namespace, job), timeout=90)
    heads = kube.wait("the head pod", lambda: _ray_pods(kube, namespace, rc, "head"), timeout=90)
    workers = kube.wait(
        "both worker pods",
        lambda: w if len(w := _ray_pods(kube, namespace, rc, "worker")) == 2 else None,
        timeout=90,
    )
    submitters = kube.wait(
        "the submitter pod",
        lambda: kube.items("pods", namespace, f"batch.kubernetes.io/job-name={job}"),
        timeout=120,
    )
    other_rc = kube.wait(
        "the neighbour's RayCluster",
        lambda: kube.rayjob_cluster(namespace, rayjob_name(other, 1)),
        timeout=90,
    )
    kube.wait(
        "the neighbour's pods",
        lambda: len(kube.items("pods", namespace, f"ray.io/cluster={other_rc}")) >= 2,
        timeout=90,
    )
    all_pods = kube.items("pods", namespace)
    ours = _names(heads) | _names(workers) | _names(submitters)
    assert len(ours) == 4 and len(all_pods) > len(ours), _names(all_pods)

    # -- Ray token auth ---------------------------------------------------
    secret = kube.wait("KubeRay's auth Secret", lambda: kube.get("secret", namespace, rc))
    assert secret["metadata"]["labels"]["ray.io/cluster"] == rc
    (owner,) = secret["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"]) == ("RayCluster", rc)
    token = base64.b64decode(secret["data"]["auth_token"]).decode()
    assert len(token) >= 32
    secrets = {rc: {"auth_token": token}}

    def resolved(e: dict[str, Any]) -> str:
        if "value" in e:
            return str(e["value"])
        ref = e["valueFrom"]["secretKeyRef"]
        return secrets[ref["name"]][ref["key"]]

    checked = 0
    for pod in heads + workers + submitters:
        for c in _containers(pod):
            env = {e["name"]: e for e in c.get("env") or []}
            where = f"{pod['metadata']['name']}/{c['name']}"
            assert set(AUTH_ENV) <= set(env), f"{where} lacks {AUTH_ENV}: {sorted(env)}"
            assert env["RAY_AUTH_MODE"].get("value") == "token", where
            ref = env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]
            assert (ref["name"], ref["key"]) == (rc, "auth_token"), where
            # The names KubeRay sets are the ones the pinned Ray reads.
            state = _ray_auth_state({k: resolved(env[k]) for k in AUTH_ENV})
            assert state == {"token_mode": True, "token": token}, where
            checked += 1
    assert checked >= 4
    assert _ray_auth_state({}) == {"token_mode": False, "token": None}  # the control

    # -- which pod holds which token --------------------------------------
    (head,) = heads
    assert head["spec"]["automountServiceAccountToken"] is False
    assert _token_volumes(head) == [], "the head must not mount the trainer's API token"
    for w in workers:
        assert w["spec"]["automountServiceAccountToken"] is True
        assert _token_volumes(w), "rank 0 runs on a worker and needs the trainer's token"
    for s in submitters:
        assert _token_volumes(s) == []

    # -- the NetworkPolicies against the real pods --------------------------
    def selected(sel: dict[str, Any]) -> set[str]:
        return _names(kube.items("pods", namespace, selector_string(sel)))

    assert selected(head_p["spec"]["podSelector"]) == _names(heads)
    assert selected(workers_p["spec"]["podSelector"]) == _names(workers)
    pod_peers = [
        f["podSelector"] for r in head_p["spec"]["ingress"] for f in r["from"] if "podSelector" in f
    ]
    assert [selected(s) for s in pod_peers] == [ours]  # the job's own pods, the neighbour's not
    (workers_rule,) = workers_p["spec"]["ingress"]
    assert [selected(f["podSelector"]) for f in workers_rule["from"]] == [
        _names(heads) | _names(workers)
    ]
    ns_rules = [r for r in head_p["spec"]["ingress"] if "namespaceSelector" in r["from"][0]]
    assert len(ns_rules) == 1 and ns_rules[0]["ports"] == [
        {"protocol": "TCP", "port": DASHBOARD_PORT}
    ]
    ns_sel = selector_string(ns_rules[0]["from"][0]["namespaceSelector"])
    found = json.loads(cluster.kubectl("get", "namespaces", "-l", ns_sel, "-o", "json").stdout)
    assert _names(found["items"]) == {kuberay_ns}
    # The port the KubeRay rule opens is where KubeRay's head Service sends the
    # dashboard (the URL its job-status client calls).
    (svc,) = kube.items("services", namespace, f"ray.io/cluster={rc},ray.io/node-type=head")
    ports = {p["name"]: p for p in svc["spec"]["ports"]}
    assert ports["dashboard"]["targetPort"] == DASHBOARD_PORT, ports

    # -- gone with the resource ---------------------------------------------
    cluster.kubectl("delete", "wft", name, "-n", namespace, "--wait=false")
    kube.wait(
        "the NetworkPolicies garbage-collected",
        lambda: all(kube.get("networkpolicy", namespace, n) is None for n in policies),
        timeout=90,
    )
