"""What the trainer's rank 0 patches is exactly what the CRD's status accepts."""

from __future__ import annotations

import pytest

from whisperft import names
from whisperft.operator.api.status import WhisperFineTuneStatus
from whisperft.trainer.progress import LogSink, Progress, StatusSink, sink_from_env

pytestmark = pytest.mark.unit


def test_status_patch_validates_against_the_status_model() -> None:
    p = Progress(
        step=10,
        total_steps=40,
        epoch=0.8,
        loss=0.4321,
        eval_wer=0.25,
        best_eval_wer=0.2,
        best_step=8,
        test_wer_before=0.34,
        test_wer_after=0.1,
        samples_per_second=3.1,
        last_checkpoint="/ckpt/run/checkpoint_step_00000010",
    )
    patch = p.status_patch()
    assert set(patch) == {"status"}
    status = WhisperFineTuneStatus.model_validate(patch["status"])  # extra="forbid"
    assert status.progress is not None
    assert status.progress.step == 10 and status.progress.total_steps == 40
    assert status.progress.eval_wer == 0.25 and status.last_checkpoint.endswith("00000010")
    assert (status.progress.test_wer_before, status.progress.test_wer_after) == (0.34, 0.1)
    assert (status.progress.best_eval_wer, status.progress.best_step) == (0.2, 8)
    # the trainer never writes what the operator owns
    assert set(patch["status"]) == {"progress", "lastCheckpoint"}


def test_unknown_values_are_left_out_not_nulled() -> None:
    patch = Progress(step=1, total_steps=4, epoch=0.1).status_patch()["status"]
    assert "lastCheckpoint" not in patch
    assert set(patch["progress"]) == {"step", "totalSteps", "epoch", "updatedAt"}
    WhisperFineTuneStatus.model_validate(patch)


def test_sink_from_env_picks_the_status_sink_only_on_a_cluster(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert isinstance(sink_from_env({}), LogSink)
    assert isinstance(sink_from_env({names.ENV_FINETUNE_NAME: "x"}), LogSink)
    made: list[tuple[str, str, int | None]] = []
    monkeypatch.setattr(
        StatusSink, "__init__", lambda self, n, ns, attempt: made.append((n, ns, attempt))
    )
    env = {names.ENV_FINETUNE_NAME: "wft", names.ENV_FINETUNE_NAMESPACE: "ml"}
    assert isinstance(sink_from_env(env), StatusSink)
    assert isinstance(sink_from_env({**env, names.ENV_ATTEMPT: "3"}), StatusSink)
    # the attempt the operator rendered into the pod stamps every report
    assert made == [("wft", "ml", None), ("wft", "ml", 3)]
