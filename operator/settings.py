"""Operator settings: what the platform team configures, from a YAML file and env.

Sources, later wins: built-in defaults < the YAML file named by
``WHISPERFT_SETTINGS_FILE`` (the chart mounts its settings ConfigMap there) <
the individual environment variables below.

==============================  ==========================================  ======================================
setting (YAML key)              env var                                     default
==============================  ==========================================  ======================================
nodePools                       (file only)                                 nvidia-l4, nvidia-a100-80gb, nvidia-h100-80gb
trainerImage                    WHISPERFT_TRAINER_IMAGE                     ghcr.io/whisperft/trainer:<version>
allowedImages                   (file only)                                 [] = only trainerImage (its repository by digest)
requireImageDigest              (file only)                                 false (true: spec.image must be repo@sha256:...)
rayVersion                      WHISPERFT_RAY_VERSION                       2.60.0 (must match the trainer image)
namespaces                      WHISPERFT_NAMESPACES (comma-separated)      [] = all namespaces
workerDefaults.cpu / .memory    WHISPERFT_WORKER_CPU / _MEMORY              8 / 32Gi
cpuWorkerDefaults.cpu/.memory   (file only)                                 4 / 16Gi (workers without GPUs)
imagePullPolicy                 (file only)                                 IfNotPresent
headDefaults.cpu / .memory      WHISPERFT_HEAD_CPU / _MEMORY                2 / 8Gi
shmSize                         WHISPERFT_SHM_SIZE                          8Gi
submitterResources.cpu/.memory  (file only)                                 500m / 1Gi
syncIntervalSeconds             WHISPERFT_SYNC_INTERVAL                     5
metricsPort                     WHISPERFT_METRICS_PORT                      8080 (0: off)
runAsUser / fsGroup             (file only)                                 1000 / 100 (the Ray image's user)
kuberayNamespace                WHISPERFT_KUBERAY_NAMESPACE                 kuberay-system (the KubeRay operator's)
rayPods.*                       (file only)                                 nothing added (see below)
trainerServiceAccount.*         (file only)                                 no annotations
*.ephemeralStorage              (file only)                                 unset (no ephemeral-storage request)
==============================  ==========================================  ======================================

A node pool entry (keyed by the ``accelerator`` users write in the spec)::

    nodePools:
      nvidia-l4:
        nodeSelector: {nvidia.com/gpu.product: NVIDIA-L4}
        tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]
        gpuMemoryGiB: 24
        gpuResource: nvidia.com/gpu
        bf16: true

``kuberayNamespace`` is where the KubeRay operator runs: each attempt's
NetworkPolicy lets pods of that namespace reach the Ray head's dashboard port
(KubeRay polls job status there) and nothing else from outside the job; set it
to the namespace KubeRay is really installed in, or its RayJobs never report.

``rayPods`` shapes every Ray pod (head and workers; the job submitter gets the
labels, annotations, priority class, pull secrets and the head's affinity, not
the env)::

    rayPods:
      env: [{name: HTTPS_PROXY, value: "http://proxy:3128"}]   # value or valueFrom
      labels: {team: speech}
      annotations: {cluster-autoscaler.kubernetes.io/safe-to-evict: "false"}
      priorityClassName: training
      imagePullSecrets: [{name: corp-registry}]     # must exist in each served namespace
      workerNodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: ...}
      headNodeAffinity: {preferredDuringSchedulingIgnoredDuringExecution: ...}
    trainerServiceAccount:
      annotations: {iam.gke.io/gcp-service-account: trainer@p.iam.gserviceaccount.com}

Node affinity is added to the pool's nodeSelector and tolerations, never in their
place: Kubernetes requires both, so it can only narrow the pool. What the
operator and KubeRay depend on cannot be set (settings_pods.py lists it): env
names the operator, KubeRay or Ray token authentication set (``WHISPERFT_*``,
``RAY_AUTH_*``, ``RAY_ADDRESS``, ``HF_TOKEN``...), and label or annotation keys
of the ``whisperft.io``, ``ray.io`` and ``kueue.x-k8s.io`` domains or the
``app.kubernetes.io/*`` keys the operator sets. These are platform settings
only: a WhisperFineTune cannot set them, because labels and annotations steer
other objects of the namespace (Service and NetworkPolicy selectors, admission
webhooks) and env, priority and pull secrets reach beyond one job.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError

from whisperft import __version__
from whisperft.operator.api.base import QUANTITY_PATTERN
from whisperft.operator.api.spec_resources import Toleration
from whisperft.operator.settings_pods import RayPods, SettingsModel, TrainerServiceAccount

ENV_SETTINGS_FILE = "WHISPERFT_SETTINGS_FILE"
__all__ = ["NodePool", "RayPods", "Resources", "Settings", "SettingsError", "load_settings"]


class SettingsError(ValueError):
    """Operator settings that cannot be used, with the problem named."""


class NodePool(SettingsModel):
    node_selector: dict[str, str] = Field(
        default_factory=dict, description="Labels selecting the pool's nodes."
    )
    tolerations: list[Toleration] = Field(
        default_factory=list, description="Tolerations for the pool's taints."
    )
    gpu_memory_gib: float = Field(
        gt=0, alias="gpuMemoryGiB", description="Memory of one GPU, for the planner."
    )
    gpu_resource: str = Field("nvidia.com/gpu", description="Extended resource name of the GPU.")
    bf16: bool = Field(True, description="Whether the GPU computes in bfloat16 (Ampere and newer).")
    gpus_per_node: int | None = Field(
        None,
        ge=1,
        le=64,
        description=(
            "GPUs on one node of the pool. A run on a ReadWriteOnce checkpoint claim must fit "
            "on one node; unset: 1."
        ),
    )


class Resources(SettingsModel):
    cpu: str
    memory: str
    ephemeral_storage: str | None = Field(
        None,
        max_length=32,
        pattern=QUANTITY_PATTERN,
        description="ephemeral-storage request and limit (logs, /tmp, Ray's spilling); unset: none.",
    )


def _nfd_pool(product: str, gib: float, bf16: bool = True) -> NodePool:
    """A pool selected by NVIDIA GPU feature discovery's product label, as the
    chart's default values do (tests/unit/test_operator_settings.py pins that)."""
    return NodePool(
        node_selector={"nvidia.com/gpu.product": product},
        tolerations=[Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")],
        gpu_memory_gib=gib,
        bf16=bf16,
    )


def _default_pools() -> dict[str, NodePool]:
    return {
        "nvidia-l4": _nfd_pool("NVIDIA-L4", 24),
        "nvidia-a100-80gb": _nfd_pool("NVIDIA-A100-SXM4-80GB", 80),
        "nvidia-h100-80gb": _nfd_pool("NVIDIA-H100-80GB-HBM3", 80),
    }


class Settings(SettingsModel):
    node_pools: dict[str, NodePool] = Field(default_factory=_default_pools)
    trainer_image: str = f"ghcr.io/whisperft/trainer:{__version__}"
    allowed_images: list[str] = Field(
        default_factory=list,
        description="Image repository prefixes spec.image may name (whole path segments).",
    )
    require_image_digest: bool = False
    image_pull_policy: str = "IfNotPresent"
    ray_version: str = "2.60.0"
    namespaces: list[str] = Field(default_factory=list)
    worker_defaults: Resources = Field(default_factory=lambda: Resources(cpu="8", memory="32Gi"))
    cpu_worker_defaults: Resources = Field(
        default_factory=lambda: Resources(cpu="4", memory="16Gi")
    )
    head_defaults: Resources = Field(default_factory=lambda: Resources(cpu="2", memory="8Gi"))
    submitter_resources: Resources = Field(
        default_factory=lambda: Resources(cpu="500m", memory="1Gi")
    )
    shm_size: str = "8Gi"
    sync_interval_seconds: float = Field(5.0, gt=0)
    metrics_port: int = Field(8080, ge=0, le=65535)
    run_as_user: int = Field(1000, ge=1)
    fs_group: int = Field(100, ge=0)
    kuberay_namespace: str = Field(
        "kuberay-system",
        min_length=1,
        max_length=63,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        description="Namespace of the KubeRay operator, allowed to the Ray head's dashboard.",
    )
    read_write_many_storage_classes: list[str] = Field(
        default_factory=list,
        max_length=64,
        description=(
            "StorageClasses whose claims can be ReadWriteMany (Filestore, EFS, CephFS, NFS); "
            '"" is the cluster\'s default class. A claim the operator creates in another class '
            "is ReadWriteOnce, and every Ray pod that mounts it is placed on one node."
        ),
    )
    field_manager: str = "whisperft-operator"
    ray_pods: RayPods = Field(default_factory=RayPods)
    trainer_service_account: TrainerServiceAccount = Field(default_factory=TrainerServiceAccount)

    def pool(self, accelerator: str | None) -> NodePool | None:
        return None if accelerator is None else self.node_pools.get(accelerator)


_ENV_KEYS: dict[str, tuple[str, ...]] = {
    "WHISPERFT_TRAINER_IMAGE": ("trainerImage",),
    "WHISPERFT_RAY_VERSION": ("rayVersion",),
    "WHISPERFT_WORKER_CPU": ("workerDefaults", "cpu"),
    "WHISPERFT_WORKER_MEMORY": ("workerDefaults", "memory"),
    "WHISPERFT_HEAD_CPU": ("headDefaults", "cpu"),
    "WHISPERFT_HEAD_MEMORY": ("headDefaults", "memory"),
    "WHISPERFT_SHM_SIZE": ("shmSize",),
    "WHISPERFT_SYNC_INTERVAL": ("syncIntervalSeconds",),
    "WHISPERFT_METRICS_PORT": ("metricsPort",),
    "WHISPERFT_KUBERAY_NAMESPACE": ("kuberayNamespace",),
}


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Defaults, then the settings file, then env overrides; errors name the source."""
    env = os.environ if env is None else env
    raw: dict[str, Any] = {}
    source = "defaults"
    path = env.get(ENV_SETTINGS_FILE)
    if path:
        source = path
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SettingsError(f"{ENV_SETTINGS_FILE}={path}: file not found") from None
        except yaml.YAMLError as exc:
            raise SettingsError(f"{path}: cannot parse YAML: {exc}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise SettingsError(f"{path}: expected a mapping at the top level")
        raw = dict(loaded or {})
    base = Settings().to_wire()
    for key in ("workerDefaults", "headDefaults", "cpuWorkerDefaults", "submitterResources"):
        if isinstance(raw.get(key), dict):
            raw[key] = {**base[key], **raw[key]}
    for var, keys in _ENV_KEYS.items():
        if env.get(var):
            target = raw
            for k in keys[:-1]:
                target = target.setdefault(k, dict(base[k]))
            target[keys[-1]] = env[var]
    if env.get("WHISPERFT_NAMESPACES") is not None:
        raw["namespaces"] = [n.strip() for n in env["WHISPERFT_NAMESPACES"].split(",") if n.strip()]
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        lines = [f"operator settings ({source} + env): {exc.error_count()} invalid value(s):"]
        lines += [f"  - {'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        raise SettingsError("\n".join(lines)) from None
