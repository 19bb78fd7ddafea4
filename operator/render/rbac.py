"""ServiceAccount for the training pods, allowed exactly one thing: patching
this WhisperFineTune's status (progress and last checkpoint)."""

from __future__ import annotations

from typing import Any

from whisperft import names
from whisperft.operator.render.meta import Meta, object_meta, trainer_account_name


def render_trainer_rbac(
    meta: Meta, annotations: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """`annotations` (settings.trainerServiceAccount) go on the ServiceAccount only, for
    workload identity (iam.gke.io/gcp-service-account, eks.amazonaws.com/role-arn)."""
    name = trainer_account_name(meta.name)
    account_meta = object_meta(meta, name, "trainer")
    if annotations:
        account_meta["annotations"] = dict(annotations)
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": account_meta,
            "automountServiceAccountToken": False,  # mounted only into the Ray pods that need it
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": object_meta(meta, name, "trainer"),
            "rules": [
                {
                    "apiGroups": [names.GROUP],
                    "resources": [f"{names.PLURAL}/status"],
                    "resourceNames": [meta.name],
                    "verbs": ["patch"],  # StatusSink only merge-patches
                }
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": object_meta(meta, name, "trainer"),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": meta.namespace}],
        },
    ]
