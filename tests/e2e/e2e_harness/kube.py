"""Small read/patch helpers over the real API (python kubernetes client), used
by the scenario tests to observe what the operator and KubeRay did."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, cast

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from whisperft import names

from .cluster import ControlPlane

RAY_GROUP, RAY_VERSION = "ray.io", "v1"


class Kube:
    def __init__(self, cluster: ControlPlane) -> None:
        self.cluster = cluster
        self.api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
        self.core = client.CoreV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)

    def close(self) -> None:
        self.api.close()

    # ---- namespaces ------------------------------------------------------
    def namespace(self, name: str, labels: dict[str, str] | None = None) -> str:
        self.core.create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels or {}))
        )
        return name

    def delete_namespace(self, ns: str, timeout: float = 120) -> None:
        """Delete `ns`; wait until its WhisperFineTunes and pods are gone (the
        GPUs free for the next test), not for the namespace object itself.
        WhisperFineTunes nobody finalizes any more lose their finalizers."""
        self.cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)

        def empty() -> bool:
            return not self.items(f"{names.PLURAL},pods", ns)

        try:
            self.cluster.wait_until(f"namespace {ns} emptied", empty, timeout=timeout, interval=1.0)
        except TimeoutError:
            for obj in self.items(names.PLURAL, ns):
                self.patch_wft(ns, obj["metadata"]["name"], {"metadata": {"finalizers": None}})
            self.cluster.wait_until(
                f"namespace {ns} emptied (finalizers removed)", empty, timeout=60, interval=1.0
            )

    # ---- reads -----------------------------------------------------------
    def _custom(
        self, group: str, version: str, plural: str, ns: str, name: str
    ) -> dict[str, Any] | None:
        try:
            obj = self.custom.get_namespaced_custom_object(group, version, ns, plural, name)
            return cast(dict[str, Any], obj)
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def wft(self, ns: str, name: str) -> dict[str, Any] | None:
        return self._custom(names.GROUP, names.VERSION, names.PLURAL, ns, name)

    def rayjob(self, ns: str, name: str) -> dict[str, Any] | None:
        return self._custom(RAY_GROUP, RAY_VERSION, "rayjobs", ns, name)

    def rayjob_cluster(self, ns: str, job: str) -> str | None:
        """The RayCluster name KubeRay recorded on the RayJob (None until then)."""
        status = (self.rayjob(ns, job) or {}).get("status") or {}
        name = status.get("rayClusterName")
        return str(name) if name else None

    def raycluster(self, ns: str, name: str) -> dict[str, Any] | None:
        return self._custom(RAY_GROUP, RAY_VERSION, "rayclusters", ns, name)

    def items(self, kind: str, ns: str, selector: str = "") -> list[dict[str, Any]]:
        """Any kind kubectl knows, as plain dicts."""
        args = ["get", kind, "-n", ns, "-o", "json"]
        if selector:
            args += ["-l", selector]
        return list(json.loads(self.cluster.kubectl(*args).stdout)["items"])

    def get(self, kind: str, ns: str, name: str) -> dict[str, Any] | None:
        out = self.cluster.kubectl("get", kind, name, "-n", ns, "-o", "json", check=False)
        if out.returncode != 0:
            if "NotFound" in out.stderr:
                return None
            raise RuntimeError(out.stderr)
        return dict(json.loads(out.stdout))

    def events(self, ns: str, name: str) -> list[dict[str, Any]]:
        """Events about the WhisperFineTune `name` (newest last)."""
        evs = self.core.list_namespaced_event(
            ns, field_selector=f"involvedObject.name={name}"
        ).items
        out = [
            {
                "reason": e.reason,
                "type": e.type,
                "message": e.message,
                "kind": e.involved_object.kind,
            }
            for e in evs
            if e.involved_object.kind == names.KIND
        ]
        return out

    # ---- playing KubeRay's last step --------------------------------------
    def set_rayjob_status(self, ns: str, name: str, status: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object_status(
            RAY_GROUP, RAY_VERSION, ns, "rayjobs", name, {"status": status}
        )

    def patch_wft_status(self, ns: str, name: str, status: dict[str, Any]) -> None:
        """Merge-patch the status as the trainer's rank 0 does."""
        self.custom.patch_namespaced_custom_object_status(
            names.GROUP, names.VERSION, ns, names.PLURAL, name, {"status": status}
        )

    def patch_wft(self, ns: str, name: str, patch: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(
            names.GROUP, names.VERSION, ns, names.PLURAL, name, patch
        )

    # ---- waiting ---------------------------------------------------------
    def wait(
        self, what: str, check: Callable[[], Any], timeout: float = 60, interval: float = 0.5
    ) -> Any:
        """Poll until `check()` is truthy; return that value."""
        box: list[Any] = []

        def probe() -> bool:
            v = check()
            if v:
                box.append(v)
            return bool(v)

        self.cluster.wait_until(what, probe, timeout, interval)
        return box[-1]


def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any] | None:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    return None


def phase(obj: dict[str, Any] | None) -> str | None:
    return ((obj or {}).get("status") or {}).get("phase")


def owned_by(obj: dict[str, Any], owner: dict[str, Any]) -> bool:
    uid = owner["metadata"]["uid"]
    return any(
        r.get("uid") == uid and r.get("controller")
        for r in obj["metadata"].get("ownerReferences") or []
    )
