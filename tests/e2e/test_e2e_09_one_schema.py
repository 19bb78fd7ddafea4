"""Scenario 9: one resource everywhere. The same files are accepted alike by the
real API server, `whisperft render` and `whisperft train --dry-run`; a file is
refused offline exactly when the server refuses it; and the Python API submits,
watches and reads a fine-tune through the operator."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e_harness.cluster import REPO, ControlPlane
from e2e_harness.kube import Kube, phase
from e2e_harness.operator_proc import OperatorProcess
from e2e_harness.resources import dump, finetune
from test_e2e_06_bad_input import INVALID

from whisperft.client import ClientError, FineTune
from whisperft.operator.api.resource import SpecError, load_resources
from whisperft.operator.render.meta import rayjob_name

pytestmark = [pytest.mark.e2e]

FILES = sorted([*(REPO / "examples").glob("*.yaml"), *(REPO / "manifests/examples").glob("*.yaml")])

# Spec text as a user types it: quoting decides the type, as kubectl decides it.
TEXT_CASES = [
    ("quoted-learning-rate", "learningRate: '1e-5'"),
    ("quoted-steps", "maxSteps: '200'"),
    ("quoted-bool", "freezeEncoder: 'true'"),
    ("unquoted-exponent", "learningRate: 1e-5"),
    ("yaml11-bool", "freezeEncoder: yes"),
    ("integral-float-steps", "maxSteps: 200.0"),
    ("fractional-steps", "maxSteps: 200.5"),
    ("hex-steps", "maxSteps: 0x10"),
    ("null-epochs", "epochs: null"),
]


def _text_doc(name: str, training_line: str) -> str:
    return (
        "apiVersion: whisperft.io/v1alpha1\nkind: WhisperFineTune\n"
        f"metadata:\n  name: {name}\n"
        "spec:\n  model: {name: bundled:tiny.en}\n  dataset: {path: bundled:en}\n"
        "  checkpoints: {size: 1Gi}\n"
        f"  training:\n    maxSteps: 200\n    {training_line}\n"
    ).replace("    maxSteps: 200\n    maxSteps:", "    maxSteps:")


def _offline_accepts(text: str) -> tuple[bool, str]:
    try:
        load_resources(text, source="doc")
    except SpecError as exc:
        return False, str(exc)
    return True, ""


def _server_accepts(cluster: ControlPlane, namespace: str, text: str) -> tuple[bool, str]:
    out = cluster.kubectl(
        "create", "--dry-run=server", "-n", namespace, "-f", "-", input=text, check=False
    )
    return out.returncode == 0, out.stderr.strip()


def test_offline_parsing_refuses_exactly_what_the_api_server_refuses(
    cluster: ControlPlane, namespace: str, wft_crd: Any
) -> None:
    texts: list[tuple[str, str]] = []
    for case, mutate, _field in INVALID:
        doc = finetune(f"bad-{case}")
        mutate(doc)
        texts.append((case, dump(doc)))
    texts += [(case, _text_doc(case, line)) for case, line in TEXT_CASES]
    texts += [(p.name, p.read_text()) for p in FILES]
    disagree = []
    for case, text in texts:
        server, server_msg = _server_accepts(cluster, namespace, text)
        offline, offline_msg = _offline_accepts(text)
        if server != offline:
            disagree.append(
                f"{case}: server {'accepts' if server else 'refuses'} ({server_msg[:300]}), "
                f"offline {'accepts' if offline else 'refuses'} ({offline_msg[:300]})"
            )
    assert not disagree, "\n".join(disagree)
    # The table has both outcomes, so agreement is not vacuous.
    outcomes = {_offline_accepts(t)[0] for _, t in texts}
    assert outcomes == {True, False}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_example_is_accepted_by_server_render_and_dry_run(
    cluster: ControlPlane, namespace: str, wft_crd: Any, path: Path
) -> None:
    server, msg = _server_accepts(cluster, namespace, path.read_text())
    assert server, f"{path.name}: {msg}"
    for argv in (["render", str(path)], ["train", str(path), "--dry-run"]):
        out = subprocess.run(
            [sys.executable, "-m", "whisperft", *argv], capture_output=True, text=True, timeout=120
        )
        assert out.returncode == 0, f"whisperft {' '.join(argv)}: {out.stderr[-2000:]}"
        docs = [d for d in yaml.safe_load_all(out.stdout) if d is not None]
        assert docs and all(isinstance(d, dict) for d in docs), out.stdout[:500]


def test_python_api_submits_watches_and_reads_the_results(
    cluster: ControlPlane,
    kube: Kube,
    namespace: str,
    operator_factory: Callable[..., OperatorProcess],
) -> None:
    operator_factory("client", [namespace])
    ft = FineTune.load(REPO / "examples" / "demo.yaml")
    job = ft.submit(namespace=namespace, kubeconfig=cluster.kubeconfig)
    with pytest.raises(ClientError, match="already exists"):
        ft.submit(namespace=namespace, kubeconfig=cluster.kubeconfig)

    seen: list[Any] = []
    result: dict[str, Any] = {}

    def watch() -> None:
        try:
            result["status"] = job.watch(
                timeout_seconds=150, poll_seconds=0.5, progress=True, on_update=seen.append
            )
        except Exception as exc:  # surfaced by the assertions below
            result["error"] = exc

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    rj = rayjob_name(ft.name, 1)
    kube.wait(f"RayJob {rj}", lambda: kube.rayjob(namespace, rj), timeout=90)
    # Fake pods run no Ray: play KubeRay and the trainer's rank 0.
    kube.set_rayjob_status(
        namespace, rj, {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"}
    )
    kube.wait("Running", lambda: phase(kube.wft(namespace, ft.name)) == "Running", timeout=60)
    kube.patch_wft_status(
        namespace,
        ft.name,
        {"progress": {"step": 20, "totalSteps": 40, "testWerBefore": 0.3427}},
    )
    kube.wait(
        "the watcher to see step 20",
        lambda: any(s.progress and s.progress.step == 20 for s in seen),
        timeout=30,
    )
    kube.patch_wft_status(
        namespace,
        ft.name,
        {
            "progress": {"step": 40, "totalSteps": 40, "testWerAfter": 0.0787, "evalWer": 0.09},
            "model": {"path": f"/checkpoints/{ft.name}/output/model", "step": 40},
        },
    )
    kube.set_rayjob_status(
        namespace, rj, {"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"}
    )
    watcher.join(timeout=120)
    assert not watcher.is_alive(), "watch() did not return on Succeeded"
    assert "error" not in result, result.get("error")
    assert result["status"].phase.value == "Succeeded"
    summary = job.summary()
    assert (summary.step, summary.total_steps) == (40, 40)
    assert (summary.test_wer_before, summary.test_wer_after) == (0.3427, 0.0787)
    assert job.model_location() == f"{ft.name}-checkpoints:/checkpoints/{ft.name}/output/model"
    job.delete()
    kube.wait("the resource gone", lambda: kube.wft(namespace, ft.name) is None, timeout=60)
