"""The fake node pools kwok runs: one CPU pool and two GPU pools.

GPU nodes carry both label conventions a node-pool table may select on: GKE's
(node-pool name, accelerator type) and NVIDIA GPU feature discovery's
(`nvidia.com/gpu.product`), so the operator's and the chart's default pool
tables both match them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

KWOK_ANNOTATION = "kwok.x-k8s.io/node"
POOL_LABEL = "cloud.google.com/gke-nodepool"
ACCELERATOR_LABEL = "cloud.google.com/gke-accelerator"
GPU_RESOURCE = "nvidia.com/gpu"
PRODUCT_LABEL = "nvidia.com/gpu.product"


@dataclass(frozen=True)
class Pool:
    name: str
    nodes: int
    cpu: str
    memory: str
    gpus: int = 0
    accelerator: str | None = None
    product: str | None = None

    @property
    def node_selector(self) -> dict[str, str]:
        sel = {POOL_LABEL: self.name}
        if self.accelerator:
            sel[ACCELERATOR_LABEL] = self.accelerator
        return sel

    @property
    def taints(self) -> list[dict[str, str]]:
        return (
            [{"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"}] if self.gpus else []
        )

    @property
    def tolerations(self) -> list[dict[str, str]]:
        return (
            [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]
            if self.gpus
            else []
        )


POOLS: tuple[Pool, ...] = (
    Pool("cpu", nodes=1, cpu="32", memory="128Gi"),
    Pool(
        "gpu-l4",
        nodes=2,
        cpu="48",
        memory="192Gi",
        gpus=4,
        accelerator="nvidia-l4",
        product="NVIDIA-L4",
    ),
    Pool(
        "gpu-a100",
        nodes=1,
        cpu="96",
        memory="1024Gi",
        gpus=8,
        accelerator="nvidia-a100-80gb",
        product="NVIDIA-A100-SXM4-80GB",
    ),
)


def pool(name: str) -> Pool:
    return next(p for p in POOLS if p.name == name)


def node_manifests() -> list[dict[str, Any]]:
    """Node objects that kwok adopts (by annotation) and keeps Ready."""
    out: list[dict[str, Any]] = []
    for p in POOLS:
        for i in range(p.nodes):
            # Node disk as real nodes report it: the Ray workers request room to stage
            # a checkpoint in /tmp (operator/render/pods.staging_size).
            resources = {
                "cpu": p.cpu,
                "memory": p.memory,
                "pods": "110",
                "ephemeral-storage": "200Gi",
            }
            if p.gpus:
                resources[GPU_RESOURCE] = str(p.gpus)
            out.append(
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {
                        "name": f"{p.name}-{i}",
                        "annotations": {KWOK_ANNOTATION: "fake"},
                        "labels": {
                            **p.node_selector,
                            **({PRODUCT_LABEL: p.product} if p.product else {}),
                            "type": "kwok",
                            "kubernetes.io/hostname": f"{p.name}-{i}",
                            "kubernetes.io/os": "linux",
                            "kubernetes.io/arch": "amd64",
                        },
                    },
                    "spec": {"taints": p.taints} if p.taints else {},
                    "status": {"capacity": resources, "allocatable": resources},
                }
            )
    return out
