"""Scenario 16: a highly available operator (issue 15).

- Two replicas installed by the chart with `peering.enabled`, run out of
  cluster exactly as its Deployment says (args, env, settings, the chart's
  ServiceAccount token), peered through the chart's KopfPeering: a `helm
  upgrade` rolled like a RollingUpdate (new replica first, old ones stopped)
  and then a SIGKILL of the active replica, while fine-tunes are under way and
  one of them fails and is retried: every fine-tune ends with exactly one
  RayJob per attempt (none recreated, none lost) and progresses; nothing the
  chart's RBAC does not grant is asked for.
- The watch survives an API-server outage longer than Kopf's backoff, and a
  RayJob deleted during it (through a second API server on the same etcd, so
  the operator cannot see it) is noticed after the re-list that follows
  (the watch's resourceVersion is gone: 410), not kept as a stale index entry.
- `whisperft operator remove-finalizers` refuses while an operator runs, and
  after an uninstall unsticks a namespace being deleted with fine-tunes in it.
"""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from e2e_harness.access import insecure_get
from e2e_harness.cluster import ControlPlane
from e2e_harness.kube import Kube, phase
from e2e_harness.nodes import POOLS
from e2e_harness.operator_proc import OperatorProcess
from e2e_harness.processes import Proc, free_port, wait_for
from e2e_harness.resources import CHART, dump, finetune

from whisperft import names
from whisperft.operator.render.meta import rayjob_name

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

RELEASE = "ha"
TRAINER_REPO = "registry.invalid/e2e/whisperft-trainer"
LIFETIME = 15  # peering.lifetimeSeconds: a crashed active replica pauses the others this long
# Kopf's own default retries, all together (1+1+2+3+5+8+13+21 s): the outage is
# longer than that; handlers/startup.py ERROR_BACKOFFS waits much longer.
KOPF_BACKOFF_TOTAL = sum((1, 1, 2, 3, 5, 8, 13, 21))


def _values(tmp: Path) -> Path:
    pools = [
        {
            "accelerator": p.accelerator,
            "nodeSelector": p.node_selector,
            "tolerations": p.tolerations,
            "gpuMemoryGiB": 24 if p.gpus == 4 else 80,
            "gpusPerNode": p.gpus,
        }
        for p in POOLS
        if p.accelerator
    ]
    path = tmp / "values.json"
    values = {
        "nodePools": pools,
        "trainer": {"image": {"repository": TRAINER_REPO, "tag": "e2e"}},
        "peering": {"enabled": True, "lifetimeSeconds": LIFETIME},
        "operator": {"syncIntervalSeconds": 2},
        # As the other scenarios: the default class is ReadWriteMany here, so a
        # run's pods need not share one node.
        "readWriteManyStorageClasses": [""],
    }
    path.write_text(json.dumps(values))
    return path


def _replica(
    cluster: ControlPlane, kube: Kube, ns: str, workdir: Path, pod: str
) -> tuple[list[str], dict[str, str], str]:
    """One pod of the chart's Deployment as a process: its args, its env (the
    downward API's pod name is `pod`) and its settings ConfigMap on disk."""
    (deploy,) = kube.items("deployments", ns, f"{names.LABEL_INSTANCE}={RELEASE}")
    spec = deploy["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    mounts: dict[str, Path] = {}
    for m in container.get("volumeMounts", []):
        vol = volumes[m["name"]]
        if "configMap" in vol:
            cm = kube.get("configmap", ns, vol["configMap"]["name"])
            assert cm is not None
            local = workdir / pod / m["name"]
            local.mkdir(parents=True, exist_ok=True)
            for key, text in cm.get("data", {}).items():
                (local / key).write_text(text)
            mounts[m["mountPath"]] = local

    def rewrite(value: str) -> str:
        for mount, local in mounts.items():
            value = value.replace(mount, str(local))
        return value

    env: dict[str, str] = {}
    for e in container.get("env", []):
        field = e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
        if "value" in e:
            env[e["name"]] = rewrite(e["value"])
        elif field == "metadata.namespace":
            env[e["name"]] = ns
        elif field == "metadata.name":
            env[e["name"]] = pod
    return [rewrite(a) for a in container["args"]], env, spec["serviceAccountName"]


def _peers(kube: Kube, ns: str, peering: str) -> dict[str, dict[str, Any]]:
    obj = kube.get("kopfpeerings.kopf.dev", ns, peering) or {}
    return dict(obj.get("status") or {})


def _serving(op: OperatorProcess) -> bool:
    """Whether the replica's last peering decision (since its last start) was to work."""
    log = op.log().rsplit("===== start", 1)[-1]
    resumed, paused = log.rfind("Resuming operations"), log.rfind("Pausing operations")
    return resumed > paused


class RayJobUids:
    """Every uid each RayJob name of a namespace had, polled in the background:
    a RayJob deleted and created again by a second replica shows as two."""

    def __init__(self, kube: Kube, ns: str) -> None:
        self.kube, self.ns = kube, ns
        self.seen: dict[str, set[str]] = defaultdict(set)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                out: Any = self.kube.custom.list_namespaced_custom_object(
                    "ray.io", "v1", self.ns, "rayjobs"
                )
                for item in out["items"]:
                    self.seen[item["metadata"]["name"]].add(item["metadata"]["uid"])
            except Exception:
                pass  # a restarting component; the next poll sees it
            self._stop.wait(0.3)

    def stop(self) -> dict[str, set[str]]:
        self._stop.set()
        self._thread.join(10)
        return dict(self.seen)


def _in_phase(kube: Kube, ns: str, name: str, *want: str) -> bool:
    return phase(kube.wft(ns, name)) in want


# An attempt under way: its RayJob exists and the phase follows it. (Running
# needs KubeRay to see the Ray pods up; the scenarios do not depend on it.)
LIVE = ("Pending", "Running")


def _remove_finalizers(cluster: ControlPlane, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "whisperft.cli", "operator", "remove-finalizers", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**cluster.env(), "KUBECONFIG": str(cluster.kubeconfig)},
    )


