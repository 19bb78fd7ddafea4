"""Run a rendered RayJob for real on this machine, as its pods would run it.

kwok's pods run nothing, so this plays the kubelet and KubeRay for one RayJob:
in a private mount namespace (`unshare -m`, root only) the volumes the head's
pod spec names are mounted at the paths it names (the ConfigMap's keys as
files, a directory as the claim, fresh directories for emptyDirs); a Ray head
and one Ray node per worker replica start with the rendered rayStartParams and
the CPU counts KubeRay derives from the containers' limits; the rendered
entrypoint runs on the head as the driver, as KubeRay's submitter has it run; the
env is the rendered container env plus a kubeconfig standing in for the
mounted ServiceAccount token. Nothing here reads the operator's Python: only
what it wrote to the API server.
"""

from __future__ import annotations

import contextlib
import math
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Inside the sandbox, under its own /tmp (an emptyDir), as a mounted token would be.
KUBECONFIG_IN_SANDBOX = "/tmp/.kube/config"


class SandboxError(RuntimeError):
    pass


@dataclass(frozen=True)
class Mount:
    source: Path
    target: str
    read_only: bool


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpus(limit: str) -> int:
    """`--num-cpus` from a container's CPU limit, rounded up as KubeRay does."""
    value = float(limit[:-1]) / 1000 if limit.endswith("m") else float(limit)
    return max(1, math.ceil(value))


def _group_pod(rayjob: Mapping[str, Any], group: str) -> dict[str, Any]:
    cluster = rayjob["spec"]["rayClusterSpec"]
    spec = cluster["headGroupSpec"] if group == "head" else cluster["workerGroupSpecs"][0]
    return dict(spec)


def mounts(
    pod: Mapping[str, Any], config_maps: Mapping[str, Mapping[str, str]], claims: Mapping[str, Path],
    scratch: Path,
) -> list[Mount]:  # fmt: skip
    """The container's volume mounts, resolved to host directories. An unknown
    volume kind fails: the sandbox must not silently run without it."""
    spec = pod["template"]["spec"]
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    out: list[Mount] = []
    for vm in spec["containers"][0].get("volumeMounts", []):
        vol = volumes[vm["name"]]
        target, ro = vm["mountPath"], bool(vm.get("readOnly"))
        if "persistentVolumeClaim" in vol:
            claim = vol["persistentVolumeClaim"]["claimName"]
            if claim not in claims:
                raise SandboxError(f"volume {vm['name']}: no directory for claim {claim}")
            out.append(Mount(claims[claim], target, ro))
        elif "configMap" in vol:
            cm = vol["configMap"]["name"]
            if cm not in config_maps:
                raise SandboxError(f"volume {vm['name']}: ConfigMap {cm} not given")
            d = scratch / "configmaps" / cm
            d.mkdir(parents=True, exist_ok=True)
            for key, text in config_maps[cm].items():
                (d / key).write_text(text)
            out.append(Mount(d, target, True))
        elif "emptyDir" in vol:
            if vol["emptyDir"].get("medium") == "Memory" and target == "/dev/shm":
                continue  # the host's /dev/shm is memory already, and Ray's object store needs it
            d = scratch / "emptydirs" / vm["name"]
            d.mkdir(parents=True, exist_ok=True)
            out.append(Mount(d, target, ro))
        else:
            raise SandboxError(f"volume {vm['name']}: kind {sorted(vol)} not supported")
    return out


def _field(pod: Mapping[str, Any], path: str) -> str:
    """A fieldRef (metadata.name, metadata.labels['k'], status.podIP) of a pod; loopback
    stands in for the pod's addresses, which are this machine's here."""
    if path.startswith("status.") and path.endswith("IP"):
        return "127.0.0.1"
    dotted, _, key = path.partition("['")
    parts = dotted.split(".") + ([key.removesuffix("']")] if key else [])
    value: Any = pod
    for part in parts:
        value = (value or {}).get(part)
    if value is None:
        raise SandboxError(f"fieldRef {path}: not set on the pod")
    return str(value)


