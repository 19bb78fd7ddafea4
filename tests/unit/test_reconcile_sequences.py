"""The reconcile driven through sequences against an in-memory API: ticks,
spec edits, transient errors and interleavings. Each bug the review found has
its sequence here; the e2e suite repeats the important ones on a real server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from fake_cluster import FakeCluster, Fault

from whisperft import names
from whisperft.operator import startup
from whisperft.operator.act import Conflict, CreateError, run_pass
from whisperft.operator.api.status import WhisperFineTuneStatus
from whisperft.operator.decide import SpecEdit
from whisperft.operator.render.meta import rayjob_name
from whisperft.operator.settings import Settings

pytestmark = pytest.mark.unit

NS = "ml"
MINIMAL = Path(__file__).parents[2] / "manifests" / "examples" / "minimal.yaml"


def now() -> str:
    return "2026-12-02T08:00:00Z"


class Operator:
    """What the Kopf handlers do, minus Kopf."""

    def __init__(self, cluster: FakeCluster) -> None:
        self.cluster = cluster
        self.settings = Settings()

    def tick(
        self,
        name: str,
        body: dict[str, Any] | None = None,
        rayjobs: Any = None,
        pods: list[dict[str, Any]] = (),  # type: ignore[assignment]
        at: str | None = None,
    ) -> Any:
        problems = tuple(p for p in (startup.pod_problem(pod) for pod in pods) if p)
        return run_pass(
            self.cluster,
            body or self.cluster.finetune(NS, name),
            rayjobs,
            self.settings,
            (lambda: at) if at else now,
            startup_problems=problems,
        )

    def edit(self, name: str, patch: dict[str, Any], body: dict[str, Any] | None = None) -> Any:
        old, new = self.cluster.edit_spec(NS, name, patch)
        return run_pass(
            self.cluster,
            body or self.cluster.finetune(NS, name),
            None,
            self.settings,
            now,
            edit=SpecEdit(old, new),
        )


def finetune(name: str = "ft", **spec: Any) -> dict[str, Any]:
    doc = yaml.safe_load(MINIMAL.read_text())
    doc["metadata"] = {"name": name, "namespace": NS}
    doc["spec"].update(spec)
    return dict(doc)


@pytest.fixture
def cluster() -> FakeCluster:
    return FakeCluster()


@pytest.fixture
def op(cluster: FakeCluster) -> Operator:
    return Operator(cluster)


def status(cluster: FakeCluster, name: str = "ft") -> dict[str, Any]:
    return dict(cluster.finetune(NS, name).get("status") or {})


def cond(cluster: FakeCluster, kind: str, name: str = "ft") -> dict[str, Any]:
    return next(c for c in status(cluster, name).get("conditions", []) if c["type"] == kind)


FAILED = {"jobDeploymentStatus": "Failed", "jobStatus": "FAILED", "reason": "AppFailed"}
RUNNING = {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"}


def test_first_pass_creates_attempt_one_and_one_status_write(
    cluster: FakeCluster, op: Operator
) -> None:
    cluster.apply_finetune(finetune())
    out = op.tick("ft")
    assert cluster.rayjob_names(NS) == ["ft-1"]
    assert [c[0] for c in cluster.calls].count("patch_status") == 1 and out.wrote
    st = status(cluster)
    assert (st["phase"], st["attempt"], st["restarts"], st["rayJobName"]) == (
        "Pending",
        1,
        0,
        "ft-1",
    )
    WhisperFineTuneStatus.model_validate(st)
    # Once the RayJob is observed, an idle pass changes nothing and writes nothing.
    op.tick("ft")
    cluster.calls.clear()
    assert op.tick("ft").wrote is False
    assert "patch_status" not in [c[0] for c in cluster.calls]


def test_a_20k_failure_message_ends_failed_with_a_bounded_message(
    cluster: FakeCluster, op: Operator
) -> None:
    cluster.apply_finetune(finetune(maxRestarts=0))
    op.tick("ft")
    huge = (
        "Job entrypoint command failed with exit code 1, last available logs:\n"
        + ("x" * 20_000)
        + "\nRuntimeError: the last line"
    )
    cluster.set_rayjob_status(NS, "ft-1", {**FAILED, "message": huge})
    op.tick("ft")
    st = status(cluster)
    assert st["phase"] == "Failed"
    assert len(st["message"]) <= 4096 and "RuntimeError: the last line" in st["message"][-200:]
    assert "characters omitted" in st["message"]
    assert all(len(c["message"]) <= 4096 for c in st["conditions"])
    WhisperFineTuneStatus.model_validate(st)  # what the CRD schema would accept
    assert all(len(m) <= 1024 for _, _, m in cluster.events)


def test_transient_create_errors_do_not_spend_restarts(cluster: FakeCluster, op: Operator) -> None:
    """Two API errors while creating attempt 2 used to count two restarts (maxRestarts 1:
    Failed, without attempt 2 ever running)."""
    cluster.apply_finetune(finetune(maxRestarts=1))
    op.tick("ft")
    cluster.set_rayjob_status(NS, "ft-1", FAILED)
    cluster.faults.append(
        Fault(
            "create_or_get",
            CreateError("503 Service Unavailable", 503),
            times=2,
            when=lambda kind, name: kind == "RayJob" and name == "ft-2",
        )
    )
    op.tick("ft", at="2026-12-02T08:00:00Z")
    st = status(cluster)
    assert (st["attempt"], st["restarts"], st["createFailures"]) == (1, 0, 1)
    assert cond(cluster, "Ready")["reason"] == "CreateFailed"
    assert "503" in cond(cluster, "Ready")["message"]
    index = cluster.list_rayjobs(NS, "ft")  # what the timer gets from its watch
    cluster.calls.clear()
    op.tick("ft", rayjobs=index, at="2026-12-02T08:00:05Z")  # backing off: no call at all
    assert [c[0] for c in cluster.calls] == []
    op.tick("ft", at="2026-12-02T08:00:10Z")
    assert (status(cluster)["restarts"], status(cluster)["createFailures"]) == (0, 2)
    op.tick("ft", at="2026-12-02T08:00:29Z")  # 20 s after the 2nd failure: still waiting
    assert status(cluster)["createFailures"] == 2
    op.tick("ft", at="2026-12-02T08:00:30Z")  # the API answers again
    st = status(cluster)
    assert (st["attempt"], st["restarts"], st["phase"], st["createFailures"]) == (
        2,
        1,
        "Pending",
        0,
    )
    assert cluster.rayjob_names(NS) == ["ft-2"]  # attempt 1's RayJob freed once 2 exists
    # Events back off: the 1st and 2nd failure, then none until the 4th.
    assert [r for _, r, _ in cluster.events].count("CreateFailed") == 2


def test_create_errors_reach_a_condition_on_the_first_failure(
    cluster: FakeCluster, op: Operator
) -> None:
    cluster.apply_finetune(finetune())
    cluster.faults.append(
        Fault(
            "create_or_get",
            CreateError("404 Not Found", 404),
            when=lambda kind, name: kind == "RayJob",
        )
    )
    op.tick("ft", at="2026-12-02T08:00:00Z")
    c = cond(cluster, "Ready")
    assert c["status"] == "False" and c["reason"] == "CreateFailed"
    assert "KubeRay" in c["message"]
    assert status(cluster).get("attempt") is None  # nothing was started
    op.tick("ft", at="2026-12-02T08:00:10Z")
    assert status(cluster)["attempt"] == 1 and cluster.rayjob_names(NS) == ["ft-1"]


def test_an_ownership_conflict_is_a_condition_naming_the_object(
    cluster: FakeCluster, op: Operator
) -> None:
    cluster.apply_finetune(finetune())
    cluster.add_foreign_rayjob(NS, "ft-1", "ft")
    op.tick("ft")
    c = cond(cluster, "Ready")
    assert c["reason"] == "NameConflict" and "RayJob ml/ft-1 exists" in c["message"]


def test_resume_cannot_race_the_timer_into_two_rayjobs(cluster: FakeCluster, op: Operator) -> None:
    """The timer decided from a body read before the resume made attempt 2 (and deleted
    attempt 1's RayJob): it must not recreate attempt 1 next to attempt 2."""
    cluster.apply_finetune(finetune())
    op.tick("ft")
    cluster.set_rayjob_status(NS, "ft-1", RUNNING)
    op.tick("ft")
    op.edit("ft", {"suspend": True})
    cluster.set_rayjob_status(NS, "ft-1", {"jobDeploymentStatus": "Suspended"})
    op.tick("ft")
    op.edit("ft", {"training": {"learningRate": 3e-5}})  # pending while suspended
    stale_body = cluster.finetune(NS, "ft")
    stale_index = cluster.list_rayjobs(NS, "ft")
    op.edit("ft", {"suspend": False})  # resume: attempt 2
    assert cluster.rayjob_names(NS) == ["ft-2"]
    op.tick("ft", body=stale_body, rayjobs=stale_index)  # the late timer pass
    assert cluster.rayjob_names(NS) == ["ft-2"]
    st = status(cluster)
    assert (st["attempt"], st["rayJobName"], st["restarts"]) == (2, "ft-2", 0)


def test_a_stale_write_cannot_drop_update_pending(cluster: FakeCluster, op: Operator) -> None:
    cluster.apply_finetune(finetune())
    op.tick("ft")
    cluster.set_rayjob_status(NS, "ft-1", RUNNING)
    stale = cluster.finetune(NS, "ft")  # the timer's copy, before the edit below
    op.edit("ft", {"training": {"learningRate": 3e-5}})
    assert cond(cluster, "UpdatePending")["status"] == "True"
    out = op.tick("ft", body=stale, rayjobs=cluster.list_rayjobs(NS, "ft"))
    assert out.passes == 2  # the stale write was refused and the pass decided again
    assert cond(cluster, "UpdatePending")["status"] == "True"
    assert status(cluster)["phase"] == "Running"


def test_a_fixed_spec_after_a_refused_resume_starts_a_new_attempt(
    cluster: FakeCluster, op: Operator
) -> None:
    """Used to re-plan the old, suspended attempt and show 'suspended by its queue' forever."""
    cluster.apply_finetune(finetune())
    op.tick("ft")
    cluster.set_rayjob_status(NS, "ft-1", RUNNING)
    op.tick("ft")
    op.edit("ft", {"suspend": True})
    cluster.set_rayjob_status(NS, "ft-1", {"jobDeploymentStatus": "Suspended"})
    op.tick("ft")
    op.edit("ft", {"resources": {"accelerator": "nvidia-t4"}})  # no such pool
    op.edit("ft", {"suspend": False})  # resume: refused before any GPU is asked for
    assert cond(cluster, "Planned")["status"] == "False"
    assert cond(cluster, "Planned")["reason"] == "UnknownAccelerator"
    op.edit("ft", {"resources": {"accelerator": "nvidia-l4"}})
    st = status(cluster)
    assert cond(cluster, "Planned")["status"] == "True"
    assert (st["attempt"], st["rayJobName"], st["phase"]) == (2, "ft-2", "Pending")
    assert cluster.rayjob_names(NS) == ["ft-2"]
    cluster.set_rayjob_status(NS, "ft-2", RUNNING)
    op.tick("ft")
    assert status(cluster)["phase"] == "Running"


def test_only_rayjobs_it_controls_are_suspended_or_deleted(
    cluster: FakeCluster, op: Operator
) -> None:
    """status.rayJobName is writable by the trainer's account: it must not steer deletes."""
    cluster.apply_finetune(finetune(maxRestarts=1))
    op.tick("ft")
    cluster.add_foreign_rayjob(NS, "victim", "ft")
    cluster.trainer_patch(NS, "ft", {"rayJobName": "victim"})
    op.edit("ft", {"suspend": True})
    assert cluster.rayjob(NS, "victim")["spec"]["suspend"] is False
    assert cluster.rayjob(NS, "ft-1")["spec"]["suspend"] is True
    op.edit("ft", {"suspend": False})
    cluster.set_rayjob_status(NS, "ft-1", FAILED)
    op.tick("ft")  # retry: attempt 2, attempt 1 deleted, the victim left alone
    assert cluster.rayjob_names(NS) == ["ft-2", "victim"]
    deletes = [args for m, args in cluster.calls if m == "delete_rayjob"]
    assert all(name != "victim" for name, _ in deletes)


def test_a_crash_between_create_and_status_write_adopts_the_new_attempt(
    cluster: FakeCluster, op: Operator
) -> None:
    cluster.apply_finetune(finetune(maxRestarts=2))
    op.tick("ft")
    cluster.set_rayjob_status(NS, "ft-1", FAILED)
    cluster.faults.append(Fault("patch_status", RuntimeError("operator killed")))
    with pytest.raises(RuntimeError):
        op.tick("ft")
    assert cluster.rayjob_names(NS) == ["ft-2"]  # created and the old one deleted
    assert status(cluster)["attempt"] == 1  # ... but the status never said so
    op.tick("ft")
    st = status(cluster)
    assert (st["attempt"], st["rayJobName"]) == (2, "ft-2")
    assert cluster.rayjob_names(NS) == ["ft-2"]


def test_progress_of_an_earlier_attempt_does_not_mix_into_a_new_one(
    cluster: FakeCluster, op: Operator
) -> None:
    cluster.apply_finetune(finetune(maxRestarts=1))
    op.tick("ft")
    cluster.set_rayjob_status(NS, "ft-1", RUNNING)
    cluster.trainer_patch(NS, "ft", {"progress": {"attempt": 1, "step": 120, "totalSteps": 200}})
    op.tick("ft")
    assert status(cluster)["progressText"] == "120/200 (60%)"
    cluster.set_rayjob_status(NS, "ft-1", FAILED)
    op.tick("ft")
    st = status(cluster)
    assert st["attempt"] == 2 and "progress" not in st and "progressText" not in st
    # attempt 1's dying trainer reports once more: ignored for attempt 2
    cluster.trainer_patch(NS, "ft", {"progress": {"attempt": 1, "step": 130, "totalSteps": 200}})
    cluster.set_rayjob_status(NS, "ft-2", RUNNING)
    op.tick("ft")
    assert "progressText" not in status(cluster)
    cluster.trainer_patch(NS, "ft", {"progress": {"attempt": 2, "step": 121, "totalSteps": 200}})
    op.tick("ft")
    assert status(cluster)["progressText"] == "121/200 (60%)"


def test_the_final_wer_and_exported_model_reach_status_and_leave_with_their_attempt(
    cluster: FakeCluster, op: Operator
) -> None:
    from whisperft.trainer.progress import Progress

    cluster.apply_finetune(finetune(maxRestarts=1))
    op.tick("ft")
    cluster.set_rayjob_status(NS, "ft-1", RUNNING)
    final = Progress(
        step=200, total_steps=200, epoch=2.0, test_wer_before=0.343, test_wer_after=0.079,
        best_step=150, last_checkpoint="/checkpoints/ft/checkpoint_step_00000200",
        model_path="/checkpoints/ft/output/model", attempt=1,
    )  # fmt: skip
    cluster.trainer_patch(NS, "ft", final.status_patch()["status"])
    op.tick("ft")
    st = WhisperFineTuneStatus.model_validate(status(cluster))
    assert st.model is not None and (st.model.path, st.model.step) == (final.model_path, 200)
    assert st.model.checkpoint == final.last_checkpoint and st.progress is not None
    assert st.progress.best_step == 150
    # the attempt fails after exporting: attempt 2 starts without attempt 1's model
    cluster.set_rayjob_status(NS, "ft-1", FAILED)
    op.tick("ft")
    st2 = status(cluster)
    assert st2["attempt"] == 2 and "model" not in st2 and "progress" not in st2
    assert st2["lastCheckpoint"] == final.last_checkpoint  # same run directory: still resumable
    final.attempt = 2
    cluster.set_rayjob_status(NS, "ft-2", RUNNING)
    cluster.trainer_patch(NS, "ft", final.status_patch()["status"])
    cluster.set_rayjob_status(
        NS, "ft-2", {"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"}
    )
    op.tick("ft")
    done = status(cluster)
    assert done["phase"] == "Succeeded"
    assert "test WER 34.3% -> 7.9%" in done["message"]
    assert "model (step 200) at claim " in done["message"]
    assert "/checkpoints/ft/output/model; claim " in done["message"]


def _claim(cluster: FakeCluster, name: str = "ft") -> dict[str, Any]:
    from whisperft.operator.render.meta import checkpoint_claim_name

    return cluster.objects[("PersistentVolumeClaim", NS, checkpoint_claim_name(name))]


def _succeed(cluster: FakeCluster, op: Operator, body: dict[str, Any]) -> dict[str, Any]:
    cluster.apply_finetune(body)
    op.tick("ft")
    cluster.set_rayjob_status(NS, "ft-1", RUNNING)
    op.tick("ft")
    cluster.set_rayjob_status(
        NS, "ft-1", {"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"}
    )
    op.tick("ft")
    return status(cluster)


def test_a_succeeded_run_keeps_the_claim_holding_its_only_model(
    cluster: FakeCluster, op: Operator
) -> None:
    """keepClaim unset and no output.location: the claim is the model's only home, so
    success drops the fine-tune's owner reference and deleting it (or a GitOps
    prune) no longer garbage-collects the model."""
    cluster.apply_finetune(finetune())
    op.tick("ft")
    uid = cluster.finetune(NS, "ft")["metadata"]["uid"]
    # while it runs, the claim goes with the fine-tune (a failed run leaves nothing)
    assert [r["uid"] for r in _claim(cluster)["metadata"]["ownerReferences"]] == [uid]
    cluster.set_rayjob_status(NS, "ft-1", RUNNING)
    op.tick("ft")
    assert not [c for c in cluster.calls if c[0] == "release_claim"]
    cluster.set_rayjob_status(
        NS, "ft-1", {"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"}
    )
    op.tick("ft")
    done = status(cluster)
    assert done["phase"] == "Succeeded"
    md = _claim(cluster)["metadata"]
    assert "ownerReferences" not in md and names.ANNOTATION_KEPT in md["annotations"]
    assert "is kept when this WhisperFineTune is deleted" in done["message"]
    assert [r for _, r, _ in cluster.events].count("ClaimKept") == 1
    op.tick("ft")  # later passes neither patch the claim again nor repeat the event
    assert [c[0] for c in cluster.calls].count("release_claim") == 1
    assert [r for _, r, _ in cluster.events].count("ClaimKept") == 1


def test_keep_claim_false_lets_the_claim_go_with_the_fine_tune(
    cluster: FakeCluster, op: Operator
) -> None:
    done = _succeed(cluster, op, finetune(checkpoints={"size": "10Gi", "keepClaim": False}))
    assert done["phase"] == "Succeeded"
    assert _claim(cluster)["metadata"]["ownerReferences"]
    assert "release_claim" not in [c[0] for c in cluster.calls]
    assert "is kept" not in done["message"]


def test_only_a_created_claim_with_the_only_model_is_kept() -> None:
    from whisperft.operator.api.resource import parse_resource
    from whisperft.operator.decide import keeps_claim_on_success

    def keeps(**spec: Any) -> bool:
        return keeps_claim_on_success(parse_resource(finetune(**spec)).spec)

    assert keeps()
    assert not keeps(checkpoints={"size": "10Gi", "keepClaim": False})
    assert not keeps(checkpoints={"size": "10Gi", "keepClaim": True})  # never owned at all
    assert not keeps(checkpoints={"claimName": "team-ckpt"})  # never owned at all
    assert not keeps(output={"location": "gs://models/ft"})  # the claim is only scratch


def test_keep_claim_true_is_never_owned_and_a_brought_claim_is_never_touched(
    cluster: FakeCluster, op: Operator
) -> None:
    _succeed(cluster, op, finetune(checkpoints={"size": "10Gi", "keepClaim": True}))
    assert "ownerReferences" not in _claim(cluster)["metadata"]
    other = FakeCluster()
    done = _succeed(other, Operator(other), finetune(checkpoints={"claimName": "team-ckpt"}))
    assert done["phase"] == "Succeeded" and "is kept" not in done["message"]
    assert "release_claim" not in [c[0] for c in other.calls]


def test_a_claim_another_fine_tune_uses_is_not_mounted(cluster: FakeCluster, op: Operator) -> None:
    """A claim is a trust boundary: a second fine-tune naming a claim whose run
    directory belongs to another is refused before anything is created."""
    cluster.apply_finetune(finetune("alice", checkpoints={"claimName": "team-ckpt"}))
    op.tick("alice")
    assert cluster.rayjob_names(NS) == ["alice-1"]
    cluster.apply_finetune(finetune("mallory", checkpoints={"claimName": "team-ckpt"}))
    op.tick("mallory")
    assert cluster.rayjob_names(NS) == ["alice-1"]
    st = status(cluster, "mallory")
    assert st["phase"] == "Failed" and cond(cluster, "Planned", "mallory")["reason"] == "ClaimInUse"
    assert "spec.checkpoints.claimName" in st["message"] and "alice" in st["message"]
    # the operator-made claim of another fine-tune, named by hand
    cluster.apply_finetune(finetune("bob"))
    op.tick("bob")
    cluster.apply_finetune(finetune("eve", checkpoints={"claimName": "bob-checkpoints"}))
    op.tick("eve")
    assert "eve-1" not in cluster.rayjob_names(NS)
    assert "bob" in status(cluster, "eve")["message"]
    # a claim nobody else uses is fine, and so is the owner's own re-check
    cluster.apply_finetune(finetune("carol", checkpoints={"claimName": "carol-own"}))
    op.tick("carol")
    assert "carol-1" in cluster.rayjob_names(NS)
    cluster.set_rayjob_status(NS, "alice-1", FAILED)
    op.tick("alice")  # alice's retry still mounts her claim
    assert "alice-2" in cluster.rayjob_names(NS)


def test_a_missing_rayjob_is_recreated_for_the_same_attempt(
    cluster: FakeCluster, op: Operator
) -> None:
    cluster.apply_finetune(finetune())
    op.tick("ft")
    cluster.set_rayjob_status(NS, "ft-1", RUNNING)
    op.tick("ft")
    del cluster.objects[("RayJob", NS, "ft-1")]
    op.tick("ft")
    st = status(cluster)
    assert cluster.rayjob_names(NS) == ["ft-1"]
    assert (st["attempt"], st["restarts"], st["phase"]) == (1, 0, "Running")


def test_success_and_restarts_exhausted(cluster: FakeCluster, op: Operator) -> None:
    cluster.apply_finetune(finetune(name="ok"))
    cluster.apply_finetune(finetune(name="bad", maxRestarts=1))
    for name in ("ok", "bad"):
        op.tick(name)
    cluster.set_rayjob_status(
        NS, "ok-1", {"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"}
    )
    op.tick("ok")
    assert status(cluster, "ok")["phase"] == "Succeeded" and status(cluster, "ok")["completionTime"]
    cluster.set_rayjob_status(NS, "bad-1", FAILED)
    op.tick("bad")
    cluster.set_rayjob_status(NS, rayjob_name("bad", 2), FAILED)
    op.tick("bad")
    st = status(cluster, "bad")
    assert (st["phase"], st["restarts"]) == ("Failed", 1)
    assert cond(cluster, "Failed", "bad")["reason"] == "RestartsExhausted"
    # finished runs are left alone by later ticks
    cluster.calls.clear()
    op.tick("bad")
    assert not [c for c in cluster.calls if c[0] in ("create_or_get", "patch_status")]


def test_conflict_on_every_pass_gives_up_without_acting_twice(
    cluster: FakeCluster, op: Operator
) -> None:
    cluster.apply_finetune(finetune())
    cluster.faults.append(Fault("patch_status", Conflict("busy"), times=5))
    out = op.tick("ft")
    assert out.wrote is False and out.passes == 3
    assert cluster.rayjob_names(NS) == ["ft-1"]  # create-or-get: one RayJob however often


def _pending_pod(name: str, message: str, attempt: str = "1") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {"whisperft.io/attempt": attempt}},
        "status": {
            "phase": "Pending",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": message,
                }
            ],
        },
    }


