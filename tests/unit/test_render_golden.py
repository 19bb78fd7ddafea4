"""Golden files for every renderer branch, plus the invariants every rendered
bundle must keep whatever the branch.

The golden outputs live in tests/unit/golden/<case>.yaml; after an intended
change regenerate them with
``WHISPERFT_UPDATE_GOLDEN=1 pytest tests/unit/test_render_golden.py`` and
review the diff."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest

from whisperft import names
from whisperft.operator.api.resource import parse_resource
from whisperft.operator.render.bundle import Rendered, render_attempt
from whisperft.operator.render.meta import Meta
from whisperft.operator.render.output import to_yaml
from whisperft.operator.settings import Settings
from whisperft.trainer.config import TrainConfig, config_from_files

pytestmark = pytest.mark.unit

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("WHISPERFT_UPDATE_GOLDEN") == "1"

UID = "7d2c1a4e-0000-4000-8000-000000000001"


def config_of(out: Rendered) -> TrainConfig:
    """What `whisperft train` in the pod reads from the attempt's ConfigMap."""
    data = out.of_kind("ConfigMap")[0]["data"]
    return config_from_files(data[names.FINETUNE_FILE_NAME], data[names.RUNTIME_FILE_NAME])


def _base(name: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "whisperft.io/v1alpha1",
        "kind": "WhisperFineTune",
        "metadata": {"name": name, "namespace": "ml", "uid": UID},
        "spec": {
            "dataset": {"path": "bundled:en"},
            "training": {"maxSteps": 200},
            "resources": {"accelerator": "nvidia-l4"},
            "checkpoints": {"size": "10Gi"},
        },
    }
    for key, value in spec.items():
        body["spec"][key] = copy.deepcopy(value)
    return body


CASES: list[tuple[str, dict[str, Any], int]] = [
    # GPU pool, generated claim, planner picks ZeRO, attempt 1.
    ("gpu-minimal", _base("gpu-minimal", model={"name": "bundled:tiny.en"}), 1),
    # Everything optional switched on: user claim (never owned), dataset claim
    # (read-only mount), HF token by secretRef, Kueue label, deadlines, extra
    # placement, explicit DeepSpeed, several GPUs per worker, custom sizes.
    (
        "gpu-full",
        _base(
            "gpu-full",
            model={"name": "openai/whisper-large-v3", "language": "sw"},
            dataset={
                "format": "commonvoice",
                "path": "/cv-17/sw",
                "claimName": "speech-data",
                "maxTrainExamples": 5000,
            },
            training={
                "epochs": 3,
                "batchSizePerWorker": 4,
                "gradientCheckpointing": True,
                "precision": "bf16",
                "deepspeed": {
                    "mode": "explicit",
                    "stage": 3,
                    "offloadOptimizer": True,
                    "offloadParams": False,
                },
            },
            resources={
                "workers": 2,
                "gpusPerWorker": 4,
                "accelerator": "nvidia-a100-80gb",
                "cpu": "32",
                "memory": "400Gi",
                "shmSize": "64Gi",
                "head": {"cpu": "4", "memory": "16Gi"},
                "nodeSelector": {"topology.kubernetes.io/zone": "us-central1-a"},
                "tolerations": [
                    {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}
                ],
            },
            checkpoints={"claimName": "team-checkpoints"},
            hfTokenSecretRef={"name": "hf-token", "key": "token"},
            queueName="speech-team",
            activeDeadlineSeconds=86400,
            startupDeadlineSeconds=1800,
            ttlSecondsAfterFinished=60,
            image="registry.example/whisperft-trainer:1.2.3",
        ),
        1,
    ),
    # No accelerator: CPU workers, no GPU limits, no pool placement.
    (
        "cpu-workers",
        _base("cpu-workers", resources={"workers": 2}, model={"name": "bundled:tiny.en"}),
        1,
    ),
    # keepClaim: the generated claim has no owner reference; storage class set.
    (
        "keep-claim",
        _base(
            "keep-claim",
            model={"name": "openai/whisper-small"},
            training={"maxSteps": 100, "gradientCheckpointing": True},
            checkpoints={"size": "50Gi", "storageClass": "filestore-rwx", "keepClaim": True},
        ),
        1,
    ),
    # A retry: attempt 3 gets new RayJob/ConfigMap names, same claim and run name.
    ("attempt-3", _base("attempt-3", model={"name": "bundled:tiny.en"}), 3),
    # Created suspended: the RayJob is created with suspend: true.
    ("suspended", _base("suspended", model={"name": "bundled:tiny.en"}, suspend=True), 1),
]


