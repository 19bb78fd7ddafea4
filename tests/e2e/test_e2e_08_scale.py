"""Scenario 8: many WhisperFineTunes applied at once -> every one gets its
RayJob and none ends in an error.

Two sizes:

- CI (`test_200_resources_each_get_a_rayjob`, WHISPERFT_E2E_SCALE_COUNT, 200):
  all suspended, so KubeRay makes no Ray clusters; a few minutes.
- Benchmark (`test_500_resources_with_running_clusters`, run by `make bench`
  or when WHISPERFT_SCALE_N is set): 500 resources, one in ten
  (WHISPERFT_SCALE_RUNNING) not suspended, so KubeRay creates their
  RayClusters and the head, worker and submitter pods land on kwok nodes
  (extra GPU and CPU nodes are added for them). It records, in the same run:
  apply -> RayJob latency (the operator), RayJob -> RayCluster latency
  (KubeRay, on the same control plane) and their ratio; operator CPU seconds
  per reconcile and per resource; operator RSS at rest, settled and peak, and
  its per-resource slope; the CPU each control-plane process spent; the API
  server's own request durations. With WHISPERFT_WRITE_BENCH=1 it rewrites
  bench/results/e2e_scale.json.

Latencies are first watch events seen by this test (one watch per kind), so
both sides are measured the same way on the same clock.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from e2e_harness.access import insecure_get
from e2e_harness.cluster import REPO, ControlPlane
from e2e_harness.kube import Kube
from e2e_harness.nodes import KWOK_ANNOTATION, node_manifests, pool
from e2e_harness.operator_proc import OperatorProcess
from e2e_harness.resources import dump, finetune
from kubernetes import client, watch
from prometheus_client.parser import text_string_to_metric_families

from whisperft import names
from whisperft.operator.api.phase import Phase, Reason
from whisperft.operator.render.meta import rayjob_name

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

COUNT = int(os.environ.get("WHISPERFT_E2E_SCALE_COUNT", "200"))
# The benchmark size runs only on request (`make bench` sets WHISPERFT_WRITE_BENCH).
BENCH_N_ENV = "WHISPERFT_SCALE_N"
BENCH_RUNNING_ENV = "WHISPERFT_SCALE_RUNNING"
# The committed benchmark file is rewritten only on request (`make bench`), so a
# test run never leaves the tree modified; otherwise results go to the temp dir.
RESULTS_ENV = "WHISPERFT_WRITE_BENCH"
COMMITTED_RESULTS = REPO / "bench" / "results" / "e2e_scale.json"
# The chart's default; the other scenarios tick every second to be quick.
SYNC_INTERVAL_S = 5.0
# Ready reasons that mean the resource is broken, not waiting.
ERROR_REASONS = {
    Reason.CREATE_FAILED.value,
    Reason.NAME_CONFLICT.value,
    Reason.CLAIM_IN_USE.value,
    Reason.IMAGE_PULL_FAILED.value,
    Reason.POD_CONFIG_ERROR.value,
    Reason.CLAIM_NOT_BOUND.value,
    Reason.DEPLOYMENT_FAILED.value,
    Reason.VALIDATION_FAILED.value,
}
_CLK = os.sysconf("SC_CLK_TCK")
# The CI-sized run's figures, for the memory slope when both sizes run in one session.
_SESSION: dict[str, dict[str, Any]] = {}


class FirstSeen:
    """Records when each object of a kind is first seen on a watch (and its owner's name)."""

    def __init__(self, kube: Kube, group: str, version: str, plural: str, ns: str) -> None:
        self.seen: dict[str, float] = {}
        self.owner: dict[str, str] = {}
        self._stop = threading.Event()
        self._args = (group, version, ns, plural)
        self._api = client.CustomObjectsApi(kube.api)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        rv: str | None = None  # resume where the last watch ended: no relist of every object
        while not self._stop.is_set():
            w = watch.Watch()
            try:
                kw: dict[str, Any] = {"timeout_seconds": 20}
                if rv:
                    kw["resource_version"] = rv
                for ev in w.stream(self._api.list_namespaced_custom_object, *self._args, **kw):
                    md = ev["object"]["metadata"]
                    if ev["type"] == "ERROR":
                        rv = None
                        break
                    now = time.monotonic()
                    rv = md.get("resourceVersion") or rv
                    self.seen.setdefault(md["name"], now)
                    refs = md.get("ownerReferences") or []
                    if refs and md["name"] not in self.owner:
                        self.owner[md["name"]] = refs[0]["name"]
                    if self._stop.is_set():
                        break
            except Exception:  # a dropped or expired watch is re-opened (expired: relisted)
                rv = None
                time.sleep(0.2)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    idx = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[idx]


def _stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {
        "p50": round(statistics.median(values), 3),
        "p99": round(_percentile(values, 99), 3),
        "max": round(max(values), 3),
        "mean": round(statistics.fmean(values), 3),
        "n": len(values),
    }


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK


def _rss(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024
    return out


def _components_cpu(cluster: ControlPlane) -> dict[str, float]:
    out = {}
    for name, proc in cluster.procs.items():
        if proc.alive():
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                out[name] = _cpu_s(proc.pid)
    return out


def _families(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _operator_metrics(op: OperatorProcess) -> dict[str, dict[str, float]]:
    """handler -> reconciles, errors, duration sum/count (whisperft_* on the metrics port)."""
    out: dict[str, dict[str, float]] = {}
    keys = {
        "whisperft_reconciles_total": "reconciles",
        "whisperft_reconcile_errors_total": "errors",
        "whisperft_reconcile_duration_seconds_sum": "seconds",
        "whisperft_reconcile_duration_seconds_count": "timed",
    }
    for (name, labels), value in _families(op.metrics()).items():
        handler = dict(labels).get("handler")
        if name in keys and handler:
            out.setdefault(handler, {})[keys[name]] = value
    return out


def _apiserver_requests(cluster: ControlPlane) -> dict[str, tuple[float, float]]:
    """'resource VERB' -> (count, seconds) from the API server's own duration histogram."""
    code, text = insecure_get(
        f"{cluster.server}/metrics", (cluster.pki.admin_cert, cluster.pki.admin_key), timeout=30
    )
    assert code == 200, text[:200]
    out: dict[str, tuple[float, float]] = {}
    for (name, labels), value in _families(text).items():
        if name not in (
            "apiserver_request_duration_seconds_sum",
            "apiserver_request_duration_seconds_count",
        ):
            continue
        lab = dict(labels)
        if lab.get("verb") in ("WATCH", "CONNECT"):
            continue
        key = f"{lab.get('resource')} {lab.get('verb')}"
        count, secs = out.get(key, (0.0, 0.0))
        if name.endswith("_count"):
            count += value
        else:
            secs += value
        out[key] = (count, secs)
    return out


def _diff_requests(
    before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]]
) -> dict[str, dict[str, float]]:
    out = {}
    for key, (count, secs) in after.items():
        c0, s0 = before.get(key, (0.0, 0.0))
        if count - c0 >= 1:
            n = count - c0
            out[key] = {"requests": int(n), "mean_ms": round((secs - s0) / n * 1000, 1)}
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["requests"] * kv[1]["mean_ms"]))