def test_pods_that_cannot_start_say_why_then_fail_after_the_deadline(
    cluster: FakeCluster, op: Operator
) -> None:
    cluster.apply_finetune(finetune(startupDeadlineSeconds=600))
    op.tick("ft")
    why = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."
    pods = [_pending_pod("ft-1-head", why)]
    op.tick("ft", pods=pods, at="2026-12-02T08:00:00Z")
    c = cond(cluster, "Ready")
    assert (c["status"], c["reason"]) == ("False", "Unschedulable") and why in c["message"]
    assert status(cluster)["phase"] == "Pending" and why in status(cluster)["message"]
    op.tick("ft", pods=pods, at="2026-12-02T08:09:59Z")
    assert status(cluster)["phase"] == "Pending"
    op.tick("ft", pods=pods, at="2026-12-02T08:10:00Z")
    st = status(cluster)
    assert (
        st["phase"] == "Failed" and cond(cluster, "Failed")["reason"] == "StartupDeadlineExceeded"
    )
    assert why in st["message"] and "600 s" in st["message"]
    assert cluster.rayjob_names(NS) == []  # its pods' requests are freed
    op.tick("ft", at="2026-12-02T08:20:00Z")
    assert cluster.rayjob_names(NS) == [] and status(cluster)["restarts"] == 0  # not retried


