"""Names, labels and owner references of the children, derived deterministically
from the WhisperFineTune's name and attempt so a restarted operator finds, not
duplicates, what it made before."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from whisperft import names

KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"


@dataclass(frozen=True)
class Meta:
    """The parts of the resource's metadata the renderers need."""

    name: str
    namespace: str
    uid: str | None = None  # None when rendering a file offline

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> Meta:
        md = body.get("metadata", {})
        return cls(name=md["name"], namespace=md.get("namespace") or "default", uid=md.get("uid"))


def rayjob_name(name: str, attempt: int) -> str:
    return f"{name}-{attempt}"


def config_map_name(name: str, attempt: int) -> str:
    return f"{name}-{attempt}-config"


def checkpoint_claim_name(name: str) -> str:
    return f"{name}-checkpoints"


def trainer_account_name(name: str) -> str:
    return f"{name}-trainer"


def checkpoint_path(name: str) -> str:
    """Ray Train's run directory on the claim: the same for every attempt, so each resumes."""
    return f"{names.CHECKPOINT_MOUNT_DIR}/{name}"


def output_dir(name: str) -> str:
    return f"{names.CHECKPOINT_MOUNT_DIR}/{name}/output"


def labels(meta: Meta, component: str, attempt: int | None = None) -> dict[str, str]:
    out = {
        names.LABEL_NAME: names.APP_NAME,
        names.LABEL_INSTANCE: meta.name,
        names.LABEL_COMPONENT: component,
        names.LABEL_PART_OF: names.APP_NAME,
        names.LABEL_MANAGED_BY: names.MANAGED_BY,
        names.LABEL_FINETUNE: meta.name,
    }
    if attempt is not None:
        out[names.LABEL_ATTEMPT] = str(attempt)
    return out


def owner_references(meta: Meta) -> list[dict[str, Any]]:
    if meta.uid is None:
        return []
    return [
        {
            "apiVersion": names.API_VERSION,
            "kind": names.KIND,
            "name": meta.name,
            "uid": meta.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


def object_meta(
    meta: Meta, name: str, component: str, *, attempt: int | None = None, owned: bool = True
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": name,
        "namespace": meta.namespace,
        "labels": labels(meta, component, attempt),
    }
    refs = owner_references(meta) if owned else []
    if refs:
        out["ownerReferences"] = refs
    return out
