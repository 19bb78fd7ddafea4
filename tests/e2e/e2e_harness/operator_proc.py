"""The whisperft operator, run out of cluster as a real subprocess
(`whisperft operator run`) against the loopback control plane."""

from __future__ import annotations

import sys
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import yaml

from .cluster import ControlPlane
from .nodes import ACCELERATOR_LABEL, GPU_RESOURCE, POOLS
from .processes import Proc, free_port, wait_for

# Memory of one GPU per fake pool, for the operator's planner.
GPU_MEMORY_GIB = {"nvidia-l4": 24.0, "nvidia-a100-80gb": 80.0}
# In the operator's pool table, but no kwok node has it: such a fine-tune must
# stay unscheduled, never land on another pool.
NODELESS_ACCELERATOR = "nvidia-h100-80gb"
# In no pool table at all: the operator must refuse it with a condition.
UNKNOWN_ACCELERATOR = "nvidia-t4"


def e2e_settings(
    namespaces: Sequence[str], metrics_port: int, *, read_write_many: bool = True
) -> dict[str, object]:
    """Operator settings whose node-pool table selects the kwok pools, built
    with the operator's own model so the keys cannot drift."""
    from whisperft.operator.api.spec_resources import Toleration
    from whisperft.operator.settings import NodePool, Settings

    pools = {
        p.accelerator: NodePool(
            node_selector=p.node_selector,
            tolerations=[Toleration.model_validate(t) for t in p.tolerations],
            gpu_memory_gib=GPU_MEMORY_GIB[p.accelerator],
            gpus_per_node=p.gpus,
        )
        for p in POOLS
        if p.accelerator
    }
    pools[NODELESS_ACCELERATOR] = NodePool(
        node_selector={ACCELERATOR_LABEL: NODELESS_ACCELERATOR},
        tolerations=[Toleration(key=GPU_RESOURCE, operator="Exists", effect="NoSchedule")],
        gpu_memory_gib=80.0,
    )
    return Settings(
        node_pools=pools,
        trainer_image="registry.invalid/whisperft-trainer:e2e",
        namespaces=list(namespaces),
        metrics_port=metrics_port,
        sync_interval_seconds=1.0,
        # This platform says its default class offers ReadWriteMany, so the
        # scenarios see workers spread over nodes; test_e2e_15 runs without it.
        read_write_many_storage_classes=[""] if read_write_many else [],
    ).to_wire()


class OperatorProcess:
    """One operator process; `restart()` and `kill()` for the resilience tests."""

    def __init__(
        self,
        cluster: ControlPlane,
        name: str,
        namespaces: Sequence[str],
        *,
        kubeconfig: Path | None = None,
        settings: dict[str, object] | None = None,
        run_args: Sequence[str] | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        """`run_args` replaces the default `operator run` arguments (the chart
        scenario passes the Deployment's own); `--liveness` is always moved to
        a free loopback port."""
        self.cluster = cluster
        self.liveness_port = free_port()
        self.metrics_port = free_port()
        self.workdir = cluster.workdir / "operators" / name
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = {
            "KUBECONFIG": str(kubeconfig or cluster.kubeconfig),
            "PYTHONUNBUFFERED": "1",
            "WHISPERFT_METRICS_PORT": str(self.metrics_port),
        }
        if run_args is None:
            settings_file = self.workdir / "settings.yaml"
            settings_file.write_text(
                yaml.safe_dump(settings or e2e_settings(namespaces, self.metrics_port))
            )
            env["WHISPERFT_SETTINGS_FILE"] = str(settings_file)
            run_args = [
                *[f"--namespace={ns}" for ns in namespaces],
                "--log-format=plain",
                "--verbose",
            ]
        run_args = [a for a in run_args if not a.startswith("--liveness")]
        argv = [
            sys.executable, "-m", "whisperft.cli", "operator", "run", *run_args,
            f"--liveness=http://127.0.0.1:{self.liveness_port}/healthz",
        ]  # fmt: skip
        env.update(extra_env or {})
        self.proc = Proc(
            f"operator-{name}", argv, cluster.log_dir / f"operator-{name}.log", env=env
        )
        cluster.procs[self.proc.name] = self.proc  # torn down and log-tailed with the cluster

    def start(self, timeout: float = 90) -> OperatorProcess:
        self.proc.start()
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 90) -> None:
        def live() -> bool:
            self.proc.check_alive()
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.liveness_port}/healthz", timeout=2
            ) as r:
                return bool(r.status == 200)

        wait_for(f"{self.proc.name} liveness", live, timeout)

    def restart(self) -> None:
        self.proc.restart()
        self.wait_ready()

    def kill(self) -> None:
        self.proc.kill()

    def stop(self) -> None:
        self.proc.stop()

    def log(self) -> str:
        return self.proc.log_path.read_text(errors="replace")

    def metrics(self) -> str:
        """The Prometheus exposition the operator serves on its metrics port."""
        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5
        ) as r:
            return str(r.read().decode())