# The gpu-full case names its own registry's image, which this platform allows;
# keep-claim's class offers ReadWriteMany, the default class (the other cases) does not.
SETTINGS = Settings(
    allowedImages=["registry.example"], readWriteManyStorageClasses=["filestore-rwx"]
)


def render_case(body: dict[str, Any], attempt: int) -> Rendered:
    res = parse_resource(body)
    meta = Meta(res.metadata.name, res.metadata.namespace, res.metadata.uid)
    return render_attempt(res.spec, meta, SETTINGS, attempt)


@pytest.mark.parametrize(("name", "body", "attempt"), CASES, ids=[c[0] for c in CASES])
def test_matches_golden_file(name: str, body: dict[str, Any], attempt: int) -> None:
    out = render_case(body, attempt)
    assert out.problem is None, out.problem
    text = to_yaml(out.children)
    path = GOLDEN / f"{name}.yaml"
    if UPDATE:
        path.write_text(text)
    assert path.exists(), f"{path} missing: run WHISPERFT_UPDATE_GOLDEN=1 pytest {__file__}"
    assert text == path.read_text(), (
        f"{name} differs from {path}; if intended, regenerate (see the module docstring)"
    )


# Pods shaped by the platform (settings.rayPods, trainerServiceAccount, head and
# submitter ephemeral storage): tests/unit/test_render_pod_shaping.py checks each
# piece; this golden shows them together in the manifests the operator creates.
SHAPED_SETTINGS = Settings.model_validate(
    {
        "rayPods": {
            "env": [
                {"name": "HTTPS_PROXY", "value": "http://proxy.corp:3128"},
                {"name": "NODE_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
            ],
            "labels": {"team": "speech"},
            "annotations": {"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"},
            "priorityClassName": "training-high",
            "imagePullSecrets": [{"name": "corp-registry"}],
            "workerNodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {
                                    "key": "topology.kubernetes.io/zone",
                                    "operator": "In",
                                    "values": ["us-central1-a", "us-central1-b"],
                                }
                            ]
                        }
                    ]
                }
            },
            "headNodeAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 10,
                        "preference": {
                            "matchExpressions": [
                                {"key": "cloud.google.com/gke-spot", "operator": "DoesNotExist"}
                            ]
                        },
                    }
                ]
            },
        },
        "trainerServiceAccount": {
            "annotations": {"iam.gke.io/gcp-service-account": "trainer@p.iam.gserviceaccount.com"}
        },
        "headDefaults": {"cpu": "2", "memory": "8Gi", "ephemeralStorage": "20Gi"},
    }
)


def test_shaped_pods_match_golden_file() -> None:
    body = _base("pod-shaping", model={"name": "bundled:tiny.en"})
    res = parse_resource(body)
    out = render_attempt(res.spec, Meta("pod-shaping", "ml", UID), SHAPED_SETTINGS, 1)
    assert out.problem is None, out.problem
    text = to_yaml(out.children)
    path = GOLDEN / "pod-shaping.yaml"
    if UPDATE:
        path.write_text(text)
    assert path.exists(), f"{path} missing: run WHISPERFT_UPDATE_GOLDEN=1 pytest {__file__}"
    assert text == path.read_text(), f"pod-shaping differs from {path}; if intended, regenerate"


