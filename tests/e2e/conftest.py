"""Fixtures of the e2e suite: one real control plane on loopback per session.

The binaries come from hack/controlplane/build.sh (run here too, so `pytest -m
e2e` works on its own; it takes well under a second once cached). Every
component logs to <pytest tmp>/controlplane/logs/; a failing test gets the
tail of each log attached to its report.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from e2e_harness.cluster import BUILD_SH, ControlPlane, controlplane_dir
from e2e_harness.kube import Kube
from e2e_harness.operator_proc import OperatorProcess
from e2e_harness.resources import crd_file

_CLUSTER: ControlPlane | None = None
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    global _CLUSTER
    subprocess.run(["bash", str(BUILD_SH)], check=True)
    root = controlplane_dir()
    cp = ControlPlane(tmp_path_factory.mktemp("controlplane"), root / "bin", root / "assets")
    _CLUSTER = cp
    try:
        cp.start()
    except BaseException:
        print(
            f"control plane failed to start; logs in {cp.log_dir}\n{cp.log_tails(60)}",
            file=sys.stderr,
        )
        cp.stop()
        raise
    try:
        yield cp
    finally:
        cp.stop()
        _CLUSTER = None


@pytest.fixture(scope="session")
def kube(cluster: ControlPlane) -> Iterator[Kube]:
    """Python-client helpers authenticated as cluster admin."""
    k = Kube(cluster)
    yield k
    k.close()


@pytest.fixture(scope="session")
def wft_crd(cluster: ControlPlane) -> Path:
    """The WhisperFineTune CRD from the chart (generated from the Python types), installed."""
    path = crd_file()
    cluster.apply_crds([path])
    return path


@pytest.fixture
def operator_factory(
    cluster: ControlPlane, wft_crd: Path
) -> Iterator[Callable[..., OperatorProcess]]:
    """Start operator processes (out of cluster); all stopped when the test ends."""
    started: list[OperatorProcess] = []

    def start(name: str, namespaces: list[str], **kw: Any) -> OperatorProcess:
        op = OperatorProcess(cluster, name, namespaces, **kw).start()
        started.append(op)
        return op

    yield start
    for op in started:
        op.stop()
        cluster.procs.pop(op.proc.name, None)


_NS_COUNTER = [0]


@pytest.fixture
def namespace(
    request: pytest.FixtureRequest, kube: Kube, operator_factory: Callable[..., OperatorProcess]
) -> Iterator[str]:
    """A fresh namespace named after the test (restricted Pod Security enforced),
    deleted afterwards so the next test finds the GPUs free.

    It depends on `operator_factory` only so that it is torn down first: the
    test's operators are still running and remove their finalizers."""
    _NS_COUNTER[0] += 1
    base = request.node.name.removeprefix("test_").replace("_", "-")[:40].strip("-")
    ns = kube.namespace(f"{base}-{_NS_COUNTER[0]}", labels=RESTRICTED)
    yield ns
    kube.delete_namespace(ns)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and _CLUSTER is not None:
        rep.sections.append(
            (
                "control-plane logs (tails; full logs in " + str(_CLUSTER.log_dir) + ")",
                _CLUSTER.log_tails(),
            )
        )
