"""The checkpoint claim's access mode follows what the platform's StorageClasses
offer, and a run on a ReadWriteOnce claim is placed on one node or refused."""

from __future__ import annotations

from typing import Any

import pytest

from whisperft import names
from whisperft.operator.api.phase import Reason
from whisperft.operator.api.resource import parse_resource
from whisperft.operator.render.bundle import Rendered, render_attempt
from whisperft.operator.render.meta import Meta
from whisperft.operator.settings import Settings

pytestmark = pytest.mark.unit


def _l4(**pool: Any) -> dict[str, Any]:
    return {
        "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-L4"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "gpuMemoryGiB": 24,
        **pool,
    }


def _render(
    *,
    resources: dict[str, Any],
    checkpoints: dict[str, Any],
    settings: Settings | None = None,
    extra: dict[str, Any] | None = None,
) -> Rendered:
    body = {
        "apiVersion": names.API_VERSION,
        "kind": names.KIND,
        "metadata": {"name": "ft", "namespace": "ml", "uid": "u-1"},
        "spec": {
            "model": {"name": "bundled:tiny.en"},
            "dataset": {"path": "bundled:en"},
            "training": {"maxSteps": 10},
            "resources": resources,
            "checkpoints": checkpoints,
            **(extra or {}),
        },
    }
    spec = parse_resource(body).spec
    return render_attempt(spec, Meta("ft", "ml", "u-1"), settings or Settings(), 1)


def _pods(out: Rendered) -> dict[str, dict[str, Any]]:
    (job,) = out.of_kind("RayJob")
    cluster = job["spec"]["rayClusterSpec"]
    return {
        "head": cluster["headGroupSpec"]["template"]["spec"],
        "worker": cluster["workerGroupSpecs"][0]["template"]["spec"],
    }


def _claim_modes(out: Rendered) -> list[str]:
    (claim,) = out.of_kind("PersistentVolumeClaim")
    return list(claim["spec"]["accessModes"])


def test_default_class_gives_a_one_node_run_with_the_head_beside_the_workers() -> None:
    out = _render(resources={"accelerator": "nvidia-l4"}, checkpoints={"size": "10Gi"})
    assert out.problem is None and _claim_modes(out) == ["ReadWriteOnce"]
    pods = _pods(out)
    for role in ("head", "worker"):
        term = pods[role]["affinity"]["podAffinity"][
            "requiredDuringSchedulingIgnoredDuringExecution"
        ]
        assert term[0]["topologyKey"] == "kubernetes.io/hostname"
        assert term[0]["labelSelector"]["matchLabels"] == {
            names.LABEL_FINETUNE: "ft",
            names.LABEL_ATTEMPT: "1",
        }
    # the head can only share the workers' node if it may go to their pool
    assert pods["head"]["nodeSelector"] == pods["worker"]["nodeSelector"]
    assert pods["head"]["tolerations"] == pods["worker"]["tolerations"]
    assert "nvidia.com/gpu" not in pods["head"]["containers"][0]["resources"]["limits"]


def test_a_class_the_platform_lists_is_read_write_many_and_pods_spread() -> None:
    settings = Settings(readWriteManyStorageClasses=["standard-rwx"])
    out = _render(
        resources={"accelerator": "nvidia-l4", "workers": 4},
        checkpoints={"size": "10Gi", "storageClass": "standard-rwx"},
        settings=settings,
    )
    assert out.problem is None and _claim_modes(out) == ["ReadWriteMany"]
    pods = _pods(out)
    assert "affinity" not in pods["head"] and "affinity" not in pods["worker"]
    assert "nodeSelector" not in pods["head"]  # the head stays off the GPU nodes
    # "" names the cluster's default class
    out = _render(
        resources={"accelerator": "nvidia-l4", "workers": 4},
        checkpoints={"size": "10Gi"},
        settings=Settings(readWriteManyStorageClasses=[""]),
    )
    assert out.problem is None and _claim_modes(out) == ["ReadWriteMany"]


def test_more_gpus_than_one_node_has_on_a_read_write_once_claim_is_refused() -> None:
    out = _render(
        resources={"accelerator": "nvidia-l4", "workers": 4}, checkpoints={"size": "10Gi"}
    )
    assert out.problem is not None and out.problem.reason == Reason.PLAN_WILL_NOT_FIT
    msg = out.problem.message
    assert "ReadWriteOnce" in msg and "need 4 GPUs" in msg and "has 1" in msg
    assert "readWriteManyStorageClasses" in msg and "gpusPerNode" in msg
    assert out.children == []  # nothing is created, no GPU is requested
    # a pool of 4-GPU nodes holds the whole run on one node
    settings = Settings(nodePools={"nvidia-l4": _l4(gpusPerNode=4)})
    out = _render(
        resources={"accelerator": "nvidia-l4", "workers": 4},
        checkpoints={"size": "10Gi"},
        settings=settings,
    )
    assert out.problem is None and _claim_modes(out) == ["ReadWriteOnce"]
    out = _render(
        resources={"accelerator": "nvidia-l4", "workers": 3, "gpusPerWorker": 2},
        checkpoints={"size": "10Gi"},
        settings=settings,
    )
    assert out.problem is not None and "need 6 GPUs" in out.problem.message


