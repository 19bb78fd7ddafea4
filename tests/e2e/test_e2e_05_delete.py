"""Scenario 5: deleting a WhisperFineTune -> the controller-manager's garbage
collector removes every child the operator made (and KubeRay's cluster and
pods below them); a claim the user brought survives, and so does a generated
claim the spec asked to keep."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import pytest
from e2e_harness.cluster import ControlPlane
from e2e_harness.kube import Kube
from e2e_harness.operator_proc import OperatorProcess
from e2e_harness.resources import dump, finetune

from whisperft import names
from whisperft.operator.render.meta import checkpoint_claim_name, rayjob_name

pytestmark = [pytest.mark.e2e]

CHILD_KINDS = (
    "rayjobs.ray.io,rayclusters.ray.io,configmaps,pvc,serviceaccounts,roles,rolebindings,pods"
)


def _user_claim(name: str) -> str:
    return dump(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": name},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        }
    )


def test_delete_collects_children_but_keeps_the_users_claim(
    cluster: ControlPlane,
    kube: Kube,
    namespace: str,
    operator_factory: Callable[..., OperatorProcess],
) -> None:
    operator_factory("delete", [namespace])
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=_user_claim("my-checkpoints"))
    generated = finetune("generated")
    brought = finetune("brought")
    brought["spec"]["checkpoints"] = {"claimName": "my-checkpoints"}
    kept = finetune("kept")
    kept["spec"]["checkpoints"]["keepClaim"] = True
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=dump(generated, brought, kept))

    for name in ("generated", "brought", "kept"):
        cluster_name = kube.wait(
            f"{name}: RayCluster named",
            partial(kube.rayjob_cluster, namespace, rayjob_name(name, 1)),
            timeout=90,
        )
        kube.wait(
            f"{name}: Ray pods",
            partial(kube.items, "pods", namespace, f"ray.io/cluster={cluster_name}"),
            timeout=60,
        )
    assert kube.get("pvc", namespace, checkpoint_claim_name("generated")) is not None
    assert kube.get("pvc", namespace, checkpoint_claim_name("brought")) is None, (
        "made a claim although one was given"
    )

    # Everything the operator made, found by owner reference (not by label, so an
    # unlabelled child cannot hide), plus everything labelled for these runs.
    uids = {w["metadata"]["uid"] for w in kube.items("wft", namespace)}
    everything = kube.items(CHILD_KINDS, namespace)
    made = {
        f"{o['kind']}/{o['metadata']['name']}"
        for o in everything
        if {r["uid"] for r in o["metadata"].get("ownerReferences") or []} & uids
        or o["metadata"].get("labels", {}).get(names.LABEL_FINETUNE)
        in ("generated", "brought", "kept")
    }
    kept_claim = kube.get("pvc", namespace, checkpoint_claim_name("kept"))
    assert kept_claim is not None and not kept_claim["metadata"].get("ownerReferences")
    made.discard(f"PersistentVolumeClaim/{checkpoint_claim_name('kept')}")  # stays, by request
    kinds = {m.split("/")[0] for m in made}
    assert {"RayJob", "ConfigMap", "PersistentVolumeClaim"} <= kinds, made
    assert "PersistentVolumeClaim/my-checkpoints" not in made
    print("children to be collected:", sorted(made))

    cluster.kubectl(
        "delete", "wft", "generated", "brought", "kept", "-n", namespace, "--wait=false"
    )  # fmt: skip
    kube.wait("both resources gone", lambda: not kube.items("wft", namespace), timeout=60)

    def leftovers() -> list[str]:
        present = {
            f"{o['kind']}/{o['metadata']['name']}" for o in kube.items(CHILD_KINDS, namespace)
        }
        out = sorted(made & present)
        out += [
            f"Pod/{p['metadata']['name']}"
            for p in kube.items("pods", namespace, "ray.io/node-type")
        ]
        out += [
            f"RayCluster/{c['metadata']['name']}"
            for c in kube.items("rayclusters.ray.io", namespace)
        ]
        return out

    kube.wait("garbage collection of every child", lambda: not leftovers(), timeout=120)
    assert kube.get("pvc", namespace, checkpoint_claim_name("generated")) is None
    claim = kube.get("pvc", namespace, "my-checkpoints")
    assert claim is not None and not claim["metadata"].get("deletionTimestamp"), (
        "the user's claim was deleted"
    )
    kept_claim = kube.get("pvc", namespace, checkpoint_claim_name("kept"))
    assert kept_claim is not None and not kept_claim["metadata"].get("deletionTimestamp"), (
        "keepClaim: true, but the generated claim was deleted"
    )
