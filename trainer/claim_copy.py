"""Copy a finished run's outputs off its checkpoint claim through a short-lived pod.

The pod mounts the claim read-only where the Ray pods mounted it (so
status.model.path is valid inside it), runs nothing but `sleep`, and is
deleted when the copy ends or fails; `activeDeadlineSeconds` removes it even
if this process dies. The copy is `tar | base64` over the exec stream
(the Kubernetes client's exec channel is text) and is unpacked with tarfile's
`data` filter, so no entry lands outside the destination.
"""

from __future__ import annotations

import base64
import io
import tarfile
import time
from pathlib import Path
from typing import Any

from whisperft import names
from whisperft.trainer.fetch import Fetched, FetchError, output_location
from whisperft.trainer.outputs import MODEL_DIRS, PLOT, RESULTS

POD_DEADLINE_S = 1800  # the pod removes itself after this, whatever happens here
READY_TIMEOUT_S = 180.0
USER_ID = 1000  # the trainer image's user, who wrote the claim


def copy_pod(fine_tune: str, namespace: str, claim: str, image: str) -> dict[str, Any]:
    """The pod manifest (pure): the claim read-only at the Ray pods' mount path."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": f"{fine_tune[:40]}-fetch-",
            "namespace": namespace,
            "labels": {names.LABEL_FINETUNE: fine_tune, names.LABEL_COMPONENT: "fetch"},
        },
        "spec": {
            "restartPolicy": "Never",
            "activeDeadlineSeconds": POD_DEADLINE_S,
            "automountServiceAccountToken": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": USER_ID,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "fetch",
                    "image": image,
                    "command": ["sleep", str(POD_DEADLINE_S)],
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "resources": {
                        "requests": {"cpu": "100m", "memory": "128Mi"},
                        "limits": {"cpu": "1", "memory": "512Mi"},
                    },
                    "volumeMounts": [
                        {
                            "name": "checkpoints",
                            "mountPath": names.CHECKPOINT_MOUNT_DIR,
                            "readOnly": True,
                        }
                    ],
                }
            ],
            "volumes": [
                {
                    "name": "checkpoints",
                    "persistentVolumeClaim": {"claimName": claim, "readOnly": True},
                }
            ],
        },
    }


def tar_command(output_dir: str, formats: list[str]) -> list[str]:
    """What the pod runs: the outputs as a base64 tar on stdout."""
    entries = " ".join([MODEL_DIRS[f] for f in formats] + [RESULTS, PLOT])
    # A missing entry (no plot, no ct2) is not an error; tar still writes the rest.
    return ["sh", "-c", f"cd '{output_dir}' && tar cf - {entries} 2>/dev/null | base64"]


def unpack(encoded: str, dest: Path) -> int:
    """Unpack the base64 tar into ``dest``; the bytes of the tar."""
    raw = base64.b64decode("".join(encoded.split()))
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        tar.extractall(dest, filter="data")
    return len(raw)


def fetch_claim(
    body: dict[str, Any],
    dest: Path,
    *,
    image: str | None = None,
    formats: tuple[str, ...] = ("hf", "ct2"),
) -> Fetched:
    """Copy the outputs of the WhisperFineTune ``body`` (as read from the API, kube
    config already loaded) off its claim into ``dest``."""
    from kubernetes import client
    from kubernetes.stream import stream

    from whisperft.operator.api.resource import parse_resource
    from whisperft.operator.render.meta import Meta
    from whisperft.operator.render.storage import claim_name

    fine_tune, namespace = body["metadata"]["name"], body["metadata"]["namespace"]
    model = (body.get("status") or {}).get("model") or {}
    if not model.get("path"):
        raise FetchError(
            f"{namespace}/{fine_tune}: status.model is not set, so no model was exported yet"
        )
    location = output_location(model["path"])
    exported = model.get("formats") or ["hf"]
    wanted = [f for f in formats if f in exported] or ["hf"]
    spec = parse_resource(body).spec
    claim = claim_name(spec, Meta(fine_tune, namespace, body["metadata"].get("uid", "")))
    image = image or spec.image or _ray_image(fine_tune, namespace)
    core: Any = client.CoreV1Api()
    pod = core.create_namespaced_pod(namespace, copy_pod(fine_tune, namespace, claim, image))
    pod_name = pod.metadata.name
    try:
        _wait_running(core, namespace, pod_name)
        encoded = stream(
            core.connect_get_namespaced_pod_exec,
            pod_name,
            namespace,
            command=tar_command(location, wanted),
            stderr=False,
            stdin=False,
            stdout=True,
            tty=False,
        )
        n = unpack(encoded, dest)
    finally:
        core.delete_namespaced_pod(pod_name, namespace, grace_period_seconds=0)
    if not (dest / MODEL_DIRS["hf"]).is_dir():
        raise FetchError(f"{claim}:{location}: no model/ on the claim")
    return Fetched(dest, wanted, n)


def _ray_image(fine_tune: str, namespace: str) -> str:
    """The trainer image the run used (its RayJob's head), which has sh and tar."""
    from kubernetes import client

    api: Any = client.CustomObjectsApi()
    jobs = api.list_namespaced_custom_object(
        "ray.io", "v1", namespace, "rayjobs", label_selector=f"{names.LABEL_FINETUNE}={fine_tune}"
    )
    for job in jobs.get("items", []):
        head = job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
        return str(head["containers"][0]["image"])
    raise FetchError(
        f"{namespace}/{fine_tune}: no RayJob left to take the trainer image from; pass --image"
    )


def _wait_running(core: Any, namespace: str, pod: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    phase = "Pending"
    while time.monotonic() < deadline:
        phase = core.read_namespaced_pod(pod, namespace).status.phase or "Pending"
        if phase == "Running":
            return
        if phase in ("Failed", "Succeeded"):
            break
        time.sleep(1.0)
    raise FetchError(
        f"{namespace}/{pod}: the copy pod is {phase} after {READY_TIMEOUT_S:.0f} s "
        "(is the claim still attached to another node, or the image not pullable?)"
    )
