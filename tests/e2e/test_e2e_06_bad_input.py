"""Scenario 6: bad input is refused by the API server itself (schema, CEL,
strict field validation) with a message naming the field, so nothing reaches
the operator; a resource the schema accepts but no pool can serve ends in a
clear condition, not a crash loop."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from e2e_harness.cluster import ControlPlane
from e2e_harness.kube import Kube, condition, phase
from e2e_harness.operator_proc import UNKNOWN_ACCELERATOR, OperatorProcess
from e2e_harness.resources import EXAMPLES, dump, finetune

from whisperft.operator.render.meta import rayjob_name

pytestmark = [pytest.mark.e2e]


def _spec(**kw: Any) -> Callable[[dict[str, Any]], None]:
    """Mutator that sets dotted spec paths (value None deletes)."""

    def apply(doc: dict[str, Any]) -> None:
        for dotted, value in kw.items():
            *parents, leaf = dotted.split("__")
            node = doc["spec"]
            for p in parents:
                node = node.setdefault(p, {})
            if value is None:
                node.pop(leaf, None)
            else:
                node[leaf] = value

    return apply


def _name(name: str) -> Callable[[dict[str, Any]], None]:
    def apply(doc: dict[str, Any]) -> None:
        doc["metadata"]["name"] = name

    return apply


# (id, mutation, text the API server's message must contain: the field)
INVALID: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("missing-dataset", _spec(dataset=None), "spec.dataset"),
    ("steps-and-epochs", _spec(training__epochs=2), "spec.training"),
    ("no-checkpoint-storage", _spec(checkpoints__size=None), "spec.checkpoints"),
    ("claim-and-size", _spec(checkpoints__claimName="mine"), "spec.checkpoints"),
    ("storageclass-without-size", _spec(checkpoints__size=None, checkpoints__claimName="c", checkpoints__storageClass="fast"), "spec.checkpoints"),
    ("zero-gpus-with-accelerator", _spec(resources__gpusPerWorker=0), "spec.resources"),
    ("gpus-without-accelerator", _spec(resources__accelerator=None, resources__gpusPerWorker=2), "spec.resources"),
    ("translate-with-en-model", _spec(model__task="translate"), "spec.model"),
    ("stage-with-auto", _spec(training__deepspeed={"mode": "auto", "stage": 2}), "spec.training.deepspeed"),
    ("explicit-without-stage", _spec(training__deepspeed={"mode": "explicit"}), "spec.training.deepspeed"),
    ("offload-params-stage-2", _spec(training__deepspeed={"mode": "explicit", "stage": 2, "offloadParams": True}), "spec.training.deepspeed"),
    ("min-above-max-duration", _spec(dataset__minDurationSeconds=20, dataset__maxDurationSeconds=10), "spec.dataset"),
    ("wrong-type", _spec(training__maxSteps="many"), "spec.training.maxSteps"),
    ("negative-learning-rate", _spec(training__learningRate=-0.001), "spec.training.learningRate"),
    ("zero-workers", _spec(resources__workers=0), "spec.resources.workers"),
    ("negative-restarts", _spec(maxRestarts=-1), "spec.maxRestarts"),
    ("over-30s-clips", _spec(dataset__maxDurationSeconds=60), "spec.dataset.maxDurationSeconds"),
    ("bad-enum", _spec(training__precision="fp8"), "spec.training.precision"),
    ("bad-quantity", _spec(resources__memory="lots"), "spec.resources.memory"),
    ("bad-accelerator-name", _spec(resources__accelerator="NVIDIA L4"), "spec.resources.accelerator"),
    ("unknown-field", _spec(training__lr=0.1), "spec.training.lr"),
    ("inline-token", _spec(hfToken="hf_abcdefghijklmnop"), "spec.hfToken"),
    ("inline-secret-in-ref", _spec(hfTokenSecretRef={"name": "hf", "value": "hf_abcdefghijklmnop"}), "spec.hfTokenSecretRef.value"),
    ("keep-claim-you-bring", _spec(checkpoints__size=None, checkpoints__claimName="mine", checkpoints__keepClaim=True), "spec.checkpoints.keepClaim"),
    ("offload-optimizer-stage-0", _spec(training__deepspeed={"mode": "explicit", "stage": 0, "offloadOptimizer": True}), "spec.training.deepspeed.offloadOptimizer"),
    ("name-too-long", _name("bad-" + "x" * 40), "metadata.name must be at most 40"),
    ("name-with-dots", _name("bad-a.b"), "metadata.name must be a DNS-1035 label"),
]  # fmt: skip


def test_invalid_resources_are_refused_naming_the_field(
    cluster: ControlPlane,
    kube: Kube,
    namespace: str,
    operator_factory: Callable[..., OperatorProcess],
) -> None:
    op = operator_factory("bad-input", [namespace])
    problems = []
    for case, mutate, field in INVALID:
        doc = finetune(f"bad-{case}")
        mutate(doc)
        out = cluster.kubectl("create", "-n", namespace, "-f", "-", input=dump(doc), check=False)
        message = out.stderr.strip()
        if out.returncode == 0:
            problems.append(f"{case}: accepted by the API server")
        elif field not in message:
            problems.append(f"{case}: message does not name {field}: {message}")
    assert not problems, "\n".join(problems)
    assert kube.items("wft", namespace) == []
    assert "bad-" not in op.log(), "a refused resource reached the operator"


def test_every_shipped_example_passes_the_api_servers_validation(
    cluster: ControlPlane, namespace: str, wft_crd: Any
) -> None:
    """The CEL rules run only in the API server, so the examples are checked there."""
    examples = sorted(EXAMPLES.glob("*.yaml"))
    assert len(examples) >= 4
    for path in examples:
        out = cluster.kubectl(
            "apply", "--dry-run=server", "-n", namespace, "-f", str(path), check=False
        )
        assert out.returncode == 0, f"{path.name}: {out.stderr}"
        assert "(server dry run)" in out.stdout


def test_immutable_fields_cannot_change(
    cluster: ControlPlane, kube: Kube, namespace: str, wft_crd: Any
) -> None:
    doc = finetune("fixed")
    cluster.kubectl("create", "-n", namespace, "-f", "-", input=dump(doc))
    for path, value, field in [
        (("model", "name"), "openai/whisper-base", "spec.model"),
        (("checkpoints", "size"), "20Gi", "spec.checkpoints"),
    ]:
        changed = finetune("fixed")
        changed["spec"][path[0]] = {**changed["spec"][path[0]], path[1]: value}
        out = cluster.kubectl("apply", "-n", namespace, "-f", "-", input=dump(changed), check=False)
        assert out.returncode != 0, f"{'.'.join(path)} changed on a live resource"
        assert field in out.stderr and "immutable" in out.stderr, out.stderr


def test_unservable_accelerator_ends_in_a_condition_not_a_crash_loop(
    cluster: ControlPlane,
    kube: Kube,
    namespace: str,
    operator_factory: Callable[..., OperatorProcess],
) -> None:
    op = operator_factory("unservable", [namespace])
    name = "wants-t4"
    cluster.kubectl(
        "apply", "-n", namespace, "-f", "-", input=dump(finetune(name, resources={"accelerator": UNKNOWN_ACCELERATOR}))
    )  # fmt: skip
    obj: dict[str, Any] = kube.wait(
        "phase Failed",
        lambda: o if phase(o := kube.wft(namespace, name)) == "Failed" else None,
        timeout=60,
    )
    failed = condition(obj, "Failed")
    assert failed is not None and failed["status"] == "True"
    assert UNKNOWN_ACCELERATOR in failed["message"], failed
    assert failed["reason"], failed
    assert kube.rayjob(namespace, rayjob_name(name, 1)) is None, (
        "scheduled although no pool serves it"
    )

    # Stable: no retries piling up events, the operator still alive and healthy.
    events_before = len(kube.events(namespace, name))
    time.sleep(5)
    assert len(kube.events(namespace, name)) == events_before
    assert op.proc.alive()
    op.wait_ready(timeout=5)
    assert "Traceback" not in op.log()