def test_two_peered_replicas_survive_an_upgrade_and_a_crash_without_duplicates(
    cluster: ControlPlane,
    kube: Kube,
    namespace: str,
    operator_factory: Callable[..., OperatorProcess],
    tmp_path: Path,
) -> None:
    ns = namespace
    cluster.helm("install", RELEASE, str(CHART), "-n", ns, "-f", str(_values(tmp_path)))
    (deploy,) = kube.items("deployments", ns, f"{names.LABEL_INSTANCE}={RELEASE}")
    assert deploy["spec"]["replicas"] == 2
    assert deploy["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    (pdb,) = kube.items("poddisruptionbudgets", ns, f"{names.LABEL_INSTANCE}={RELEASE}")
    assert pdb["spec"]["minAvailable"] == 1
    peering = next(
        a
        for a in deploy["spec"]["template"]["spec"]["containers"][0]["args"]
        if a.startswith("--peering=")
    )
    peering = peering.split("=", 1)[1]  # fmt: skip
    assert kube.get("kopfpeerings.kopf.dev", ns, peering) is not None, "chart made no KopfPeering"

    def replica(pod: str) -> OperatorProcess:
        args, env, sa = _replica(cluster, kube, ns, tmp_path, pod)
        kc = cluster.service_account_kubeconfig(ns, sa, tmp_path / f"{pod}.kubeconfig")
        return operator_factory(pod, [ns], kubeconfig=kc, run_args=args, extra_env=env)

    def live_peers() -> set[str]:
        now = datetime.datetime.now(datetime.UTC)
        return {
            ident
            for ident, info in _peers(kube, ns, peering).items()
            if datetime.datetime.fromisoformat(info["lastseen"])
            + datetime.timedelta(seconds=info["lifetime"])
            > now
        }

    def active(ops: list[OperatorProcess]) -> OperatorProcess:
        """The one replica working; every other stands by."""

        def one() -> OperatorProcess | None:
            serving = [o for o in ops if o.proc.alive() and _serving(o)]
            return serving[0] if len(serving) == 1 else None

        found: OperatorProcess = kube.wait("exactly one active replica", one, timeout=LIFETIME * 4)
        return found

    uids = RayJobUids(kube, ns)
    a, b = replica("ha-operator-a"), replica("ha-operator-b")
    kube.wait("both replicas in the peering", lambda: live_peers() >= {"ha-operator-a", "ha-operator-b"}, timeout=60)  # fmt: skip
    first = active([a, b])

    batch = [f"ha-{i}" for i in range(3)]
    cluster.kubectl(
        "apply", "-n", ns, "-f", "-", input=dump(*(finetune(n, maxRestarts=2) for n in batch))
    )
    for n in batch:
        kube.wait(f"{n} RayJob", partial(kube.rayjob, ns, rayjob_name(n, 1)), timeout=180)
        kube.wait(f"{n} under way", partial(_in_phase, kube, ns, n, *LIVE), timeout=60)

    # helm upgrade: a changed setting rolls the Deployment. RollingUpdate with
    # maxSurge 1 / maxUnavailable 0: a new replica first, then an old one goes.
    cluster.helm(
        "upgrade", RELEASE, str(CHART), "-n", ns, "--reuse-values",
        "--set", "operator.syncIntervalSeconds=3",
    )  # fmt: skip
    c = replica("ha-operator-c")
    first.stop()  # SIGTERM: it leaves the peering, a standby takes over at once
    # ... while an attempt fails and must be retried exactly once.
    kube.set_rayjob_status(
        ns, rayjob_name("ha-0", 1),
        {"jobDeploymentStatus": "Failed", "jobStatus": "FAILED", "reason": "AppFailed"},
    )  # fmt: skip
    d = replica("ha-operator-d")
    (b if first is a else a).stop()
    kube.wait(
        "ha-0 retried as attempt 2",
        lambda: ((kube.wft(ns, "ha-0") or {}).get("status") or {}).get("attempt") == 2,
        timeout=120,
    )

    # A crash of the active replica: the standby resumes once its keep-alive expires.
    crashed = active([c, d])
    crashed.kill()
    # Progress the standby must make: suspend (it patches the RayJob). Not
    # Succeeded: releasing the model's claim hits a separate RBAC gap (report).
    kube.patch_wft(ns, "ha-1", {"spec": {"suspend": True}})
    kube.wait(
        "ha-1 Suspended after the crash",
        lambda: (
            (kube.rayjob(ns, rayjob_name("ha-1", 1)) or {}).get("spec", {}).get("suspend")
            and phase(kube.wft(ns, "ha-1")) == "Suspended"
        ),
        timeout=LIFETIME * 2 + 60,
    )
    crashed.restart()  # as the Deployment would: it rejoins the peering
    for n, job in (("ha-0", rayjob_name("ha-0", 2)), ("ha-2", rayjob_name("ha-2", 1))):
        kube.wait(f"{job}", partial(kube.rayjob, ns, job), timeout=120)
        kube.wait(f"{n} under way", partial(_in_phase, kube, ns, n, *LIVE), timeout=120)
        kube.patch_wft(ns, n, {"spec": {"suspend": True}})
    for n in batch:
        kube.wait(f"{n} Suspended", partial(_in_phase, kube, ns, n, "Suspended"), timeout=120)

    # The runbook command refuses while replicas run (live peers, the Deployment).
    refused = _remove_finalizers(cluster, "-n", ns)
    assert refused.returncode == 1 and "refused" in refused.stderr, refused
    assert "live peer" in refused.stderr and f"Deployment {ns}/" in refused.stderr
    dry = _remove_finalizers(cluster, "-n", ns, "--force", "--dry-run")
    assert dry.returncode == 0 and dry.stdout.count("would remove") == len(batch), dry

    seen = uids.stop()
    expected = {rayjob_name("ha-0", 1), rayjob_name("ha-0", 2)} | {
        rayjob_name(n, 1) for n in ("ha-1", "ha-2")
    }
    assert set(seen) == expected, f"RayJobs: {sorted(seen)}"
    recreated = {name: u for name, u in seen.items() if len(u) != 1}
    assert not recreated, f"RayJobs created more than once: {recreated}"
    for n, attempt in (("ha-0", 2), ("ha-1", 1), ("ha-2", 1)):
        st = (kube.wft(ns, n) or {})["status"]
        assert (st["attempt"], st.get("restarts", 0)) == (attempt, attempt - 1), st
        configs = [
            cm["metadata"]["name"] for cm in kube.items("configmaps", ns, f"{names.LABEL_FINETUNE}={n}")
        ]  # fmt: skip
        assert sorted(configs) == [f"{n}-{i}-config" for i in range(1, attempt + 1)], configs
    retried = [e for e in kube.events(ns, "ha-0") if e["reason"] == "Retrying"]
    assert len(retried) == 1, f"the retry was announced {len(retried)} times: {retried}"

    # Nothing the chart's RBAC does not grant was asked for (peering included).
    time.sleep(2.5)  # the audit backend flushes within 1 s
    sa = f"system:serviceaccount:{ns}:{deploy['spec']['template']['spec']['serviceAccountName']}"
    events = cluster.audit_events(sa)
    refused_calls = [
        f"{e['verb']} {e.get('requestURI')}"
        for e in events
        if e.get("responseStatus", {}).get("code") == 403
    ]
    assert not refused_calls, refused_calls
    assert {
        e["verb"] for e in events if (e.get("objectRef") or {}).get("resource") == "kopfpeerings"
    } >= {"list", "watch", "patch"}
    for op in (a, b, c, d):
        op.stop()
    cluster.helm("uninstall", RELEASE, "-n", ns, "--wait", timeout=120)


def _side_apiserver(cluster: ControlPlane, workdir: Path) -> tuple[Proc, str]:
    """A second kube-apiserver on the same etcd, on a port no client knows."""
    port = free_port()
    argv = []
    for arg in cluster.apiserver_argv():
        if arg.startswith("--secure-port="):
            arg = f"--secure-port={port}"
        elif arg.startswith("--cert-dir="):
            arg = f"--cert-dir={workdir / 'side-apiserver-certs'}"
        elif arg.startswith("--audit-log-path="):
            arg = f"--audit-log-path={workdir / 'side-audit.jsonl'}"
        argv.append(arg)
    proc = Proc("kube-apiserver-side", argv, cluster.log_dir / "kube-apiserver-side.log").start()
    server = f"https://127.0.0.1:{port}"
    cert = (cluster.pki.admin_cert, cluster.pki.admin_key)

    def ready() -> bool:
        proc.check_alive()
        return insecure_get(f"{server}/readyz", cert)[0] == 200

    wait_for("side kube-apiserver /readyz", ready, 180)
    return proc, server


def test_a_rayjob_deleted_during_an_apiserver_outage_is_noticed(
    cluster: ControlPlane,
    kube: Kube,
    namespace: str,
    operator_factory: Callable[..., OperatorProcess],
    tmp_path: Path,
) -> None:
    ns, name = namespace, "outage"
    op = operator_factory("outage", [ns], extra_env={"WHISPERFT_INDEX_RESYNC_SECONDS": "3"})
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=dump(finetune(name)))
    job = rayjob_name(name, 1)
    kube.wait("RayJob", partial(kube.rayjob, ns, job), timeout=180)
    kube.wait("under way", partial(_in_phase, kube, ns, name, *LIVE), timeout=60)
    before = (kube.rayjob(ns, job) or {})["metadata"]["uid"]

    main = cluster.procs["kube-apiserver"]
    started = time.monotonic()
    main.stop()
    side, server = _side_apiserver(cluster, tmp_path)
    try:
        # KubeRay's finalizer would hold the object until KubeRay (also cut off) is
        # back, and the watch would then see it go: take it away, so the RayJob is
        # gone before anyone reconnects.
        side_kubectl = ("--server", server, "-n", ns)
        cluster.kubectl(
            *side_kubectl, "patch", "rayjob", job, "--type=merge",
            "-p", '{"metadata": {"finalizers": null}}',
        )  # fmt: skip
        cluster.kubectl(*side_kubectl, "delete", "rayjob", job, "--wait=true")
    finally:
        side.stop()
    # Longer than all of Kopf's retries of one request together.
    time.sleep(max(0.0, KOPF_BACKOFF_TOTAL + 10 - (time.monotonic() - started)))
    main.start()
    cluster.wait_apiserver()
    outage = time.monotonic() - started

    def recreated() -> str | None:
        rj = kube.rayjob(ns, job)
        uid = (rj or {}).get("metadata", {}).get("uid")
        return uid if uid and uid != before else None

    kube.wait(f"{job} noticed missing and recreated", recreated, timeout=120)
    assert op.proc.alive() and op.proc.restarts == 0, "the operator did not survive the outage"
    log = op.log()
    assert "was deleted while the watch was down" in log
    st = (kube.wft(ns, name) or {})["status"]
    assert st["attempt"] == 1 and st.get("restarts", 0) == 0, st  # the same attempt, not a retry
    kube.wait("under way again", partial(_in_phase, kube, ns, name, *LIVE), timeout=120)
    print(f"API server down for {outage:.0f}s")


