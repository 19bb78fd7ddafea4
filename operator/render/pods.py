"""Pod templates of the Ray head, the Ray workers and the job submitter."""

from __future__ import annotations

import math
from typing import Any

from whisperft import names
from whisperft.operator.api.spec import WhisperFineTuneSpec
from whisperft.operator.planning.resolve import PodSize, Resolution
from whisperft.operator.render.meta import Meta, config_map_name, labels, trainer_account_name
from whisperft.operator.render.security import container_security_context, pod_security_context
from whisperft.operator.render.storage import claim_name
from whisperft.operator.settings import Resources, Settings
from whisperft.operator.settings_pods import NodeAffinity

HF_HOME = f"{names.CHECKPOINT_MOUNT_DIR}/.cache/huggingface"
HF_TOKEN_ENV = "HF_TOKEN"
HEAD, WORKER = "ray-head", "ray-worker"  # the pods' component labels
# trainer.preemption reads the flag; the grace period covers one checkpoint save (AWS
# spot gives 2 minutes' notice; GKE spot 30 s, where a large model's save may not fit).
PREEMPT_FLAG_ENV, PREEMPT_FLAG = "WHISPERFT_PREEMPT_FLAG", "/tmp/whisperft-preempt"
PREEMPT_GRACE_S = 120
STAGING_EXTRA_GIB = 2


def staging_size(res: Resolution) -> str:
    """/tmp holds one rank's checkpoint while it is written (then moved or uploaded): the
    planner's whole-checkpoint size (an upper bound for one rank's part) plus room for
    the libraries' own temporary files. Bounded, so a runaway write evicts this pod
    instead of filling the node; the containers request it as ephemeral storage."""
    ckpt_gib = res.disk.checkpoint_gib if res.disk is not None else 0.0
    return f"{math.ceil(ckpt_gib * 1.25) + STAGING_EXTRA_GIB}Gi"