def test_a_problem_that_clears_clears_its_clock(cluster: FakeCluster, op: Operator) -> None:
    cluster.apply_finetune(finetune())
    op.tick("ft")
    claim = 'persistentvolumeclaim "mine" not found'
    op.tick("ft", pods=[_pending_pod("ft-1-head", claim)], at="2026-12-02T08:00:00Z")
    assert cond(cluster, "Ready")["reason"] == "ClaimNotBound"
    assert status(cluster)["startupProblemSince"] == "2026-12-02T08:00:00Z"
    cluster.set_rayjob_status(NS, "ft-1", RUNNING)
    op.tick("ft", at="2026-12-02T08:05:00Z")
    st = status(cluster)
    assert st["phase"] == "Running" and "startupProblemSince" not in st
    # pods of an earlier attempt are not this attempt's problem
    op.tick("ft", pods=[_pending_pod("old", claim, attempt="7")], at="2026-12-02T08:06:00Z")
    assert status(cluster)["phase"] == "Running"


def test_a_preempted_attempt_resumes_without_spending_a_restart(
    cluster: FakeCluster, op: Operator
) -> None:
    # maxRestarts 0: a failure ends the run, a preemption does not.
    cluster.apply_finetune(finetune(maxRestarts=0))
    op.tick("ft")
    cluster.set_rayjob_status(NS, "ft-1", RUNNING)
    cluster.trainer_patch(
        NS, "ft", {"progress": {"attempt": 1, "step": 57, "totalSteps": 200, "preemptedAtStep": 57}}
    )
    cluster.set_rayjob_status(NS, "ft-1", FAILED)
    op.tick("ft")
    st = status(cluster)
    assert (st["attempt"], st.get("restarts", 0), st["preemptions"]) == (2, 0, 1), st
    assert st["phase"] == "Pending" and "progress" not in st
    assert any(e[1] == "Preempted" and "step 57" in e[2] for e in cluster.events), cluster.events
    # The next attempt failing for real is a failure: no restarts left.
    cluster.set_rayjob_status(NS, rayjob_name("ft", 2), RUNNING)
    cluster.trainer_patch(NS, "ft", {"progress": {"attempt": 2, "step": 80, "totalSteps": 200}})
    cluster.set_rayjob_status(NS, rayjob_name("ft", 2), FAILED)
    op.tick("ft")
    st = status(cluster)
    assert (st["phase"], st["attempt"], st["preemptions"]) == ("Failed", 2, 1)
    # An earlier attempt's preemption report never makes a later failure a preemption.
    cluster.apply_finetune(finetune(name="old", maxRestarts=1))
    op.tick("old")
    cluster.set_rayjob_status(NS, "old-1", FAILED)
    op.tick("old")  # attempt 2, one restart spent
    cluster.trainer_patch(NS, "old", {"progress": {"attempt": 1, "preemptedAtStep": 3}})
    cluster.set_rayjob_status(NS, rayjob_name("old", 2), FAILED)
    op.tick("old")
    st = status(cluster, "old")
    assert (st["phase"], st["restarts"]) == ("Failed", 1) and "preemptions" not in st, st