def test_an_explicit_mode_is_honoured_and_read_write_once_pod_is_refused() -> None:
    out = _render(
        resources={"accelerator": "nvidia-l4", "workers": 4},
        checkpoints={"size": "10Gi", "accessMode": "ReadWriteMany"},
    )
    assert out.problem is None and _claim_modes(out) == ["ReadWriteMany"]
    out = _render(
        resources={"accelerator": "nvidia-l4"},
        checkpoints={"size": "10Gi", "accessMode": "ReadWriteOncePod"},
    )
    assert out.problem is not None and out.problem.reason == Reason.INVALID_SPEC
    assert "ReadWriteOncePod" in out.problem.message and "head" in out.problem.message


def test_a_brought_claim_is_used_as_it_is_unless_the_spec_says_read_write_once() -> None:
    out = _render(
        resources={"accelerator": "nvidia-l4", "workers": 2}, checkpoints={"claimName": "mine"}
    )
    assert out.problem is None and "affinity" not in _pods(out)["worker"]
    out = _render(
        resources={"accelerator": "nvidia-l4", "workers": 2},
        checkpoints={"claimName": "mine", "accessMode": "ReadWriteOnce"},
    )
    assert out.problem is not None and "need 2 GPUs" in out.problem.message


def test_cpu_workers_on_a_read_write_once_claim_share_a_node() -> None:
    out = _render(resources={"workers": 2}, checkpoints={"size": "10Gi"})
    assert out.problem is None and _claim_modes(out) == ["ReadWriteOnce"]
    pods = _pods(out)
    assert "podAffinity" in pods["head"]["affinity"] and "podAffinity" in pods["worker"]["affinity"]


def _runtime(out: Rendered) -> dict[str, Any]:
    import yaml

    (cm,) = out.of_kind("ConfigMap")
    return dict(yaml.safe_load(cm["data"][names.RUNTIME_FILE_NAME]))


def test_a_bucket_output_needs_no_shared_claim_and_workers_spread() -> None:
    bucket = {
        "output": {"location": "s3://models/sw-small"},
        "storageSecretRef": {"name": "s3-keys"},
    }
    out = _render(
        resources={"accelerator": "nvidia-l4", "workers": 4},
        checkpoints={"size": "10Gi"},
        extra=bucket,
    )
    # Refused without the bucket (4 GPUs, 1 per node, ReadWriteOnce); with it, planned.
    assert out.problem is None, out.problem
    assert _claim_modes(out) == ["ReadWriteOnce"]
    pods = _pods(out)
    assert "affinity" not in pods["head"] and "affinity" not in pods["worker"]
    head_vol = {v["name"]: v for v in pods["head"]["volumes"]}["checkpoints"]
    worker_vol = {v["name"]: v for v in pods["worker"]["volumes"]}["checkpoints"]
    assert head_vol["persistentVolumeClaim"]["claimName"] == "ft-checkpoints"
    assert worker_vol == {"name": "checkpoints", "emptyDir": {}}
    for role in ("head", "worker"):
        (c,) = pods[role]["containers"]
        assert c["envFrom"] == [{"secretRef": {"name": "s3-keys"}}]
        assert not any("SECRET" in e["name"] for e in c["env"])  # keys only via the Secret
    rt = _runtime(out)
    assert rt["outputUri"] == "s3://models/sw-small"
    assert rt["checkpointUri"] == "s3://models/sw-small/checkpoints/ft"
    assert rt["sharedScratch"] is False
    # A claim the platform says is ReadWriteMany stays shared by every pod.
    out = _render(
        resources={"accelerator": "nvidia-l4", "workers": 4},
        checkpoints={"size": "10Gi"},
        settings=Settings(readWriteManyStorageClasses=[""]),
        extra=bucket,
    )
    assert out.problem is None and _runtime(out)["sharedScratch"] is True
    worker_vol = {v["name"]: v for v in _pods(out)["worker"]["volumes"]}["checkpoints"]
    assert "persistentVolumeClaim" in worker_vol


@pytest.mark.parametrize(
    ("location", "named"),
    [
        ("/models/out", "is a local directory"),
        ("s3://Bad_Bucket/x", "not a valid bucket name"),
        ("gs://bkt/a/../b", "'..' is not allowed"),
    ],
)
def test_an_output_location_a_cluster_cannot_use_is_refused(location: str, named: str) -> None:
    out = _render(
        resources={"workers": 1},
        checkpoints={"size": "10Gi"},
        extra={"output": {"location": location}},
    )
    assert out.problem is not None and named in out.problem.message, out.problem
    assert "spec.output.location" in out.problem.message and out.children == []
