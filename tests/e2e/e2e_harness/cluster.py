"""Start and stop a real control plane on loopback: etcd, kube-apiserver
(RBAC, PodSecurity, service-account signing), kube-controller-manager,
kube-scheduler, kwok with fake GPU node pools, and the KubeRay operator."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .access import b64, insecure_get, kubeconfig_dict
from .audit import read_audit_events, write_audit_policy
from .certs import Pki, make_pki
from .nodes import node_manifests
from .processes import Proc, free_port, wait_for

REPO = Path(__file__).resolve().parents[3]
BUILD_SH = REPO / "hack" / "controlplane" / "build.sh"
SERVICE_CIDR = "10.0.0.0/24"
START_TIMEOUT = float(os.environ.get("WHISPERFT_E2E_START_TIMEOUT", "180"))

# kwok stage files (relative to the extracted kustomize/stage dir): nodes
# become Ready and heartbeat through leases, pods become Running, and claims of
# the `kwok-volume` StorageClass get bound to a fake volume, since the
# scheduler will not place a pod whose claim is unbound.
# pod-complete is left out on purpose: it would finish KubeRay's submitter Job
# at once, and KubeRay 1.6 then fails the RayJob 30 s later because the (absent)
# dashboard never reports the Ray job. Without it the job "runs" until a test
# writes the RayJob's final status itself.
KWOK_STAGES = (
    "node/fast/node-initialize.yaml",
    "node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    "pod/fast/pod-ready.yaml",
    "pod/fast/pod-delete.yaml",
    "volume/fast/pvc-provision.yaml",
    "volume/fast/pv-bind.yaml",
    "volume/fast/pvc-delete.yaml",
    "volume/fast/pv-delete.yaml",
)
# The default StorageClass those stages serve.
KWOK_STORAGE_CLASS = "volume/fast/storage-class.yaml"


def controlplane_dir() -> Path:
    """The versioned cache dir build.sh fills (bin/ and assets/)."""
    out = subprocess.run(
        ["bash", str(BUILD_SH), "--print-dir"], check=True, capture_output=True, text=True
    )
    return Path(out.stdout.strip())


@dataclass
class ControlPlane:
    workdir: Path
    bin_dir: Path
    assets_dir: Path
    pki: Pki = field(init=False)
    procs: dict[str, Proc] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def log_dir(self) -> Path:
        return self.workdir / "logs"

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "admin.kubeconfig"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports['apiserver']}"

    def env(self) -> dict[str, str]:
        """Environment for CLI tools pointed at this cluster only."""
        return {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "HELM_CACHE_HOME": str(self.workdir / "helm" / "cache"),
            "HELM_CONFIG_HOME": str(self.workdir / "helm" / "config"),
            "HELM_DATA_HOME": str(self.workdir / "helm" / "data"),
            "PATH": f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        }

    # ---- lifecycle -------------------------------------------------------
    def start(self) -> None:
        """Start everything and wait until it is ready; on any failure, stop
        what was started (no orphans) and re-raise."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.pki = make_pki(self.workdir / "pki")
        for name in (
            "etcd",
            "etcd-peer",
            "apiserver",
            "kcm",
            "scheduler",
            "kwok",
            "kuberay-metrics",
            "kuberay-probe",
        ):
            self.ports[name] = free_port()
        self._start_etcd()
        self._start_apiserver()
        self.kubeconfig.write_text(
            yaml.safe_dump(
                kubeconfig_dict(
                    self.server,
                    self.pki.ca_cert,
                    {
                        "client-certificate-data": b64(self.pki.admin_cert),
                        "client-key-data": b64(self.pki.admin_key),
                    },
                )
            )
        )
        self._start_controller_manager()
        self._start_scheduler()
        self._start_kwok()
        self.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(node_manifests()))
        self.kubectl("apply", "-f", str(self.assets_dir / "kwok-stages" / KWOK_STORAGE_CLASS))
        self._install_kuberay_crds()
        self._start_kuberay()
        self._wait_ready()

    def stop(self) -> None:
        # Reverse order: clients first, etcd last.
        for name in reversed(list(self.procs)):
            self.procs[name].stop()

    def check_alive(self) -> None:
        for p in self.procs.values():
            p.check_alive()

    def log_tails(self, lines: int = 15, width: int = 400) -> str:
        def clip(text: str) -> str:
            return "\n".join(
                line[:width] + (" ..." if len(line) > width else "") for line in text.splitlines()
            )

        return "\n".join(
            f"----- {name} ({p.log_path}) -----\n{clip(p.tail(lines))}"
            for name, p in self.procs.items()
        )

    def _proc(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> Proc:
        p = Proc(name, list(argv), self.log_dir / f"{name}.log", env=env).start()
        self.procs[name] = p
        return p

    def _bin(self, name: str) -> str:
        path = self.bin_dir / name
        if not path.exists():
            raise FileNotFoundError(f"{path} missing: run `bash {BUILD_SH}` (make controlplane)")
        return str(path)

    # ---- components ------------------------------------------------------
    def _start_etcd(self) -> None:
        c, p = self.ports["etcd"], self.ports["etcd-peer"]
        self._proc(
            "etcd",
            [
                self._bin("etcd"),
                "--name=e2e",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{c}",
                f"--advertise-client-urls=http://127.0.0.1:{c}",
                f"--listen-peer-urls=http://127.0.0.1:{p}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{p}",
                f"--initial-cluster=e2e=http://127.0.0.1:{p}",
                "--unsafe-no-fsync=true",  # throwaway data; fsync dominates on a shared disk
                "--log-level=warn",
            ],
        )
        wait_for("etcd /health", lambda: self._etcd_healthy(), START_TIMEOUT)

    def _etcd_healthy(self) -> bool:
        self.procs["etcd"].check_alive()
        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.ports['etcd']}/health", timeout=2
        ) as r:
            return bool(json.loads(r.read()).get("health") == "true")

    def apiserver_argv(self) -> list[str]:
        port = self.ports["apiserver"]
        return [
            self._bin("kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{self.ports['etcd']}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={port}",
            f"--cert-dir={self.workdir / 'apiserver-certs'}",
            f"--tls-cert-file={self.pki.server_cert}",
            f"--tls-private-key-file={self.pki.server_key}",
            f"--client-ca-file={self.pki.ca_cert}",
            f"--service-account-issuer=https://127.0.0.1:{port}",
            f"--service-account-key-file={self.pki.sa_pub}",
            f"--service-account-signing-key-file={self.pki.sa_key}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=RBAC",
            # PodSecurity is on by default; named so a default change cannot drop it.
            # OwnerReferencesPermissionEnforcement (on in OpenShift and hardened
            # clusters) makes blockOwnerDeletion need update on the owner's finalizers.
            "--enable-admission-plugins=PodSecurity,ServiceAccount,NamespaceLifecycle,OwnerReferencesPermissionEnforcement",
            # Front-proxy CA published for the controller-manager and scheduler
            # (otherwise they log a missing-CA error every minute).
            f"--requestheader-client-ca-file={self.pki.ca_cert}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            "--endpoint-reconciler-type=none",
            "--allow-privileged=false",
            "--profiling=false",
            # Requests made by service accounts are audited, so tests can prove
            # what the chart's RBAC lets the operator do and what it used.
            f"--audit-policy-file={write_audit_policy(self.workdir / 'audit-policy.yaml')}",
            f"--audit-log-path={self.audit_log}",
            "--audit-log-format=json",
            "--audit-log-mode=batch",
            "--audit-log-batch-max-wait=1s",
            "--v=1",
        ]

    @property
    def audit_log(self) -> Path:
        return self.log_dir / "audit.jsonl"

    def audit_events(self, username: str) -> list[dict[str, Any]]:
        """Audit events of one user, e.g. system:serviceaccount:ns:name."""
        return read_audit_events(self.audit_log, username)

    def _start_apiserver(self) -> None:
        self._proc("kube-apiserver", self.apiserver_argv())
        self.wait_apiserver()

    def wait_apiserver(self, timeout: float = START_TIMEOUT) -> None:
        cert = (self.pki.admin_cert, self.pki.admin_key)

        def ready() -> bool:
            self.procs["kube-apiserver"].check_alive()
            return insecure_get(f"{self.server}/readyz", cert)[0] == 200

        wait_for("kube-apiserver /readyz", ready, timeout)

    def restart_apiserver(self) -> None:
        self.procs["kube-apiserver"].restart()
        self.wait_apiserver()

    def _component_flags(self, name: str, port: int) -> list[str]:
        kc = str(self.kubeconfig)
        return [
            f"--kubeconfig={kc}",
            f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            f"--cert-dir={self.workdir / (name + '-certs')}",
            "--v=1",
        ]

    def _start_controller_manager(self) -> None:
        self._proc(
            "kube-controller-manager",
            [
                self._bin("kube-controller-manager"),
                *self._component_flags("kcm", self.ports["kcm"]),
                f"--service-account-private-key-file={self.pki.sa_key}",
                f"--root-ca-file={self.pki.ca_cert}",
                "--use-service-account-credentials=true",
                "--controllers=*",
                "--cluster-name=whisperft-e2e",
                # Faster GC and namespace cleanup than production defaults.
                "--concurrent-gc-syncs=10",
            ],
        )

    def _start_scheduler(self) -> None:
        self._proc(
            "kube-scheduler",
            [
                self._bin("kube-scheduler"),
                *self._component_flags("scheduler", self.ports["scheduler"]),
            ],
        )

    def _start_kwok(self) -> None:
        stages = self.assets_dir / "kwok-stages"
        configs = [f"--config={stages / s}" for s in KWOK_STAGES]
        for s in KWOK_STAGES:
            if not (stages / s).exists():
                raise FileNotFoundError(
                    f"kwok stage {stages / s} missing: run `bash {BUILD_SH} kwok`"
                )
        self._proc(
            "kwok",
            [
                self._bin("kwok"),
                f"--kubeconfig={self.kubeconfig}",
                *configs,
                "--manage-all-nodes=false",
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                "--cidr=10.1.0.0/16",
                "--node-ip=10.0.0.1",
                "--node-lease-duration-seconds=40",
                f"--server-address=127.0.0.1:{self.ports['kwok']}",
            ],
        )

    def _install_kuberay_crds(self) -> None:
        crd_dir = self.assets_dir / "kuberay-crds"
        if not crd_dir.is_dir():
            raise FileNotFoundError(f"{crd_dir} missing: run `bash {BUILD_SH} kuberay`")
        # Too large for client-side apply's last-applied annotation.
        self.apply_crds(sorted(crd_dir.glob("*.yaml")))

    def apply_crds(self, files: Sequence[Path]) -> None:
        """Server-side apply CRDs and wait until each is Established (polling:
        `kubectl wait` errors out when it looks before status exists)."""
        for f in files:
            self.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(f))
        crd_names = [yaml.safe_load(f.read_text())["metadata"]["name"] for f in files]

        def established() -> bool:
            got = json.loads(self.kubectl("get", "crd", *crd_names, "-o", "json").stdout)
            out = got.get("items", [got])  # one name: the object itself, not a List
            return all(
                any(
                    c["type"] == "Established" and c["status"] == "True"
                    for c in crd.get("status", {}).get("conditions") or []
                )
                for crd in out
            )

        self.wait_until(f"CRDs {', '.join(crd_names)} Established", established, timeout=60)

    def _start_kuberay(self) -> None:
        self._proc(
            "kuberay-operator",
            [
                self._bin("ray-operator"),
                f"--metrics-addr=127.0.0.1:{self.ports['kuberay-metrics']}",
                f"--health-probe-bind-address=127.0.0.1:{self.ports['kuberay-probe']}",
                "--enable-leader-election=false",
            ],
            env={"KUBECONFIG": str(self.kubeconfig)},
        )

    def _wait_ready(self) -> None:
        def http_ok(url: str) -> bool:
            self.check_alive()
            return insecure_get(url)[0] == 200

        wait_for(
            "kube-scheduler /healthz",
            lambda: http_ok(f"https://127.0.0.1:{self.ports['scheduler']}/healthz"),
            START_TIMEOUT,
        )
        wait_for(
            "kube-controller-manager /healthz",
            lambda: http_ok(f"https://127.0.0.1:{self.ports['kcm']}/healthz"),
            START_TIMEOUT,
        )
        wait_for(
            "KubeRay /readyz",
            lambda: http_ok(f"http://127.0.0.1:{self.ports['kuberay-probe']}/readyz"),
            START_TIMEOUT,
        )
        n = len(node_manifests())
        wait_for(f"{n} kwok nodes Ready", lambda: self._ready_nodes() == n, START_TIMEOUT)
        # The service-account controller runs: namespaces get their default SA.
        wait_for(
            "default ServiceAccount",
            lambda: (
                self.kubectl(
                    "get", "serviceaccount", "default", "-n", "default", check=False
                ).returncode
                == 0
            ),
            START_TIMEOUT,
        )

    def _ready_nodes(self) -> int:
        self.check_alive()
        nodes = json.loads(self.kubectl("get", "nodes", "-o", "json").stdout)["items"]
        return sum(
            1
            for node in nodes
            if any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in node.get("status", {}).get("conditions", [])
            )
        )

    # ---- tools -----------------------------------------------------------
    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return self._run(
            [self._bin("kubectl"), f"--kubeconfig={self.kubeconfig}", *args], input, check, timeout
        )

    def helm(
        self, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return self._run(
            [self._bin("helm"), f"--kubeconfig={self.kubeconfig}", *args], None, check, timeout
        )

    def _run(
        self, argv: list[str], input: str | None, check: bool, timeout: float
    ) -> subprocess.CompletedProcess[str]:
        out = subprocess.run(
            argv, input=input, capture_output=True, text=True, env=self.env(), timeout=timeout
        )
        if check and out.returncode != 0:
            raise RuntimeError(
                f"{' '.join(argv[:1] + argv[2:])} failed ({out.returncode}):\n{out.stderr}{out.stdout}"
            )
        return out

    def service_account_kubeconfig(
        self, namespace: str, name: str, path: Path, duration: str = "2h"
    ) -> Path:
        """A kubeconfig that authenticates as a ServiceAccount via a TokenRequest
        token: what an in-cluster pod of that account would be allowed to do."""
        token = self.kubectl(
            "create", "token", name, "-n", namespace, f"--duration={duration}"
        ).stdout.strip()
        path.write_text(
            yaml.safe_dump(
                kubeconfig_dict(self.server, self.pki.ca_cert, {"token": token}, name=name)
            )
        )
        return path

    def wait_until(self, what: str, check: Any, timeout: float = 60, interval: float = 0.5) -> None:
        """wait_for that also fails fast when a control-plane process died."""

        def guarded() -> bool:
            self.check_alive()
            return bool(check())

        wait_for(what, guarded, timeout, interval)