def test_remove_finalizers_unsticks_a_namespace_after_the_operator_is_gone(
    cluster: ControlPlane,
    kube: Kube,
    namespace: str,
    operator_factory: Callable[..., OperatorProcess],
) -> None:
    ns = namespace
    op = operator_factory("uninstalled", [ns])
    batch = ["left-0", "left-1"]
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=dump(*(finetune(n) for n in batch)))
    for n in batch:
        kube.wait(f"{n} RayJob", partial(kube.rayjob, ns, rayjob_name(n, 1)), timeout=120)
        finalizers = (kube.wft(ns, n) or {})["metadata"].get("finalizers") or []
        assert f"{names.GROUP}/finalizer" in finalizers
    op.stop()  # the uninstall: nobody will remove the finalizers now

    cluster.kubectl("delete", "namespace", ns, "--wait=false")

    def deleting() -> bool:
        items = kube.items(names.PLURAL, ns)
        return bool(items) and all(o["metadata"].get("deletionTimestamp") for o in items)

    kube.wait("the namespace's deletion reaching the fine-tunes", deleting, timeout=90)
    time.sleep(5)
    stuck = kube.items(names.PLURAL, ns)
    assert len(stuck) == len(batch), "fine-tunes went away without their finalizer removed"

    out = _remove_finalizers(cluster, "-n", ns)
    assert out.returncode == 0, out
    assert out.stdout.count("removed whisperft.io/finalizer") == len(batch), out.stdout

    def gone() -> bool:
        return kube.get("namespace", "", ns) is None

    kube.wait("the namespace deleted (fine-tunes and RayJobs garbage-collected)", gone, timeout=120)
    again = _remove_finalizers(cluster, "-n", ns)
    assert again.returncode == 0 and "0 WhisperFineTune(s) changed" in again.stdout, again