def test_a_resume_with_another_worker_count_is_refused_naming_both(
    cluster: FakeCluster, op: Operator
) -> None:
    """Used to start the attempt, whose trainer then failed the resume on every restart."""
    cluster.apply_finetune(finetune(resources={"accelerator": None, "workers": 2}))
    op.tick("ft")
    cluster.set_rayjob_status(NS, "ft-1", RUNNING)
    cluster.trainer_patch(NS, "ft", {"lastCheckpoint": "/checkpoints/ft/checkpoint_step_00000100"})
    op.tick("ft")
    op.edit("ft", {"suspend": True})
    cluster.set_rayjob_status(NS, "ft-1", {"jobDeploymentStatus": "Suspended"})
    op.tick("ft")
    op.edit("ft", {"resources": {"accelerator": None, "workers": 4}})
    op.edit("ft", {"suspend": False})
    planned = cond(cluster, "Planned")
    assert planned["status"] == "False" and planned["reason"] == "InvalidSpec"
    assert "written by 2 train workers" in planned["message"] and "needs 4" in planned["message"]
    assert cluster.rayjob_names(NS) == ["ft-1"]  # nothing new was created
    # Back to 2 workers: the resume goes ahead as a new attempt on the same checkpoints.
    op.edit("ft", {"resources": {"accelerator": None, "workers": 2}})
    assert (status(cluster)["attempt"], cluster.rayjob_names(NS)) == (2, ["ft-2"])
    assert cond(cluster, "Planned")["status"] == "True"


def test_another_worker_count_before_any_checkpoint_is_fine(
    cluster: FakeCluster, op: Operator
) -> None:
    cluster.apply_finetune(finetune(resources={"accelerator": None, "workers": 2}))
    op.tick("ft")
    op.edit("ft", {"suspend": True})
    cluster.set_rayjob_status(NS, "ft-1", {"jobDeploymentStatus": "Suspended"})
    op.tick("ft")
    op.edit("ft", {"resources": {"accelerator": None, "workers": 4}})
    op.edit("ft", {"suspend": False})
    assert cond(cluster, "Planned")["status"] == "True" and status(cluster)["attempt"] == 2


def test_a_bucket_run_says_its_checkpoints_are_in_the_bucket(
    cluster: FakeCluster, op: Operator
) -> None:
    cluster.apply_finetune(finetune(output={"location": "s3://models/runs/ft"}))
    op.tick("ft")
    st = status(cluster)
    assert st["checkpointPath"] == "s3://models/runs/ft/checkpoints/ft", st
    assert st["phase"] == "Pending" and cluster.rayjob_names(NS) == ["ft-1"]