def _volumes(
    spec: WhisperFineTuneSpec, meta: Meta, res: Resolution, attempt: int, component: str
) -> list[dict[str, Any]]:
    scratch = component == WORKER and not res.claim.workers_share
    vols: list[dict[str, Any]] = [
        # A worker off the claim (bucket output): model and features on node-local scratch.
        {"name": "checkpoints", "emptyDir": {}}
        if scratch
        else {
            "name": "checkpoints",
            "persistentVolumeClaim": {"claimName": claim_name(spec, meta)},
        },
        {"name": "config", "configMap": {"name": config_map_name(meta.name, attempt)}},
        # NCCL and PyTorch data loaders use /dev/shm; the container default is 64 MiB.
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": res.shm_size}},
        {"name": "tmp", "emptyDir": {"sizeLimit": staging_size(res)}},
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
    spec: WhisperFineTuneSpec, meta: Meta, settings: Settings, attempt: int, *, hf_token: bool
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
    # The platform's (settings.rayPods.env), after ours; reserved names cannot be set there.
    env += [e.to_wire() for e in settings.ray_pods.env]
    return env


def _resources(
    size: PodSize,
    gpus: int,
    gpu_resource: str,
    defaults: Resources | None = None,
    staging: str | None = None,
) -> dict[str, Any]:
    amounts: dict[str, Any] = {"cpu": size.cpu, "memory": size.memory}
    if defaults is not None and defaults.ephemeral_storage:
        amounts["ephemeral-storage"] = defaults.ephemeral_storage
    if gpus:
        amounts[gpu_resource] = str(gpus)
    requests = dict(amounts)
    if staging is not None and "ephemeral-storage" not in requests:
        # Requested so the scheduler picks a node with room; no limit: the /tmp volume's
        # sizeLimit bounds the staging, and node-local scratch (bucket runs) has no bound.
        requests["ephemeral-storage"] = staging
    return {"requests": requests, "limits": dict(amounts)}


def _one_node(meta: Meta, attempt: int) -> dict[str, Any]:
    """Pod affinity putting this attempt's head and workers on one node (a
    ReadWriteOnce claim attaches to one). The first of them to be scheduled
    matches its own selector, so the scheduler may place it anywhere it fits."""
    return {
        "requiredDuringSchedulingIgnoredDuringExecution": [
            {
                "labelSelector": {
                    "matchLabels": {
                        names.LABEL_FINETUNE: meta.name,
                        names.LABEL_ATTEMPT: str(attempt),
                    },
                    "matchExpressions": [
                        {
                            "key": names.LABEL_COMPONENT,
                            "operator": "In",
                            "values": [HEAD, WORKER],
                        }
                    ],
                },
                "topologyKey": "kubernetes.io/hostname",
            }
        ]
    }


def _shape(
    settings: Settings,
    labels_: dict[str, str],
    affinity: NodeAffinity | None,
    pod_affinity: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The pod metadata and pod-spec fields the platform adds (settings.rayPods).

    The operator's labels win (the settings refuse its keys anyway); node affinity
    sits next to the pool's nodeSelector, which the scheduler requires as well."""
    shape = settings.ray_pods
    metadata: dict[str, Any] = {"labels": {**shape.labels, **labels_}}
    if shape.annotations:
        metadata["annotations"] = dict(shape.annotations)
    fields: dict[str, Any] = {}
    if shape.priority_class_name:
        fields["priorityClassName"] = shape.priority_class_name
    if shape.image_pull_secrets:
        fields["imagePullSecrets"] = [r.to_wire() for r in shape.image_pull_secrets]
    if affinity is not None:
        fields["affinity"] = {"nodeAffinity": affinity.to_wire()}
    if pod_affinity is not None:
        fields.setdefault("affinity", {})["podAffinity"] = pod_affinity
    return metadata, fields


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
        "env": _env(spec, meta, settings, attempt, hf_token=hf_token),
        **(
            {"envFrom": [{"secretRef": {"name": spec.storage_secret_ref.name}}]}
            if spec.storage_secret_ref
            else {}
        ),
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
    affinity: NodeAffinity | None,
) -> dict[str, Any]:
    together = _one_node(meta, attempt) if res.claim.one_node else None
    metadata, shaped = _shape(settings, labels(meta, component, attempt), affinity, together)
    pod_spec: dict[str, Any] = {
        "serviceAccountName": trainer_account_name(meta.name),
        "automountServiceAccountToken": api_token,
        "securityContext": pod_security_context(settings),
        "containers": [container],
        "volumes": _volumes(spec, meta, res, attempt, component),
    }
    if node_selector:
        pod_spec["nodeSelector"] = node_selector
    if tolerations:
        pod_spec["tolerations"] = tolerations
    pod_spec.update(shaped)
    return {"metadata": metadata, "spec": pod_spec}


def head_template(
    spec: WhisperFineTuneSpec, meta: Meta, settings: Settings, res: Resolution, attempt: int
) -> dict[str, Any]:
    """The head runs the driver only: no GPUs, no GPU-pool placement.

    The driver resolves (downloads) the model into the claim, so the head alone gets
    the hub token; it never calls the Kubernetes API, so it gets no ServiceAccount token."""
    resources = _resources(res.head, 0, "", settings.head_defaults)
    container = _container("ray-head", spec, meta, settings, attempt, resources, hf_token=True)
    # On a ReadWriteOnce claim the head shares the workers' node, so it goes to their pool.
    selector, tolerations = _placement(spec, res) if res.claim.one_node else ({}, [])
    return _pod(
        spec,
        meta,
        settings,
        res,
        attempt,
        HEAD,
        container,
        selector,
        tolerations,
        api_token=False,
        affinity=settings.ray_pods.head_node_affinity,
    )


def _placement(
    spec: WhisperFineTuneSpec, res: Resolution
) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """The workers' nodeSelector and tolerations: the pool's keys win (admission
    refuses a contradicting one); users only add."""
    pool = res.pool
    selector = {**spec.resources.node_selector, **(pool.node_selector if pool else {})}
    tolerations = [t.to_wire() for t in (pool.tolerations if pool else [])]
    tolerations += [
        t.to_wire() for t in spec.resources.tolerations if t.to_wire() not in tolerations
    ]
    return selector, tolerations


def worker_template(
    spec: WhisperFineTuneSpec, meta: Meta, settings: Settings, res: Resolution, attempt: int
) -> dict[str, Any]:
    gpus = spec.resources.effective_gpus_per_worker
    pool = res.pool
    gpu_resource = pool.gpu_resource if pool else "nvidia.com/gpu"
    defaults = (
        settings.worker_defaults if spec.resources.accelerator else settings.cpu_worker_defaults
    )
    # Workers load the model the driver prepared on the claim: no hub token, unless
    # they are off the claim and prepare it themselves.
    container = _container(
        "ray-worker",
        spec,
        meta,
        settings,
        attempt,
        _resources(res.worker, gpus, gpu_resource, defaults, staging_size(res)),
        hf_token=not res.claim.workers_share,
    )
    # Preemption: Kubernetes runs preStop before any signal; the trainer saves the step
    # it is on and the hook returns, all within the grace period (trainer.preemption).
    ours = len(container["env"]) - len(settings.ray_pods.env)  # the platform's env stays last
    container["env"].insert(ours, {"name": PREEMPT_FLAG_ENV, "value": PREEMPT_FLAG})
    container["lifecycle"] = {
        "preStop": {
            "exec": {
                "command": [
                    "python", "-m", "whisperft.trainer.preemption",
                    "--wait", str(PREEMPT_GRACE_S - 10),
                ]
            }
        }
    }  # fmt: skip
    selector, tolerations = _placement(spec, res)
    # Rank 0 runs on a worker and patches the resource's status with the trainer's token.
    pod = _pod(
        spec,
        meta,
        settings,
        res,
        attempt,
        WORKER,
        container,
        selector,
        tolerations,
        api_token=True,
        affinity=settings.ray_pods.worker_node_affinity,
    )
    pod["spec"]["terminationGracePeriodSeconds"] = PREEMPT_GRACE_S
    return pod


def submitter_template(
    spec: WhisperFineTuneSpec, meta: Meta, settings: Settings, attempt: int
) -> dict[str, Any]:
    """KubeRay's default submitter pod has no security context, which `restricted` refuses;
    KubeRay fills in the `ray job submit` command because none is given here."""
    size = settings.submitter_resources
    metadata, shaped = _shape(
        settings,
        labels(meta, "ray-job-submitter", attempt),
        settings.ray_pods.head_node_affinity,
    )
    return {
        "metadata": metadata,
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "securityContext": pod_security_context(settings),
            "containers": [
                {
                    "name": "ray-job-submitter",
                    "image": spec.image or settings.trainer_image,
                    "imagePullPolicy": _pull_policy(spec, settings),
                    "resources": _resources(PodSize(size.cpu, size.memory), 0, "", size),
                    "securityContext": container_security_context(settings),
                }
            ],
            **shaped,
        },
    }
