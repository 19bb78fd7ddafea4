"""The NetworkPolicies of one attempt: its Ray pods accept traffic only from the
same job, and the head also from the KubeRay operator.

Ray's head runs the GCS, the dashboard (job submission: arbitrary code) and the
client server; a Ray worker runs whatever the head schedules on it. So:

* the head (`<name>-<attempt>-ray-head`) accepts any port from the attempt's
  own pods (its workers, its submitter, itself) and the dashboard port from the
  KubeRay operator's namespace (settings.kuberayNamespace), where KubeRay polls
  the job's status;
* the workers (`<name>-<attempt>-ray-workers`) accept any port from the
  attempt's Ray nodes (head and workers), nothing else.

The pods are told apart by labels: our `whisperft.io/finetune` and
`whisperft.io/attempt` (set on every pod template; KubeRay keeps them) and
KubeRay's own `ray.io/node-type` (head or worker; KubeRay sets it and does not
let a template override it). The RayCluster's name (`ray.io/cluster`) is
KubeRay's, generated after the RayJob exists, so it cannot be rendered here.
Egress is left open: workers reach the API server (rank 0 patches status) and
the head the model hub. NetworkPolicies add up, so a platform that also
scrapes the Ray metrics port adds its own policy for that.
"""

from __future__ import annotations

from typing import Any

from whisperft import names
from whisperft.operator.render.meta import Meta, object_meta, rayjob_name
from whisperft.operator.settings import Settings

NETWORKING_API_VERSION = "networking.k8s.io/v1"
RAY_NODE_TYPE_LABEL = "ray.io/node-type"  # KubeRay's, not overridable by a template
# Set by the API server on every namespace (Kubernetes >= 1.22).
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
# The head's dashboard (KubeRay's default and the head service's "dashboard" port).
DASHBOARD_PORT = 8265


def head_policy_name(name: str, attempt: int) -> str:
    return f"{rayjob_name(name, attempt)}-ray-head"


def workers_policy_name(name: str, attempt: int) -> str:
    return f"{rayjob_name(name, attempt)}-ray-workers"


def attempt_pods(meta: Meta, attempt: int) -> dict[str, str]:
    """Labels every pod of the attempt carries: head, workers and submitter."""
    return {names.LABEL_FINETUNE: meta.name, names.LABEL_ATTEMPT: str(attempt)}


def _policy(
    meta: Meta, name: str, attempt: int, pods: dict[str, Any], ingress: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "apiVersion": NETWORKING_API_VERSION,
        "kind": "NetworkPolicy",
        "metadata": object_meta(meta, name, "network-policy", attempt=attempt),
        "spec": {"podSelector": pods, "policyTypes": ["Ingress"], "ingress": ingress},
    }


def render_network_policies(meta: Meta, settings: Settings, attempt: int) -> list[dict[str, Any]]:
    job = attempt_pods(meta, attempt)
    head = {"matchLabels": {**job, RAY_NODE_TYPE_LABEL: "head"}}
    workers = {"matchLabels": {**job, RAY_NODE_TYPE_LABEL: "worker"}}
    ray_nodes = {
        "matchLabels": dict(job),
        "matchExpressions": [
            {"key": RAY_NODE_TYPE_LABEL, "operator": "In", "values": ["head", "worker"]}
        ],
    }
    kuberay = {"matchLabels": {NAMESPACE_NAME_LABEL: settings.kuberay_namespace}}
    return [
        _policy(
            meta,
            head_policy_name(meta.name, attempt),
            attempt,
            head,
            [
                {"from": [{"podSelector": {"matchLabels": dict(job)}}]},
                {
                    "from": [{"namespaceSelector": kuberay}],
                    "ports": [{"protocol": "TCP", "port": DASHBOARD_PORT}],
                },
            ],
        ),
        _policy(
            meta,
            workers_policy_name(meta.name, attempt),
            attempt,
            workers,
            [{"from": [{"podSelector": ray_nodes}]}],
        ),
    ]
