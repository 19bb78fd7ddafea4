"""Scenario 5: deleting a WhisperFineTune -> the controller-manager's garbage
collector removes every child the operator made (and KubeRay's cluster and
pods below them); a claim the user brought survives, and so does a generated
claim the spec asked to keep."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

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


def test_a_succeeded_runs_claim_outlives_its_fine_tune(
    cluster: ControlPlane,
    kube: Kube,
    namespace: str,
    operator_factory: Callable[..., OperatorProcess],
) -> None:
    """The claim holds the only copy of a finished model (no output.location,
    keepClaim unset): once the run succeeds the operator drops its owner reference,
    so deleting the fine-tune (a GitOps prune) leaves the claim and the model."""
    operator_factory("keep-on-success", [namespace])
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=dump(finetune("done")))
    job = kube.wait("RayJob", lambda: kube.rayjob(namespace, rayjob_name("done", 1)), timeout=90)
    claim_name = checkpoint_claim_name("done")

    def status() -> dict[str, Any]:
        return dict((kube.wft(namespace, "done") or {}).get("status") or {})

    uid = (kube.wft(namespace, "done") or {})["metadata"]["uid"]
    claim = kube.get("pvc", namespace, claim_name)
    assert claim is not None
    assert [r["uid"] for r in claim["metadata"]["ownerReferences"]] == [uid]
    kube.set_rayjob_status(
        namespace, job["metadata"]["name"], {"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"}
    )  # fmt: skip
    kube.wait("Succeeded", lambda: status().get("phase") == "Succeeded", timeout=90)
    message = status()["message"]
    assert f"claim {claim_name} is kept when this WhisperFineTune is deleted" in message
    released = kube.get("pvc", namespace, claim_name)
    assert released is not None and not released["metadata"].get("ownerReferences")
    assert names.ANNOTATION_KEPT in released["metadata"]["annotations"]

    cluster.kubectl("delete", "wft", "done", "-n", namespace, "--wait=false")
    # The garbage collector has acted once the RayJob (still owned) is gone.
    kube.wait(
        "RayJob collected",
        lambda: kube.rayjob(namespace, rayjob_name("done", 1)) is None and not kube.items("wft", namespace),
        timeout=120,
    )  # fmt: skip
    survivor = kube.get("pvc", namespace, claim_name)
    assert survivor is not None and not survivor["metadata"].get("deletionTimestamp"), (
        "the claim holding the succeeded run's model was deleted with the fine-tune"
    )
