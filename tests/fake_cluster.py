"""An in-memory stand-in for the few API calls the reconcile makes (operator.act.ClusterApi),
with resourceVersions, owner references, merge-patch semantics and injected faults.

Only the reconcile's unit tests use it; the e2e suite runs the real API server.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from whisperft import names
from whisperft.operator.act import Conflict, CreateError
from whisperft.operator.kube import ownership_problem
from whisperft.operator.views import View, controller_uid

Key = tuple[str, str, str]  # kind, namespace, name


def merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7386: objects merge, None deletes, everything else (lists too) replaces."""
    out = copy.deepcopy(target)
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge_patch(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


@dataclass
class Fault:
    """Fail the next `times` calls of `method` whose arguments satisfy `when`."""

    method: str
    error: Exception
    times: int = 1
    when: Callable[..., bool] = lambda *a, **k: True


@dataclass
class FakeCluster:
    objects: dict[Key, dict[str, Any]] = field(default_factory=dict)
    events: list[tuple[str, str, str]] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    calls: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    _rv: itertools.count = field(default_factory=lambda: itertools.count(1))  # type: ignore[type-arg]
    _uid: itertools.count = field(default_factory=lambda: itertools.count(1))  # type: ignore[type-arg]

    # -- fault injection ---------------------------------------------------------
    def _check(self, method: str, *args: Any) -> None:
        self.calls.append((method, args))
        for f in self.faults:
            if f.method == method and f.times > 0 and f.when(*args):
                f.times -= 1
                raise f.error

    def _stamp(self, body: dict[str, Any]) -> dict[str, Any]:
        body.setdefault("metadata", {})["resourceVersion"] = str(next(self._rv))
        return body

    # -- what the tests do (the user, KubeRay, the trainer) -------------------------
    def apply_finetune(self, body: dict[str, Any]) -> dict[str, Any]:
        body = copy.deepcopy(body)
        md = body["metadata"]
        md.setdefault("namespace", "ml")
        md["uid"] = f"wft-{next(self._uid)}"
        md["generation"] = 1
        md.setdefault("creationTimestamp", f"2026-12-02T08:{len(self.objects):02d}:00Z")
        self.objects[("WhisperFineTune", md["namespace"], md["name"])] = self._stamp(body)
        return copy.deepcopy(body)

    def finetune(self, ns: str, name: str) -> dict[str, Any]:
        return copy.deepcopy(self.objects[("WhisperFineTune", ns, name)])

    def edit_spec(
        self, ns: str, name: str, patch: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """A user's spec edit: returns (old spec, new spec) as Kopf hands them over."""
        key = ("WhisperFineTune", ns, name)
        obj = self.objects[key]
        old = copy.deepcopy(obj["spec"])
        obj["spec"] = merge_patch(obj["spec"], patch)
        obj["metadata"]["generation"] += 1
        self._stamp(obj)
        return old, copy.deepcopy(obj["spec"])

    def trainer_patch(self, ns: str, name: str, status: dict[str, Any]) -> None:
        obj = self.objects[("WhisperFineTune", ns, name)]
        obj["status"] = merge_patch(obj.get("status") or {}, status)
        self._stamp(obj)

    def set_rayjob_status(self, ns: str, name: str, status: dict[str, Any]) -> None:
        obj = self.objects[("RayJob", ns, name)]
        obj["status"] = merge_patch(obj.get("status") or {}, status)
        self._stamp(obj)

    def rayjob(self, ns: str, name: str) -> dict[str, Any] | None:
        obj = self.objects.get(("RayJob", ns, name))
        return copy.deepcopy(obj) if obj else None

    def rayjob_names(self, ns: str) -> list[str]:
        return sorted(n for k, s, n in self.objects if k == "RayJob" and s == ns)

    def add_foreign_rayjob(self, ns: str, name: str, finetune: str) -> None:
        """A RayJob with our labels and name pattern that this resource does not control."""
        self.objects[("RayJob", ns, name)] = self._stamp(
            {
                "kind": "RayJob",
                "metadata": {
                    "name": name,
                    "namespace": ns,
                    "uid": f"foreign-{next(self._uid)}",
                    "labels": {names.LABEL_FINETUNE: finetune, names.LABEL_ATTEMPT: "1"},
                    "ownerReferences": [{"uid": "someone-else", "controller": True}],
                },
                "spec": {"suspend": False},
            }
        )

    # -- operator.act.ClusterApi ------------------------------------------------------
    def create_or_get(self, manifest: dict[str, Any]) -> bool:
        md = manifest["metadata"]
        self._check("create_or_get", manifest["kind"], md["name"])
        key = (manifest["kind"], md["namespace"], md["name"])
        if key in self.objects:
            existing = self.objects[key]
            owners = {controller_uid(existing)} - {None}
            problem = ownership_problem(manifest, owners)  # type: ignore[arg-type]
            if problem:
                raise CreateError(problem, 409, conflict=True)
            return False
        body = copy.deepcopy(manifest)
        body["metadata"]["uid"] = f"{manifest['kind'].lower()}-{next(self._uid)}"
        self.objects[key] = self._stamp(body)
        return True

    def delete_rayjob(self, namespace: str, name: str, uid: str) -> bool:
        self._check("delete_rayjob", name, uid)
        obj = self.objects.get(("RayJob", namespace, name))
        if obj is None or obj["metadata"]["uid"] != uid:
            return False  # the uid precondition: never someone else's object
        del self.objects[("RayJob", namespace, name)]
        return True

    def set_rayjob_suspend(self, namespace: str, name: str, uid: str, suspend: bool) -> None:
        self._check("set_rayjob_suspend", name, uid, suspend)
        obj = self.objects.get(("RayJob", namespace, name))
        if obj is None or obj["metadata"]["uid"] != uid:
            raise Conflict(f"RayJob {name} is not uid {uid}")
        obj["spec"]["suspend"] = suspend
        self._stamp(obj)

    def get_finetune(self, namespace: str, name: str) -> dict[str, Any] | None:
        self._check("get_finetune", name)
        obj = self.objects.get(("WhisperFineTune", namespace, name))
        return copy.deepcopy(obj) if obj else None

    def list_rayjobs(self, namespace: str, finetune: str) -> list[dict[str, Any]]:
        self._check("list_rayjobs", finetune)
        return [
            copy.deepcopy(o)
            for (k, ns, _), o in sorted(self.objects.items())
            if k == "RayJob"
            and ns == namespace
            and (o["metadata"].get("labels") or {}).get(names.LABEL_FINETUNE) == finetune
        ]

    def list_finetunes(self, namespace: str) -> list[dict[str, Any]]:
        self._check("list_finetunes", namespace)
        return [
            copy.deepcopy(o)
            for (k, ns, _), o in sorted(self.objects.items())
            if k == "WhisperFineTune" and ns == namespace
        ]

    def release_claim(self, namespace: str, claim: str, owner_uid: str) -> None:
        self._check("release_claim", claim, owner_uid)
        obj = self.objects.get(("PersistentVolumeClaim", namespace, claim))
        if obj is None:
            return
        md = obj["metadata"]
        refs = md.get("ownerReferences") or []
        kept = [r for r in refs if r.get("uid") != owner_uid]
        if len(kept) == len(refs):
            return
        if kept:
            md["ownerReferences"] = kept
        else:
            md.pop("ownerReferences", None)
        md.setdefault("annotations", {})[names.ANNOTATION_KEPT] = f"uid {owner_uid}"
        self._stamp(obj)

    def claim_controller(self, namespace: str, claim: str) -> str | None:
        self._check("claim_controller", claim)
        obj = self.objects.get(("PersistentVolumeClaim", namespace, claim))
        for ref in ((obj or {}).get("metadata") or {}).get("ownerReferences") or []:
            if ref.get("controller") and ref.get("kind") == names.KIND:
                return str(ref["name"])
        return None

    def patch_status(
        self, namespace: str, name: str, status: dict[str, Any], resource_version: str | None
    ) -> dict[str, Any]:
        self._check("patch_status", name)
        obj = self.objects[("WhisperFineTune", namespace, name)]
        if resource_version is not None and obj["metadata"]["resourceVersion"] != resource_version:
            raise Conflict(f"{name}: resourceVersion {resource_version} is stale")
        obj["status"] = merge_patch(obj.get("status") or {}, status)
        self._stamp(obj)
        return copy.deepcopy(obj)

    def event(self, view: View, type_: str, reason: str, message: str) -> None:
        self.events.append((type_, reason, message))