def container_env(
    container: Mapping[str, Any],
    secrets: Mapping[str, Mapping[str, str]] | None = None,
    pod: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """A container's env as the kubelet resolves it: literals, secretKeyRefs from
    `secrets` (name -> decoded data), fieldRefs from `pod`. Anything else fails
    rather than being dropped."""
    env: dict[str, str] = {}
    for e in container.get("env", []):
        source = e.get("valueFrom") or {}
        if "value" in e or not source:
            env[e["name"]] = str(e.get("value", ""))
        elif "secretKeyRef" in source and secrets and source["secretKeyRef"]["name"] in secrets:
            ref = source["secretKeyRef"]
            env[e["name"]] = secrets[ref["name"]][ref["key"]]
        elif "fieldRef" in source and pod is not None:
            env[e["name"]] = _field(pod, source["fieldRef"]["fieldPath"])
        else:
            raise SandboxError(f"env {e['name']}: cannot resolve {source}")
    return env


def _start_params(group: Mapping[str, Any], limits: Mapping[str, str]) -> list[str]:
    """The group's rayStartParams; `--num-cpus` from the CPU limit unless they set it
    (KubeRay does the same)."""
    params = dict(group.get("rayStartParams") or {})
    params.setdefault("num-cpus", str(cpus(limits["cpu"])))
    return [f"--{k}={v}" for k, v in params.items()]


def script(
    rayjob: Mapping[str, Any], mount_list: list[Mount], bin_dir: Path, keep: Sequence[Path] = ()
) -> str:
    """The shell program run inside the private mount namespace."""
    head, worker = _group_pod(rayjob, "head"), _group_pod(rayjob, "worker")
    head_limits = head["template"]["spec"]["containers"][0]["resources"]["limits"]
    worker_limits = worker["template"]["spec"]["containers"][0]["resources"]["limits"]
    port, dash = free_port(), free_port()
    head_cmd = [
        "ray", "start", "--head", f"--port={port}", f"--dashboard-port={dash}",
        "--disable-usage-stats", *_start_params(head, head_limits),
    ]  # fmt: skip
    worker_cmd = [
        "ray", "start", f"--address=127.0.0.1:{port}", "--disable-usage-stats",
        *_start_params(worker, worker_limits),
    ]  # fmt: skip
    # The driver runs on the head, as the job supervisor would start it there
    # (`ray job submit` itself needs the dashboard, which ray[train] lacks).
    driver = ["bash", "-c", rayjob["spec"]["entrypoint"]]
    q = shlex.join
    lines = ["set -euo pipefail", f"export PATH={shlex.quote(str(bin_dir))}:$PATH"]
    # The claim and the ConfigMap first: their sources may live under /tmp, which an
    # emptyDir then covers.
    for m in sorted(mount_list, key=lambda m: m.target == "/tmp"):
        lines.append(f"mkdir -p {shlex.quote(m.target)}")
        # What this machine runs from (the checkout, the venv) may live under a path a
        # volume covers (a clone in /tmp): carry it into the volume at the same path.
        for k in keep:
            if k.is_relative_to(m.target) and m.target != "/":
                inner = m.source / k.relative_to(m.target)
                lines.append(f"mkdir -p {shlex.quote(str(inner))}")
                lines.append(f"mount --bind {shlex.quote(str(k))} {shlex.quote(str(inner))}")
        lines.append(f"mount --rbind {shlex.quote(str(m.source))} {shlex.quote(m.target)}")
        if m.read_only:
            lines.append(f"mount -o remount,bind,ro {shlex.quote(m.target)}")
    lines += [
        f"mkdir -p {shlex.quote(os.path.dirname(KUBECONFIG_IN_SANDBOX))}",
        f'printf %s "$SANDBOX_KUBECONFIG" > {KUBECONFIG_IN_SANDBOX}',
        f"export KUBECONFIG={KUBECONFIG_IN_SANDBOX}",
        "trap 'ray stop --force >/dev/null 2>&1 || true' EXIT",
        q(head_cmd),
    ]
    # A temp dir per worker node, as each pod has its own /tmp: two nodes sharing one
    # session directory each forward every process's output, so all lines came twice.
    lines += [
        q([*worker_cmd, f"--temp-dir=/tmp/ray-worker-{i}"])
        for i in range(int(worker.get("replicas", 1)))
    ]
    lines.append(q(driver))
    return "\n".join(lines) + "\n"


def run(
    rayjob: Mapping[str, Any],
    config_maps: Mapping[str, Mapping[str, str]],
    claims: Mapping[str, Path],
    kubeconfig: str,
    scratch: Path,
    bin_dir: Path,
    timeout: float,
    pod_env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the RayJob's entrypoint to completion; the caller checks returncode.

    `pod_env` replaces the rendered template's literal env (the test adds KubeRay's
    Ray auth token to it)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        raise SandboxError(
            "the pod sandbox needs root and unshare(1) for a private mount namespace"
        )
    head = _group_pod(rayjob, "head")
    mount_list = mounts(head, config_maps, claims, scratch)
    made = [m.target for m in mount_list if not os.path.exists(m.target)]
    home = scratch / "home"
    home.mkdir(parents=True, exist_ok=True)
    program = scratch / "pod.sh"
    import whisperft

    keep = [Path(whisperft.__file__).resolve().parents[1], Path(sys.prefix).resolve()]
    program.write_text(script(rayjob, mount_list, bin_dir, keep))
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        # A home of its own: Ray would otherwise pick up ~/.ray/auth_token of local runs.
        "HOME": str(home),
        **{k: v for k, v in os.environ.items() if k.startswith(("HF_", "TRANSFORMERS_"))},
        **(
            pod_env
            if pod_env is not None
            else container_env(head["template"]["spec"]["containers"][0])
        ),
        "SANDBOX_KUBECONFIG": kubeconfig,
    }
    # Its own session, so that whatever Ray leaves behind on a timeout is killed with it.
    proc = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "bash", str(program)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, "")
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise SandboxError(
            f"the pod did not finish within {timeout:.0f} s:\n{out[-6000:]}"
        ) from None
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        for target in made:  # empty on the host: the mounts were private
            with contextlib.suppress(OSError):
                os.rmdir(target)
