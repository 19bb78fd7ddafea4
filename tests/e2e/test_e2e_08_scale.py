"""Scenario 8: 200 WhisperFineTunes applied at once -> every one gets its
RayJob. Records reconcile latency (p50/p99 from the resource appearing to its
RayJob appearing, both seen on one watch connection each) and the operator's
peak RSS into bench/results/e2e_scale.json.

The resources are created suspended, so KubeRay makes no Ray clusters: the
number measures the operator, not 400 fake pods competing for two cores.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from e2e_harness.cluster import REPO, ControlPlane
from e2e_harness.kube import Kube
from e2e_harness.operator_proc import OperatorProcess
from e2e_harness.resources import dump, finetune
from kubernetes import client, watch

from whisperft import names
from whisperft.operator.render.meta import rayjob_name

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

COUNT = int(os.environ.get("WHISPERFT_E2E_SCALE_COUNT", "200"))
# The committed benchmark file is rewritten only on request (`make bench`), so a
# test run never leaves the tree modified; otherwise results go to the temp dir.
RESULTS_ENV = "WHISPERFT_WRITE_BENCH"
COMMITTED_RESULTS = REPO / "bench" / "results" / "e2e_scale.json"


class FirstSeen:
    """Records when each object of a kind is first seen on a watch."""

    def __init__(self, kube: Kube, group: str, version: str, plural: str, ns: str) -> None:
        self.seen: dict[str, float] = {}
        self._stop = threading.Event()
        self._args = (group, version, ns, plural)
        self._api = client.CustomObjectsApi(kube.api)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            w = watch.Watch()
            try:
                for ev in w.stream(
                    self._api.list_namespaced_custom_object, *self._args, timeout_seconds=5
                ):
                    name = ev["object"]["metadata"]["name"]
                    self.seen.setdefault(name, time.monotonic())
                    if self._stop.is_set():
                        break
            except Exception:  # a dropped watch is re-opened; missed ADDs show up on relist
                time.sleep(0.2)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    idx = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[idx]


def test_200_resources_each_get_a_rayjob(
    cluster: ControlPlane,
    kube: Kube,
    namespace: str,
    operator_factory: Callable[..., OperatorProcess],
) -> None:
    op = operator_factory("scale", [namespace])
    wfts = FirstSeen(kube, names.GROUP, names.VERSION, names.PLURAL, namespace)
    jobs = FirstSeen(kube, "ray.io", "v1", "rayjobs", namespace)
    docs = [finetune(f"scale-{i:03d}", suspend=True) for i in range(COUNT)]
    time.sleep(1)  # both watches open before the first ADD

    load = os.getloadavg()[0]
    t0 = time.monotonic()
    cluster.kubectl(
        "apply", "--server-side", "-n", namespace, "-f", "-", input=dump(*docs), timeout=300
    )
    applied_s = time.monotonic() - t0
    peak = [0]

    def all_jobs() -> bool:
        peak[0] = max(peak[0], op.proc.peak_rss_bytes())
        return len(jobs.seen) >= COUNT

    try:
        kube.wait(f"{COUNT} RayJobs", all_jobs, timeout=600, interval=1.0)
        total_s = time.monotonic() - t0
        peak[0] = max(peak[0], op.proc.peak_rss_bytes())
    finally:
        wfts.stop()
        jobs.stop()

    latencies = []
    for d in docs:
        name = d["metadata"]["name"]
        job = rayjob_name(name, 1)
        assert job in jobs.seen, f"{name}: no RayJob"
        latencies.append(jobs.seen[job] - wfts.seen.get(name, t0))
    # Every resource got exactly its own RayJob, nothing more.
    assert len(kube.items("rayjobs.ray.io", namespace)) == COUNT
    assert op.proc.alive()

    result: dict[str, Any] = {
        "scenario": "e2e scale: WhisperFineTunes applied at once (suspended) -> RayJob created",
        "resources": COUNT,
        "latency_s": {
            "p50": round(statistics.median(latencies), 3),
            "p99": round(_percentile(latencies, 99), 3),
            "max": round(max(latencies), 3),
            "mean": round(statistics.fmean(latencies), 3),
        },
        "apply_s": round(applied_s, 2),
        "all_rayjobs_s": round(total_s, 2),
        "operator_peak_rss_mib": round(peak[0] / 2**20, 1),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        # Other jobs share the machine; the load says how busy it was.
        "machine": {
            "cpus": os.cpu_count(),
            "load_avg_1m": round(load, 2),
            "python": platform.python_version(),
        },
        "method": (
            "latency = first watch event of the RayJob minus first watch event of its WhisperFineTune; "
            "peak RSS = VmHWM of the operator process (`whisperft operator run`, out of cluster)"
        ),
    }
    out = (
        COMMITTED_RESULTS
        if os.environ.get(RESULTS_ENV) == "1"
        else Path(tempfile.gettempdir()) / "whisperft-e2e_scale.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"scale results: {out}")
    print(json.dumps(result, indent=2))