def _containers(pod_spec: dict[str, Any]) -> list[dict[str, Any]]:
    return list(pod_spec.get("containers", [])) + list(pod_spec.get("initContainers", []))


def _pod_specs(rayjob: dict[str, Any]) -> list[dict[str, Any]]:
    rc = rayjob["spec"]["rayClusterSpec"]
    out = [rc["headGroupSpec"]["template"]["spec"], rayjob["spec"]["submitterPodTemplate"]["spec"]]
    out += [g["template"]["spec"] for g in rc["workerGroupSpecs"]]
    return out


@pytest.mark.parametrize(("name", "body", "attempt"), CASES, ids=[c[0] for c in CASES])
def test_invariants(name: str, body: dict[str, Any], attempt: int) -> None:
    out = render_case(body, attempt)
    kinds = [c["kind"] for c in out.children]
    assert kinds[-1] == "RayJob" and "ConfigMap" in kinds
    spec = body["spec"]
    user_claim = spec["checkpoints"].get("claimName")
    keep = spec["checkpoints"].get("keepClaim", False)
    assert ("PersistentVolumeClaim" in kinds) == (user_claim is None)
    for child in out.children:
        md = child["metadata"]
        assert md["namespace"] == "ml"
        assert md["labels"][names.LABEL_FINETUNE] == name
        assert md["labels"][names.LABEL_MANAGED_BY] == names.MANAGED_BY
        owned = not (child["kind"] == "PersistentVolumeClaim" and keep)
        refs = md.get("ownerReferences", [])
        assert bool(refs) == owned, child["kind"]
        if refs:
            assert refs == [
                {
                    "apiVersion": names.API_VERSION,
                    "kind": names.KIND,
                    "name": name,
                    "uid": UID,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ]
    rayjob = out.of_kind("RayJob")[0]
    assert rayjob["metadata"]["name"] == f"{name}-{attempt}"
    assert len(rayjob["metadata"]["name"]) <= 47  # KubeRay's limit
    js = rayjob["spec"]
    assert js["shutdownAfterJobFinishes"] is True and js["backoffLimit"] == 0
    assert js["suspend"] is bool(spec.get("suspend", False))
    assert ("kueue.x-k8s.io/queue-name" in rayjob["metadata"]["labels"]) == ("queueName" in spec)
    # PodSecurity `restricted` on every pod and container (incl. the submitter).
    for pod in _pod_specs(rayjob):
        psc = pod["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["seccompProfile"] == {"type": "RuntimeDefault"}
        for c in _containers(pod):
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert sc["runAsNonRoot"] is True
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
            assert "privileged" not in sc
        for vol in pod.get("volumes", []):
            assert "hostPath" not in vol
    # The same claim at the same path on every Ray pod; the config mounted.
    claim = user_claim or f"{name}-checkpoints"
    rc = js["rayClusterSpec"]
    for pod in [
        rc["headGroupSpec"]["template"]["spec"],
        rc["workerGroupSpecs"][0]["template"]["spec"],
    ]:
        vols = {v["name"]: v for v in pod["volumes"]}
        assert vols["checkpoints"]["persistentVolumeClaim"]["claimName"] == claim
        assert vols["config"]["configMap"]["name"] == f"{name}-{attempt}-config"
        assert vols["dshm"]["emptyDir"]["medium"] == "Memory"
        mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
        assert mounts["checkpoints"] == names.CHECKPOINT_MOUNT_DIR
        assert mounts["config"] == names.CONFIG_MOUNT_DIR
        assert mounts["dshm"] == "/dev/shm"
        env = {e["name"]: e for e in pod["containers"][0]["env"]}
        assert env[names.ENV_FINETUNE_NAME]["value"] == name
        assert env[names.ENV_FINETUNE_NAMESPACE]["value"] == "ml"
        assert all("value" not in e or "token" not in e["name"].lower() for e in env.values())
    head = rc["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert not any("gpu" in k for k in head["resources"]["limits"])
    worker_group = rc["workerGroupSpecs"][0]
    workers = spec["resources"].get("workers", 1)
    assert (
        worker_group["replicas"]
        == worker_group["minReplicas"]
        == worker_group["maxReplicas"]
        == workers
    )
    # The ConfigMap holds a TrainConfig the trainer itself accepts, with the contract's paths.
    cm = out.of_kind("ConfigMap")[0]
    assert cm["immutable"] is True
    cfg = config_of(out)
    assert cfg.name == name
    # The pod trains the spec as admitted: nothing lost or renamed on the way.
    assert cfg.spec == parse_resource(body).spec
    assert cfg.runtime.storage_path == names.CHECKPOINT_MOUNT_DIR
    assert cfg.runtime.output_dir == f"{names.CHECKPOINT_MOUNT_DIR}/{name}/output"
    assert js["entrypoint"] == (
        f"whisperft train {names.CONFIG_MOUNT_DIR}/{names.FINETUNE_FILE_NAME} "
        f"--runtime {names.CONFIG_MOUNT_DIR}/{names.RUNTIME_FILE_NAME} --ray-address auto"
    )


def test_gpu_placement_comes_from_the_pool_table() -> None:
    out = render_case(CASES[1][1], 1)
    rayjob = out.of_kind("RayJob")[0]
    pod = rayjob["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]
    pool = Settings().node_pools["nvidia-a100-80gb"]
    assert pod["nodeSelector"] == {
        **pool.node_selector,
        "topology.kubernetes.io/zone": "us-central1-a",
    }
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    assert {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    limits = pod["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "4"
    head = rayjob["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    assert "nodeSelector" not in head and "tolerations" not in head
    cfg = config_of(out)
    assert cfg.runtime.workers == 8 and cfg.runtime.use_gpu
    assert cfg.runtime.data_path == f"{names.DATA_MOUNT_DIR}/cv-17/sw"
    assert (cfg.runtime.deepspeed.stage, cfg.runtime.deepspeed.offload_optimizer) == (3, True)


def test_cpu_workers_get_no_gpus_and_no_pool() -> None:
    out = render_case(CASES[2][1], 1)
    pod = out.of_kind("RayJob")[0]["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"][
        "spec"
    ]
    assert "nodeSelector" not in pod and "tolerations" not in pod
    assert not any("gpu" in k for k in pod["containers"][0]["resources"]["limits"])
    cfg = config_of(out)
    assert cfg.runtime.workers == 2 and not cfg.runtime.use_gpu


def test_unknown_accelerator_renders_nothing_and_names_the_pools() -> None:
    body = CASES[0][1] | {
        "spec": {**CASES[0][1]["spec"], "resources": {"accelerator": "nvidia-b200"}}
    }
    out = render_case(body, 1)
    assert out.children == []
    assert out.problem is not None and out.problem.reason.value == "UnknownAccelerator"
    assert "nvidia-b200" in out.problem.message and "nvidia-l4" in out.problem.message


def test_plan_that_cannot_fit_renders_nothing() -> None:
    spec = {
        **CASES[0][1]["spec"],
        "model": {"name": "openai/whisper-large-v3"},
        "training": {"maxSteps": 10, "batchSizePerWorker": 64},
    }
    out = render_case(CASES[0][1] | {"spec": spec}, 1)
    assert out.children == []
    assert out.problem is not None and out.problem.reason.value == "WillNotFit"
    assert "24 GiB" in out.problem.message and "gradientCheckpointing" in out.problem.message


def test_rendering_is_deterministic() -> None:
    a = to_yaml(render_case(CASES[1][1], 2).children)
    b = to_yaml(render_case(CASES[1][1], 2).children)
    assert a == b
