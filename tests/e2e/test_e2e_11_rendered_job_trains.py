"""Scenario 11: the RayJob the operator rendered for a real resource trains for real.

The operator renders the RayJob and its ConfigMap on the real API server; the
pod sandbox then runs exactly those (the entrypoint, the rayStartParams, the
env of the head pod KubeRay made, Ray token authentication included, the
ConfigMap mounted where the pod spec mounts it, a directory as the claim) on a
local Ray head and worker node, with the trainer's own ServiceAccount token. The trainer's rank 0 reports into the resource's status
as it would from a pod, and once the test plays KubeRay's last step (the RayJob
SUCCEEDED), the resource ends Succeeded with the test WER before and after and
where the exported model is.
"""

from __future__ import annotations

import base64
import copy
import json
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e_harness import pod_sandbox
from e2e_harness.cluster import REPO, ControlPlane
from e2e_harness.kube import Kube, condition, phase
from e2e_harness.operator_proc import OperatorProcess
from e2e_harness.resources import dump

from whisperft.operator.render.meta import config_map_name, rayjob_name, trainer_account_name
from whisperft.trainer import checkpoint as ckpt

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1200)]

STEPS = 3


def demo_resource(name: str) -> dict[str, Any]:
    """The demo example (one worker), cut to a few steps on a small slice of the corpus."""
    doc = copy.deepcopy(yaml.safe_load((REPO / "examples" / "demo.yaml").read_text()))
    doc["metadata"] = {"name": name}
    spec = doc["spec"]
    spec["dataset"].update(maxTrainExamples=16, maxEvalExamples=8)
    spec["training"].update(
        maxSteps=STEPS, batchSizePerWorker=4, warmupSteps=1, evalEvery=2, saveEvery=2,
        logEvery=1, evalBatchSize=8, maxNewTokens=48,
    )  # fmt: skip
    spec["resources"] = {"workers": 1, "cpu": "1"}
    return dict(doc)