def _extra_nodes(running: int) -> list[dict[str, Any]]:
    """kwok nodes for `running` one-GPU clusters (head, worker, submitter each), so
    every unsuspended resource's pods are scheduled rather than left pending."""
    templates = {n["metadata"]["name"]: n for n in node_manifests()}
    l4, cpu = templates[f"{pool('gpu-l4').name}-0"], templates[f"{pool('cpu').name}-0"]
    # Worker: 8 CPU, 32Gi, 1 GPU. Head (2 CPU, 8Gi) and submitter go on CPU nodes.
    # Pods may request scratch space, so these nodes offer ephemeral storage too.
    sizes: list[tuple[dict[str, Any], str, int, dict[str, str]]] = [
        (l4, "scale-l4", 8, {"cpu": "80", "memory": "320Gi", "nvidia.com/gpu": "8"}),
        (cpu, "scale-cpu", 50, {"cpu": "128", "memory": "512Gi"}),
    ]
    out = []
    for template, prefix, per_node, cap in sizes:
        capacity = {**cap, "ephemeral-storage": "2Ti", "pods": "110"}
        for i in range(-(-running // per_node)):
            node = json.loads(json.dumps(template))
            name = f"{prefix}-{i}"
            node["metadata"]["name"] = name
            node["metadata"]["labels"]["kubernetes.io/hostname"] = name
            node["metadata"]["annotations"] = {KWOK_ANNOTATION: "fake"}
            node["status"] = {"capacity": capacity, "allocatable": capacity}
            out.append(node)
    return out


def _commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, check=False
        ).stdout.strip()

    head = git("rev-parse", "--short=12", "HEAD")
    return head + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def _errors(items: list[dict[str, Any]]) -> list[str]:
    bad = []
    for obj in items:
        st = obj.get("status") or {}
        reasons = {c.get("reason") for c in st.get("conditions") or [] if c.get("status") != "True"}
        if st.get("phase") == Phase.FAILED.value or reasons & ERROR_REASONS:
            bad.append(
                f"{obj['metadata']['name']}: {st.get('phase')} {sorted(reasons)} {st.get('message')}"
            )
    return bad


def _run(
    cluster: ControlPlane,
    kube: Kube,
    namespace: str,
    operator_factory: Callable[..., OperatorProcess],
    count: int,
    running: int,
) -> dict[str, Any]:
    nodes = _extra_nodes(running) if running else []
    if nodes:
        cluster.kubectl("apply", "-f", "-", input=dump(*nodes))
    try:
        result = _measure(cluster, kube, namespace, operator_factory, count, running)
        result["delete_all_s"] = _delete_all(cluster, kube, namespace)
        return result
    finally:
        _delete_all(cluster, kube, namespace)
        if nodes:
            cluster.kubectl(
                "delete", "node", "--wait=false", *(n["metadata"]["name"] for n in nodes),
                check=False,
            )  # fmt: skip


def _delete_all(cluster: ControlPlane, kube: Kube, namespace: str) -> float:
    """Delete every resource while this test's operator still runs to remove its
    finalizers, so the namespace fixture's (shorter) teardown finds it empty."""
    t0 = time.monotonic()
    cluster.kubectl("delete", names.PLURAL, "--all", "-n", namespace, "--wait=false", check=False)
    kube.wait(
        "every WhisperFineTune deleted",
        lambda: not kube.items(names.PLURAL, namespace),
        timeout=900,
        interval=3.0,
    )
    return round(time.monotonic() - t0, 1)


def _measure(
    cluster: ControlPlane,
    kube: Kube,
    namespace: str,
    operator_factory: Callable[..., OperatorProcess],
    count: int,
    running: int,
) -> dict[str, Any]:
    op = operator_factory(
        "scale", [namespace], extra_env={"WHISPERFT_SYNC_INTERVAL": str(SYNC_INTERVAL_S)}
    )
    pid = op.proc.pid
    wfts = FirstSeen(kube, names.GROUP, names.VERSION, names.PLURAL, namespace)
    jobs = FirstSeen(kube, "ray.io", "v1", "rayjobs", namespace)
    clusters = FirstSeen(kube, "ray.io", "v1", "rayclusters", namespace)
    # Every `step`-th resource runs: spread through the batch, not all at its end.
    step = count // running if running else 0
    runs = {f"scale-{i:03d}" for i in range(0, count, step)} if step else set()
    runs = set(sorted(runs)[:running])
    docs = [finetune(f"scale-{i:03d}", suspend=f"scale-{i:03d}" not in runs) for i in range(count)]
    time.sleep(2)  # the watches are open and the operator is idle before the first ADD
    rss_idle = _rss(pid)["VmRSS"]

    load = os.getloadavg()[0]
    m0, cpu0, comp0 = _operator_metrics(op), _cpu_s(pid), _components_cpu(cluster)
    api0 = _apiserver_requests(cluster)
    t0 = time.monotonic()
    cluster.kubectl(
        "apply", "--server-side", "-n", namespace, "-f", "-", input=dump(*docs), timeout=600
    )
    applied_s = time.monotonic() - t0
    peak = [0]

    def all_jobs() -> bool:
        peak[0] = max(peak[0], _rss(pid)["VmHWM"])
        return len(jobs.seen) >= count

    kube.wait(f"{count} RayJobs", all_jobs, timeout=1200, interval=1.0)
    total_s = time.monotonic() - t0
    m1, cpu1, comp1 = _operator_metrics(op), _cpu_s(pid), _components_cpu(cluster)
    api1 = _apiserver_requests(cluster)
    run_jobs = {rayjob_name(n, 1) for n in runs}

    def all_clusters() -> bool:
        return run_jobs <= set(clusters.owner.values())

    if runs:
        kube.wait(f"{len(runs)} RayClusters", all_clusters, timeout=600, interval=1.0)

    # Settled: every resource has a phase, the running ones report Running
    # (their pods are up on the kwok nodes) and none is in an error.
    def settled() -> list[dict[str, Any]] | None:
        items = kube.items(names.PLURAL, namespace)
        phases = {o["metadata"]["name"]: (o.get("status") or {}).get("phase") for o in items}
        done = len(items) == count and all(phases.values())
        ok = all(phases.get(n) == Phase.RUNNING.value for n in runs)
        return items if done and ok and not _errors(items) else None

    unsettled = None
    try:
        items = kube.wait("every resource settled", settled, timeout=600, interval=5.0)
    except TimeoutError:
        items = kube.items(names.PLURAL, namespace)
        counts: dict[str | None, int] = {}
        for o in items:
            p = (o.get("status") or {}).get("phase")
            counts[p] = counts.get(p, 0) + 1
        unsettled = f"not settled after 600 s: phases {counts}; errors {_errors(items)[:10]}"
    wfts.stop()
    jobs.stop()
    clusters.stop()

    # At rest with `count` resources: the timers' cost per tick.
    time.sleep(SYNC_INTERVAL_S)
    m2, cpu2 = _operator_metrics(op), _cpu_s(pid)
    time.sleep(6 * SYNC_INTERVAL_S)
    m3, cpu3 = _operator_metrics(op), _cpu_s(pid)
    rss = _rss(pid)
    peak[0] = max(peak[0], rss["VmHWM"])

    latencies, run_latencies, kuberay = [], [], []
    ray_first = {owner: clusters.seen[c] for c, owner in clusters.owner.items()}
    for d in docs:
        name = d["metadata"]["name"]
        job = rayjob_name(name, 1)
        assert job in jobs.seen, f"{name}: no RayJob"
        lat = jobs.seen[job] - wfts.seen.get(name, t0)
        latencies.append(lat)
        if name in runs:
            run_latencies.append(lat)
            kuberay.append(ray_first[job] - jobs.seen[job])
    rayjobs_listed = len(kube.items("rayjobs.ray.io", namespace))
    alive = op.proc.alive()

    def delta(
        a: dict[str, dict[str, float]], b: dict[str, dict[str, float]], k: str
    ) -> dict[str, float]:
        return {
            h: round(b[h].get(k, 0) - a.get(h, {}).get(k, 0), 3)
            for h in sorted(b)
            if b[h].get(k, 0) - a.get(h, {}).get(k, 0)
        }

    reconciles = delta(m0, m1, "reconciles")
    handler_s = delta(m0, m1, "seconds")
    timed = delta(m0, m1, "timed")
    n_reconciles = sum(reconciles.values())
    idle_ticks = sum(delta(m2, m3, "reconciles").values())
    cpu = cpu1 - cpu0
    lat_stats, kr_stats = _stats(latencies), _stats(kuberay)
    run_stats = _stats(run_latencies)
    result: dict[str, Any] = {
        "scenario": (
            "e2e scale: WhisperFineTunes applied at once -> RayJob created"
            + (
                f" ({running} not suspended: KubeRay creates their RayClusters, pods on kwok nodes)"
                if running
                else " (suspended)"
            )
        ),
        "resources": count,
        "running_resources": len(runs),
        "errors": _errors(items),
        "unsettled": unsettled,
        "rayjobs_listed": rayjobs_listed,
        "operator_alive": alive,
        "sync_interval_s": SYNC_INTERVAL_S,
        "latency_s": lat_stats,
        "latency_running_s": run_stats,
        "kuberay_rayjob_to_raycluster_s": kr_stats,
        "operator_vs_kuberay": (
            {
                "p50": round(run_stats["p50"] / kr_stats["p50"], 2),
                "p99": round(run_stats["p99"] / kr_stats["p99"], 2),
                "note": "operator apply->RayJob over KubeRay RayJob->RayCluster, same resources, same run",
            }
            if kr_stats and kr_stats["p50"] > 0
            else None
        ),
        "apply_s": round(applied_s, 2),
        "all_rayjobs_s": round(total_s, 2),
        "operator_peak_rss_mib": round(peak[0] / 2**20, 1),
        "operator_rss_mib": {
            "idle_before": round(rss_idle / 2**20, 1),
            "settled": round(rss["VmRSS"] / 2**20, 1),
            "peak": round(peak[0] / 2**20, 1),
        },
        "rss_kib_per_resource": {
            "settled": round((rss["VmRSS"] - rss_idle) / 1024 / count, 1),
            "peak": round((peak[0] - rss_idle) / 1024 / count, 1),
        },
        "operator_cpu_s": round(cpu, 2),
        "operator_cpu_s_per_resource": round(cpu / count, 4),
        "operator_cpu_s_per_reconcile": round(cpu / n_reconciles, 4) if n_reconciles else None,
        "reconciles": reconciles,
        "handler_mean_s": {h: round(handler_s.get(h, 0) / n, 3) for h, n in timed.items() if n},
        "at_rest": {
            "window_s": 6 * SYNC_INTERVAL_S,
            "sync_ticks": idle_ticks,
            "cpu_s": round(cpu3 - cpu2, 2),
            "cpu_ms_per_tick": round((cpu3 - cpu2) / idle_ticks * 1000, 2) if idle_ticks else None,
        },
        "component_cpu_s": {
            "whisperft-operator": round(cpu, 2),
            **{
                k: round(v - comp0.get(k, 0), 2)
                for k, v in sorted(comp1.items())
                if not k.startswith("operator-")
            },
        },
        "apiserver_requests": dict(list(_diff_requests(api0, api1).items())[:12]),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        # Other jobs share the machine; the load says how busy it was.
        "machine": {
            "cpus": os.cpu_count(),
            "load_avg_1m": round(load, 2),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "commit": _commit(),
        "command": " ".join(
            [
                f"{k}={os.environ[k]}"
                for k in (RESULTS_ENV, BENCH_N_ENV, BENCH_RUNNING_ENV)
                if k in os.environ
            ]
            + ["python -m pytest", *sys.argv[1:]]
        ),
        "method": (
            "latency = first watch event of the RayJob minus first watch event of its WhisperFineTune; "
            "KubeRay = first watch event of the RayCluster minus that of its RayJob; "
            "CPU = utime+stime of each process (/proc/PID/stat) from apply to the last RayJob; "
            "reconciles = whisperft_reconciles_total in that window; "
            "peak RSS = VmHWM of the operator process (`whisperft operator run`, out of cluster); "
            "apiserver_requests = apiserver_request_duration_seconds in that window (all clients)"
        ),
    }
    return result


def _write_and_check(result: dict[str, Any], committed: bool, tmp_name: str) -> None:
    """Write the figures (the committed file only for a passing run), then assert:
    every resource got exactly its own RayJob, none ends in an error, the
    running ones report Running, and the operator is still up."""
    ok = not result["errors"] and not result["unsettled"]
    ok = ok and result["rayjobs_listed"] == result["resources"] and result["operator_alive"]
    out = COMMITTED_RESULTS if committed and ok else Path(tempfile.gettempdir()) / tmp_name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"scale results: {out}")
    print(json.dumps(result, indent=2))
    assert result["errors"] == [], result["errors"][:10]
    assert result["unsettled"] is None, result["unsettled"]
    assert result["rayjobs_listed"] == result["resources"], "a RayJob too many or too few"
    assert result["operator_alive"], "the operator died"


def test_200_resources_each_get_a_rayjob(
    cluster: ControlPlane,
    kube: Kube,
    namespace: str,
    operator_factory: Callable[..., OperatorProcess],
) -> None:
    result = _run(cluster, kube, namespace, operator_factory, COUNT, 0)
    _SESSION["ci"] = result
    _write_and_check(result, False, "whisperft-e2e_scale-ci.json")


@pytest.mark.skipif(
    not (os.environ.get(BENCH_N_ENV) or os.environ.get(RESULTS_ENV) == "1"),
    reason=f"the benchmark size runs with `make bench` ({RESULTS_ENV}=1) or {BENCH_N_ENV}=N",
)
def test_500_resources_with_running_clusters(
    cluster: ControlPlane,
    kube: Kube,
    namespace: str,
    operator_factory: Callable[..., OperatorProcess],
) -> None:
    count = int(os.environ.get(BENCH_N_ENV) or 500)
    running = int(os.environ.get(BENCH_RUNNING_ENV) or max(1, count // 10))
    result = _run(cluster, kube, namespace, operator_factory, count, running)
    small = _SESSION.get("ci")
    if small and small["resources"] < count:
        # The memory slope between two sizes in one session (a fresh operator each).
        result["rss_slope_between_runs"] = _slope(small, result)
    _write_and_check(result, os.environ.get(RESULTS_ENV) == "1", "whisperft-e2e_scale.json")


def _slope(small: dict[str, Any], big: dict[str, Any]) -> dict[str, Any]:
    n0, n1 = small["resources"], big["resources"]
    out: dict[str, Any] = {"resources": [n0, n1]}
    for key in ("peak", "settled"):
        a, b = small["operator_rss_mib"][key], big["operator_rss_mib"][key]
        per = (b - a) / (n1 - n0)
        out[key] = {
            "mib": [a, b],
            "kib_per_resource": round(per * 1024, 1),
            "intercept_mib": round(a - per * n0, 1),
        }
    return out
