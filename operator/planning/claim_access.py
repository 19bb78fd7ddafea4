"""The checkpoint claim's access mode, and whether the run's Ray pods must share a node.

The Ray head (which prepares features and writes results) and every worker mount
the claim. A ReadWriteOnce volume attaches to one node, so a run on one is placed
on one node or its second pod never starts: the first multi-worker fine-tune on a
cluster whose default StorageClass offers no ReadWriteMany (GKE's and EKS's) would
hang. So the mode is chosen from what the platform says its classes offer, and a
run that cannot fit on one node of its pool is refused before anything is created.
With a bucket output (checkpoints and model in the bucket) a single-node claim is
the head's scratch only, and the workers may spread over nodes.
"""

from __future__ import annotations

from dataclasses import dataclass

from whisperft.operator.api.spec import WhisperFineTuneSpec
from whisperft.operator.settings import NodePool, Settings
from whisperft.trainer.storage.uri import is_uri

RWX, RWO, RWOP = "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"


@dataclass(frozen=True)
class ClaimAccess:
    mode: str | None  # None: a claim the user brought, of a mode they did not state
    one_node: bool  # every pod that mounts the claim goes on one node
    why: str
    # False: only the head mounts the claim (its scratch); checkpoints and the model go
    # to the output bucket and each worker pod prepares its inputs on node-local scratch.
    workers_share: bool = True


def claim_access(spec: WhisperFineTuneSpec, settings: Settings) -> ClaimAccess:
    shared = _shared_claim_access(spec, settings)
    if shared.one_node and is_uri(spec.output.location):
        return ClaimAccess(
            shared.mode,
            False,
            f"{shared.why}; the output is a bucket, so only the head mounts the claim "
            "(scratch) and the workers use node-local scratch",
            workers_share=False,
        )
    return shared


def _shared_claim_access(spec: WhisperFineTuneSpec, settings: Settings) -> ClaimAccess:
    ck = spec.checkpoints
    if ck.access_mode is not None:
        return ClaimAccess(ck.access_mode, ck.access_mode != RWX, "as spec.checkpoints.accessMode")
    if ck.claim_name:
        return ClaimAccess(None, False, f"claim {ck.claim_name} is used as it is")
    cls = ck.storage_class or ""
    shown = f"StorageClass {cls!r}" if cls else "the cluster's default StorageClass"
    if cls in settings.read_write_many_storage_classes:
        return ClaimAccess(RWX, False, f"{shown} offers ReadWriteMany (operator settings)")
    return ClaimAccess(
        RWO,
        True,
        f"{shown} is not listed in the operator settings' readWriteManyStorageClasses",
    )


def access_mode_problem(spec: WhisperFineTuneSpec) -> str | None:
    if spec.checkpoints.access_mode == RWOP:
        return (
            "spec.checkpoints.accessMode ReadWriteOncePod lets one pod mount the claim, but the "
            "Ray head and every worker mount it; use ReadWriteOnce (one node) or ReadWriteMany"
        )
    return None


def claim_access_problem(
    spec: WhisperFineTuneSpec, access: ClaimAccess, pool: NodePool | None
) -> str | None:
    """Why the run's Ray pods cannot share the node a ReadWriteOnce claim needs, or None."""
    if not access.one_node or pool is None:
        return None  # CPU workers: one node of any size is the scheduler's to find
    r = spec.resources
    need = r.workers * r.effective_gpus_per_worker
    per_node = pool.gpus_per_node or 1
    if need <= per_node:
        return None
    return (
        f"the checkpoint claim is ReadWriteOnce ({access.why}), so the Ray head and all "
        f"{r.workers} workers must share one node, but they need {need} GPUs and a "
        f"{r.accelerator} node has {per_node} (operator settings nodePools.{r.accelerator}"
        ".gpusPerNode); use a StorageClass that offers ReadWriteMany (spec.checkpoints."
        "storageClass, one the platform lists in readWriteManyStorageClasses), or fewer workers"
    )