def test_the_rendered_job_trains_and_reports(
    cluster: ControlPlane,
    kube: Kube,
    namespace: str,
    operator_factory: Callable[..., OperatorProcess],
    tmp_path: Path,
) -> None:
    operator_factory("trains", [namespace])
    name = "trains"
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=dump(demo_resource(name)))
    job = rayjob_name(name, 1)
    rayjob = kube.wait(f"RayJob {job}", lambda: kube.rayjob(namespace, job), timeout=90)
    cm = kube.get("configmap", namespace, config_map_name(name, 1))
    assert cm is not None
    claim = kube.wait(
        "the claim in status",
        lambda: (kube.wft(namespace, name) or {}).get("status", {}).get("checkpointClaim"),
        timeout=30,
    )
    # KubeRay's part: the cluster is up and the job runs.
    kube.set_rayjob_status(
        namespace, job, {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"}
    )
    kube.wait("Running", lambda: phase(kube.wft(namespace, name)) == "Running", timeout=60)
    token = cluster.service_account_kubeconfig(
        namespace, trainer_account_name(name), tmp_path / "trainer.kubeconfig"
    )

    seen: list[dict[str, Any]] = []
    stop = threading.Event()

    def watch() -> None:  # what `kubectl get wft -w` would show while it trains
        while not stop.wait(0.5):
            progress = ((kube.wft(namespace, name) or {}).get("status") or {}).get("progress")
            if progress and (not seen or progress != seen[-1]):
                seen.append(progress)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    claim_dir = tmp_path / "claim"
    claim_dir.mkdir()
    # The head pod as KubeRay made it, for Ray's token authentication.
    head = kube.wait(
        "KubeRay's head pod",
        lambda: kube.items(
            "pods", namespace, f"ray.io/node-type=head,whisperft.io/finetune={name}"
        ),
        timeout=60,
    )[0]
    secrets = {
        s["metadata"]["name"]: {k: base64.b64decode(v).decode() for k, v in s["data"].items()}
        for s in kube.items("secrets", namespace)
    }
    kuberay_env = pod_sandbox.container_env(head["spec"]["containers"][0], secrets, head)
    assert kuberay_env["RAY_AUTH_MODE"] == "token" and kuberay_env["RAY_AUTH_TOKEN"]
    # The rendered env plus KubeRay's auth; its addresses (pod IPs, Services) are
    # loopback here.
    template = rayjob["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]
    env = pod_sandbox.container_env(template["spec"]["containers"][0])
    env.update({k: v for k, v in kuberay_env.items() if k.startswith("RAY_AUTH_")})
    try:
        out = pod_sandbox.run(
            rayjob,
            {cm["metadata"]["name"]: cm["data"]},
            {claim: claim_dir},
            token.read_text(),
            tmp_path / "pod",
            Path(sys.executable).parent,
            timeout=900,
            pod_env=env,
        )
    finally:
        stop.set()
        watcher.join(timeout=10)
    assert out.returncode == 0, out.stdout[-8000:]
    assert "final: test WER" in out.stdout, out.stdout[-4000:]
    # As kubectl logs shows it: one line per report, none twice, no progress-bar frames.
    said = [line for line in out.stdout.splitlines() if "[whisperft]" in line]
    assert said and len(said) == len(set(said)), [x for x in said if said.count(x) > 1][:5]
    frames = [line for line in out.stdout.splitlines() if "it/s]" in line or "%|" in line]
    assert not frames, frames[:5]

    # The trainer's reports, live: some step before the last, stamped with attempt 1.
    assert any(p.get("step", STEPS) < STEPS for p in seen), seen
    st = kube.wft(namespace, name)["status"]  # type: ignore[index]
    progress = st["progress"]
    assert (progress["attempt"], progress["step"], progress["totalSteps"]) == (1, STEPS, STEPS)
    assert progress["testWerBefore"] > 0 and progress["testWerAfter"] >= 0
    assert progress["bestStep"] in (2, STEPS) and progress["evalWer"] >= 0
    model_path = f"/checkpoints/{name}/output/model"
    # The exported weights are the best evaluated checkpoint's (the last ones when
    # no earlier evaluation beat them), and status says which.
    best = progress["bestStep"]
    best_checkpoint = st["lastCheckpoint"].rsplit("/", 1)[0] + "/" + ckpt.dir_name(best)
    assert st["model"] == {
        "attempt": 1,
        "path": model_path,
        "step": best,
        "checkpoint": best_checkpoint,
        "selected": "bestEval",
        "formats": ["hf"],
    }
    # ...and they are true of what is on the claim.
    on_claim = claim_dir / name / "output"
    for f in ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json"):
        assert (on_claim / "model" / f).is_file(), f
    results = json.loads((on_claim / "results.json").read_text())
    assert results["test_wer_after"] == pytest.approx(progress["testWerAfter"], abs=1e-5)
    assert results["test_wer_before"] == pytest.approx(progress["testWerBefore"], abs=1e-5)
    assert results["exported"]["step"] == best and results["exported"]["selected"] == "bestEval"
    ckpt_dir = claim_dir / st["lastCheckpoint"].removeprefix("/checkpoints/")
    assert ckpt_dir.is_dir(), st["lastCheckpoint"]

    # KubeRay's last step: the job succeeded.
    kube.set_rayjob_status(
        namespace, job, {"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"}
    )
    done = kube.wait(
        "Succeeded",
        lambda: o if phase(o := kube.wft(namespace, name)) == "Succeeded" else None,
        timeout=60,
    )
    before, after = progress["testWerBefore"], progress["testWerAfter"]
    assert f"test WER {before:.1%} -> {after:.1%}" in done["status"]["message"]
    assert f"model (step {best}) at claim {claim}, {model_path}; " in done["status"]["message"]
    # the claim holds the only copy of the model: the run keeps it past a delete
    assert done["status"]["message"].endswith("delete the claim once the model is copied out)")
    kept = kube.get("pvc", namespace, claim)
    assert kept is not None and not kept["metadata"].get("ownerReferences")
    assert done["status"]["progressText"] == f"{STEPS}/{STEPS} (100%)"
    succeeded = condition(done, "Succeeded")
    assert succeeded is not None and succeeded["status"] == "True"
