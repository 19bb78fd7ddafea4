"""Pod templates of the Ray head, the Ray workers and the job submitter."""

from __future__ import annotations

from typing import Any

from whisperft import names
from whisperft.operator.api.spec import WhisperFineTuneSpec
from whisperft.operator.planning.resolve import PodSize, Resolution
from whisperft.operator.render.meta import Meta, config_map_name, labels, trainer_account_name
from whisperft.operator.render.security import container_security_context, pod_security_context
from whisperft.operator.render.storage import claim_name
from whisperft.operator.settings import Settings

HF_HOME = f"{names.CHECKPOINT_MOUNT_DIR}/.cache/huggingface"
HF_TOKEN_ENV = "HF_TOKEN"


def _volumes(
    spec: WhisperFineTuneSpec, meta: Meta, res: Resolution, attempt: int
) -> list[dict[str, Any]]:
    vols: list[dict[str, Any]] = [
        {"name": "checkpoints", "persistentVolumeClaim": {"claimName": claim_name(spec, meta)}},
        {"name": "config", "configMap": {"name": config_map_name(meta.name, attempt)}},
        # NCCL and PyTorch data loaders use /dev/shm; the container default is 64 MiB.
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": res.shm_size}},
        {"name": "tmp", "emptyDir": {}},
    ]
    if spec.dataset.claim_name:
        vols.append(
            {
                "name": "data",
                "persistentVolumeClaim": {"claimName": spec.dataset.claim_name, "readOnly": True},
            }
        )
    return vols


def _mounts(spec: WhisperFineTuneSpec) -> list[dict[str, Any]]:
    mounts: list[dict[str, Any]] = [
        {"name": "checkpoints", "mountPath": names.CHECKPOINT_MOUNT_DIR},
        {"name": "config", "mountPath": names.CONFIG_MOUNT_DIR, "readOnly": True},
        {"name": "dshm", "mountPath": "/dev/shm"},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    if spec.dataset.claim_name:
        mounts.append({"name": "data", "mountPath": names.DATA_MOUNT_DIR, "readOnly": True})
    return mounts


def _env(
    spec: WhisperFineTuneSpec, meta: Meta, attempt: int, *, hf_token: bool
) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": names.ENV_FINETUNE_NAME, "value": meta.name},
        {"name": names.ENV_FINETUNE_NAMESPACE, "value": meta.namespace},
        {
            "name": names.ENV_CONFIG_PATH,
            "value": f"{names.CONFIG_MOUNT_DIR}/{names.FINETUNE_FILE_NAME}",
        },
        {"name": names.ENV_ATTEMPT, "value": str(attempt)},
        {"name": "HF_HOME", "value": HF_HOME},
    ]
    ref = spec.hf_token_secret_ref
    if hf_token and ref is not None:
        env.append(
            {
                "name": HF_TOKEN_ENV,
                "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}},
            }
        )
    return env


def _resources(size: PodSize, gpus: int, gpu_resource: str) -> dict[str, Any]:
    amounts: dict[str, Any] = {"cpu": size.cpu, "memory": size.memory}
    if gpus:
        amounts[gpu_resource] = str(gpus)
    return {"requests": dict(amounts), "limits": dict(amounts)}


def _pull_policy(spec: WhisperFineTuneSpec, settings: Settings) -> str:
    """A user-named image is always pulled: with IfNotPresent a private image cached on
    the node would run without the pull credentials it needs."""
    if spec.image is not None and spec.image != settings.trainer_image:
        return "Always"
    return settings.image_pull_policy


def _container(
    name: str,
    spec: WhisperFineTuneSpec,
    meta: Meta,
    settings: Settings,
    attempt: int,
    resources: dict[str, Any],
    *,
    hf_token: bool,
) -> dict[str, Any]:
    return {
        "name": name,
        "image": spec.image or settings.trainer_image,
        "imagePullPolicy": _pull_policy(spec, settings),
        "resources": resources,
        "env": _env(spec, meta, attempt, hf_token=hf_token),
        "volumeMounts": _mounts(spec),
        "securityContext": container_security_context(settings),
    }


def _pod(
    spec: WhisperFineTuneSpec,
    meta: Meta,
    settings: Settings,
    res: Resolution,
    attempt: int,
    component: str,
    container: dict[str, Any],
    node_selector: dict[str, str],
    tolerations: list[dict[str, Any]],
    *,
    api_token: bool,
) -> dict[str, Any]:
    pod_spec: dict[str, Any] = {
        "serviceAccountName": trainer_account_name(meta.name),
        "automountServiceAccountToken": api_token,
        "securityContext": pod_security_context(settings),
        "containers": [container],
        "volumes": _volumes(spec, meta, res, attempt),
    }
    if node_selector:
        pod_spec["nodeSelector"] = node_selector
    if tolerations:
        pod_spec["tolerations"] = tolerations
    return {"metadata": {"labels": labels(meta, component, attempt)}, "spec": pod_spec}


def head_template(
    spec: WhisperFineTuneSpec, meta: Meta, settings: Settings, res: Resolution, attempt: int
) -> dict[str, Any]:
    """The head runs the driver only: no GPUs, no GPU-pool placement.

    The driver resolves (downloads) the model into the claim, so the head alone gets
    the hub token; it never calls the Kubernetes API, so it gets no ServiceAccount token."""
    container = _container(
        "ray-head", spec, meta, settings, attempt, _resources(res.head, 0, ""), hf_token=True
    )
    return _pod(spec, meta, settings, res, attempt, "ray-head", container, {}, [], api_token=False)


def worker_template(
    spec: WhisperFineTuneSpec, meta: Meta, settings: Settings, res: Resolution, attempt: int
) -> dict[str, Any]:
    gpus = spec.resources.effective_gpus_per_worker
    pool = res.pool
    gpu_resource = pool.gpu_resource if pool else "nvidia.com/gpu"
    # Workers load the model the driver prepared on the claim: no hub token.
    container = _container(
        "ray-worker",
        spec,
        meta,
        settings,
        attempt,
        _resources(res.worker, gpus, gpu_resource),
        hf_token=False,
    )
    # The pool's keys win (admission refuses a contradicting one); users only add.
    selector = {**spec.resources.node_selector, **(pool.node_selector if pool else {})}
    tolerations = [t.to_wire() for t in (pool.tolerations if pool else [])]
    tolerations += [
        t.to_wire() for t in spec.resources.tolerations if t.to_wire() not in tolerations
    ]
    # Rank 0 runs on a worker and patches the resource's status with the trainer's token.
    return _pod(
        spec,
        meta,
        settings,
        res,
        attempt,
        "ray-worker",
        container,
        selector,
        tolerations,
        api_token=True,
    )


def submitter_template(
    spec: WhisperFineTuneSpec, meta: Meta, settings: Settings, attempt: int
) -> dict[str, Any]:
    """KubeRay's default submitter pod has no security context, which `restricted` refuses;
    KubeRay fills in the `ray job submit` command because none is given here."""
    size = settings.submitter_resources
    return {
        "metadata": {"labels": labels(meta, "ray-job-submitter", attempt)},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "securityContext": pod_security_context(settings),
            "containers": [
                {
                    "name": "ray-job-submitter",
                    "image": spec.image or settings.trainer_image,
                    "imagePullPolicy": _pull_policy(spec, settings),
                    "resources": _resources(PodSize(size.cpu, size.memory), 0, ""),
                    "securityContext": container_security_context(settings),
                }
            ],
        },
    }
