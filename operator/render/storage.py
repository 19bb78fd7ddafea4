"""The checkpoint PersistentVolumeClaim (only when the user brings none)."""

from __future__ import annotations

from typing import Any

from whisperft.operator.api.spec import WhisperFineTuneSpec
from whisperft.operator.render.meta import Meta, checkpoint_claim_name, object_meta


def claim_name(spec: WhisperFineTuneSpec, meta: Meta) -> str:
    return spec.checkpoints.claim_name or checkpoint_claim_name(meta.name)


def render_checkpoint_claim(
    spec: WhisperFineTuneSpec, meta: Meta, access_mode: str
) -> dict[str, Any] | None:
    """None when the user named a claim: theirs is used as-is and never owned.
    ``access_mode``: the planner's (planning.claim_access)."""
    ck = spec.checkpoints
    if ck.claim_name:
        return None
    assert ck.size is not None  # guaranteed by the CRD rule / model validator
    pvc_spec: dict[str, Any] = {
        "accessModes": [access_mode],
        "resources": {"requests": {"storage": ck.size}},
    }
    if ck.storage_class:
        pvc_spec["storageClassName"] = ck.storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        # keepClaim: no owner reference, so garbage collection leaves it (unset: the
        # operator drops the reference once the run succeeds, see decide.ReleaseClaim).
        "metadata": object_meta(
            meta, checkpoint_claim_name(meta.name), "checkpoints", owned=ck.keep_claim is not True
        ),
        "spec": pvc_spec,
    }
