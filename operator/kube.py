"""The few Kubernetes API calls the reconcile makes (kubernetes client, synchronous;
Kopf runs sync handlers in its thread pool): `RealApi` is operator.act.ClusterApi."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from whisperft import names
from whisperft.operator.render.rayjob import RAY_API_VERSION

log = logging.getLogger(__name__)
TIMEOUT = 30
RAY_GROUP, RAY_VERSION = RAY_API_VERSION.split("/")


class OwnershipConflict(RuntimeError):
    """A child name is taken by an object another owner controls."""


def load_config() -> None:
    """In-cluster service account when in a pod, else the kubeconfig (out of cluster, e2e)."""
    global _SHARED
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    with _SHARED_LOCK:
        _SHARED = None  # the next call builds a client on the configuration just loaded


# One ApiClient (one connection pool) for every call: a fresh `client.XxxApi()` builds
# its own, and opening a TCP+TLS connection per request was 41% of the operator's busy
# time in a 200-resource burst (py-spy, bench/README.md). The pool is as large as
# Kopf's worker threads, so none waits for a connection.
POOL_SIZE = 32
_SHARED: client.ApiClient | None = None
_SHARED_LOCK = threading.Lock()


def api_client() -> client.ApiClient:
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            cfg = client.Configuration.get_default_copy()
            cfg.connection_pool_maxsize = POOL_SIZE
            _SHARED = client.ApiClient(cfg)
        return _SHARED


@dataclass(frozen=True)
class _Kind:
    create: Callable[..., Any]
    read: Callable[..., Any]


def _kinds() -> dict[str, _Kind]:
    core, rbac = client.CoreV1Api(api_client()), client.RbacAuthorizationV1Api(api_client())
    networking = client.NetworkingV1Api(api_client())
    custom = client.CustomObjectsApi(api_client())

    def create_rayjob(namespace: str, body: dict[str, Any], **kw: Any) -> Any:
        return custom.create_namespaced_custom_object(
            RAY_GROUP, RAY_VERSION, namespace, "rayjobs", body, **kw
        )

    def read_rayjob(name: str, namespace: str, **kw: Any) -> Any:
        return custom.get_namespaced_custom_object(
            RAY_GROUP, RAY_VERSION, namespace, "rayjobs", name, **kw
        )

    return {
        "PersistentVolumeClaim": _Kind(
            core.create_namespaced_persistent_volume_claim,
            core.read_namespaced_persistent_volume_claim,
        ),
        "ConfigMap": _Kind(core.create_namespaced_config_map, core.read_namespaced_config_map),
        "ServiceAccount": _Kind(
            core.create_namespaced_service_account, core.read_namespaced_service_account
        ),
        "Role": _Kind(rbac.create_namespaced_role, rbac.read_namespaced_role),
        "RoleBinding": _Kind(
            rbac.create_namespaced_role_binding, rbac.read_namespaced_role_binding
        ),
        "NetworkPolicy": _Kind(
            networking.create_namespaced_network_policy,
            networking.read_namespaced_network_policy,
        ),
        "RayJob": _Kind(create_rayjob, read_rayjob),
    }


def _owner_uids(obj: Any) -> set[str]:
    meta = obj.get("metadata", {}) if isinstance(obj, dict) else obj.metadata.to_dict()
    refs = meta.get("ownerReferences") or meta.get("owner_references") or []
    return {r["uid"] for r in refs if r.get("controller")}


def create_or_get(manifest: dict[str, Any], field_manager: str) -> bool:
    """Create `manifest`; if it exists already, check it is ours. True when created."""
    kind = _kinds()[manifest["kind"]]
    md = manifest["metadata"]
    try:
        kind.create(
            namespace=md["namespace"],
            body=manifest,
            field_manager=field_manager,
            _request_timeout=TIMEOUT,
        )
        return True
    except ApiException as exc:
        if exc.status != 409:
            raise
    existing = kind.read(name=md["name"], namespace=md["namespace"], _request_timeout=TIMEOUT)
    problem = ownership_problem(manifest, _owner_uids(existing))
    if problem:
        raise OwnershipConflict(problem)
    return False


def ownership_problem(manifest: dict[str, Any], existing_controllers: set[str]) -> str | None:
    """Why an object already under `manifest`'s name is not ours to adopt, or None.

    A child we would own must already be controlled by the same owner: an
    object nobody controls (made by hand, or kept from an earlier resource of
    the same name) is not silently taken over. A manifest without an owner (a
    kept checkpoint claim) reuses what is there.
    """
    md = manifest["metadata"]
    wanted = {r["uid"] for r in md.get("ownerReferences", [])}
    if not wanted or wanted & existing_controllers:
        return None
    who = (
        f"controlled by another owner (uid {', '.join(sorted(existing_controllers))})"
        if existing_controllers
        else "not controlled by this WhisperFineTune"
    )
    hint = (
        " (to reuse a kept checkpoint claim, set checkpoints.claimName to it)"
        if manifest["kind"] == "PersistentVolumeClaim"
        else ""
    )
    return (
        f"{manifest['kind']} {md['namespace']}/{md['name']} exists and is {who}; "
        f"delete it or rename the WhisperFineTune{hint}"
    )


class RealApi:
    """operator.act.ClusterApi on the cluster (kubernetes client, synchronous)."""

    def __init__(self, field_manager: str) -> None:
        self.field_manager = field_manager

    def create_or_get(self, manifest: dict[str, Any]) -> bool:
        from whisperft.operator.act import CreateError

        try:
            return create_or_get(manifest, self.field_manager)
        except OwnershipConflict as exc:
            raise CreateError(str(exc), 409, conflict=True) from None
        except ApiException as exc:
            what = f"{manifest['kind']} {manifest['metadata']['name']}"
            raise CreateError(f"creating {what}: {exc.status} {_reason(exc)}", exc.status) from None

    def delete_rayjob(self, namespace: str, name: str, uid: str) -> bool:
        """Delete only the RayJob with this uid (a precondition the API server checks)."""
        try:
            client.CustomObjectsApi(api_client()).delete_namespaced_custom_object(
                RAY_GROUP,
                RAY_VERSION,
                namespace,
                "rayjobs",
                name,
                body=client.V1DeleteOptions(
                    propagation_policy="Background", preconditions=client.V1Preconditions(uid=uid)
                ),
                _request_timeout=TIMEOUT,
            )
            return True
        except ApiException as exc:
            if exc.status in (404, 409):  # gone, or another object now holds the name
                return False
            raise

    def set_rayjob_suspend(self, namespace: str, name: str, uid: str, suspend: bool) -> None:
        from whisperft.operator.act import Conflict

        try:
            client.CustomObjectsApi(api_client()).patch_namespaced_custom_object(
                RAY_GROUP,
                RAY_VERSION,
                namespace,
                "rayjobs",
                name,
                # The uid in a merge patch is a precondition: another object under
                # this name is refused (uid is immutable), not changed.
                {"metadata": {"uid": uid}, "spec": {"suspend": suspend}},
                _request_timeout=TIMEOUT,
            )
        except ApiException as exc:
            if exc.status in (409, 422):
                raise Conflict(f"RayJob {namespace}/{name} is not uid {uid}") from None
            raise

    def get_finetune(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            obj: Any = client.CustomObjectsApi(api_client()).get_namespaced_custom_object(
                names.GROUP, names.VERSION, namespace, names.PLURAL, name, _request_timeout=TIMEOUT
            )
            return dict(obj)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def list_rayjobs(self, namespace: str, finetune: str) -> list[dict[str, Any]]:
        out: Any = client.CustomObjectsApi(api_client()).list_namespaced_custom_object(
            RAY_GROUP,
            RAY_VERSION,
            namespace,
            "rayjobs",
            label_selector=f"{names.LABEL_FINETUNE}={finetune}",
            _request_timeout=TIMEOUT,
        )
        return [dict(i) for i in out.get("items", [])]

    def list_finetunes(self, namespace: str) -> list[dict[str, Any]]:
        out: Any = client.CustomObjectsApi(api_client()).list_namespaced_custom_object(
            names.GROUP, names.VERSION, namespace, names.PLURAL, _request_timeout=TIMEOUT
        )
        return [dict(i) for i in out.get("items", [])]

    def release_claim(self, namespace: str, claim: str, owner_uid: str) -> None:
        core = client.CoreV1Api(api_client())
        try:
            pvc = core.read_namespaced_persistent_volume_claim(
                claim, namespace, _request_timeout=TIMEOUT
            )
        except ApiException as exc:
            if exc.status == 404:
                return
            raise
        if pvc.metadata is None:
            return
        refs = pvc.metadata.owner_references or []
        kept = [
            client.ApiClient().sanitize_for_serialization(r) for r in refs if r.uid != owner_uid
        ]
        if len(kept) == len(refs):
            return
        core.patch_namespaced_persistent_volume_claim(
            claim,
            namespace,
            {
                "metadata": {
                    # A precondition: a claim changed meanwhile is re-read on the next pass.
                    "resourceVersion": pvc.metadata.resource_version,
                    "ownerReferences": kept or None,
                    "annotations": {
                        names.ANNOTATION_KEPT: (
                            f"holds the model of succeeded WhisperFineTune uid {owner_uid}"
                        )
                    },
                }
            },
            _request_timeout=TIMEOUT,
        )

    def claim_controller(self, namespace: str, claim: str) -> str | None:
        try:
            pvc = client.CoreV1Api(api_client()).read_namespaced_persistent_volume_claim(
                claim, namespace, _request_timeout=TIMEOUT
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        for ref in (pvc.metadata.owner_references if pvc.metadata else None) or []:
            if ref.controller and ref.kind == names.KIND:
                return str(ref.name)
        return None

    def patch_status(
        self, namespace: str, name: str, status: dict[str, Any], resource_version: str | None
    ) -> dict[str, Any]:
        from whisperft.operator.act import Conflict

        body: dict[str, Any] = {"status": status}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        try:
            out: Any = client.CustomObjectsApi(api_client()).patch_namespaced_custom_object_status(
                names.GROUP,
                names.VERSION,
                namespace,
                names.PLURAL,
                name,
                body,
                _request_timeout=TIMEOUT,
            )
            return dict(out)
        except ApiException as exc:
            if exc.status == 409:
                raise Conflict(str(exc.reason)) from None
            raise

    def event(self, view: Any, type_: str, reason: str, message: str) -> None:
        import kopf

        ref = {
            "apiVersion": names.API_VERSION,
            "kind": names.KIND,
            "metadata": {"name": view.name, "namespace": view.namespace, "uid": view.uid},
        }
        kopf.event(cast(Any, ref), type=type_, reason=reason, message=message)


# (namespace, name, uid): how Kopf's indexes key the object behind an entry.
ObjectKey = tuple[str | None, str, str]


def gone_objects(kind: str, known: Iterable[ObjectKey]) -> list[ObjectKey]:
    """Of the `known` RayJobs or pods (kind "rayjobs" or "pods"), those the API
    server no longer has.

    Kopf's indexes drop an object only when its watch delivers DELETED. A watch
    that starts over with a fresh list (410 Gone after an API-server outage, or
    after a peering pause) never delivers one for an object deleted in the gap,
    so its entry would stay forever. `known` is taken from the index before
    this is called; each namespace is then listed once (our label only), and a
    known uid the list lacks was deleted: uids are never reused, and the list
    is a consistent read made after the object was seen. Only `list` is used,
    which the operator's RBAC grants on both kinds.
    """
    wanted: dict[str, set[ObjectKey]] = {}
    for key in known:
        if key[0]:
            wanted.setdefault(key[0], set()).add(key)
    selector = f"{names.LABEL_MANAGED_BY}={names.MANAGED_BY}"
    gone: list[ObjectKey] = []
    for namespace, keys in sorted(wanted.items()):
        if kind == "rayjobs":
            out: Any = client.CustomObjectsApi(api_client()).list_namespaced_custom_object(
                RAY_GROUP,
                RAY_VERSION,
                namespace,
                "rayjobs",
                label_selector=selector,
                _request_timeout=TIMEOUT,
            )
            alive = {(i.get("metadata") or {}).get("uid") for i in out.get("items", [])}
        elif kind == "pods":
            pods = client.CoreV1Api(api_client()).list_namespaced_pod(
                namespace, label_selector=selector, _request_timeout=TIMEOUT
            )
            alive = {p.metadata.uid for p in pods.items if p.metadata is not None}
        else:
            raise ValueError(f"unknown kind {kind!r}")
        gone.extend(sorted(k for k in keys if k[2] not in alive))
    return gone


def _reason(exc: ApiException) -> str:
    """The API server's own message (a quota's, an admission webhook's), not the headers."""
    import json

    try:
        return str(json.loads(exc.body or "{}").get("message") or exc.reason)
    except (TypeError, ValueError):
        return str(exc.reason)
