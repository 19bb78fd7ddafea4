"""What the trainer's rank 0 patches is exactly what the CRD's status accepts."""

from __future__ import annotations

from typing import Any

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


def test_exported_model_says_which_weights_and_formats() -> None:
    """The best evaluated checkpoint's weights, not the last step's, and the ct2 copy."""
    p = Progress(
        step=40,
        total_steps=40,
        epoch=3.0,
        last_checkpoint="/ckpt/run/checkpoint_step_00000040",
        model_path="/ckpt/run/output/model",
        model_step=20,
        model_checkpoint="/ckpt/run/checkpoint_step_00000020",
        model_selected="bestEval",
        model_formats=["hf", "ct2"],
        attempt=2,
    )
    status = WhisperFineTuneStatus.model_validate(p.status_patch()["status"])
    assert status.model is not None
    assert (status.model.step, status.model.selected) == (20, "bestEval")
    assert status.model.checkpoint is not None and status.model.checkpoint.endswith("00000020")
    assert status.model.formats == ["hf", "ct2"]
    assert status.last_checkpoint is not None and status.last_checkpoint.endswith("00000040")
    # a trainer that exported the final weights (older ones, too) still validates
    last = Progress(step=4, total_steps=4, epoch=1.0, model_path="/m", last_checkpoint="/c4")
    model = WhisperFineTuneStatus.model_validate(last.status_patch()["status"]).model
    assert model is not None and (model.step, model.checkpoint, model.selected) == (4, "/c4", None)


class _SlowApi:
    """patch_namespaced_custom_object_status that blocks until released."""

    def __init__(self) -> None:
        import threading

        self.release = threading.Event()
        self.entered = threading.Event()
        self.patches: list[dict[str, Any]] = []
        self.timeouts: list[Any] = []

    def patch_namespaced_custom_object_status(self, *args: Any, **kw: Any) -> None:
        self.entered.set()
        assert self.release.wait(30), "never released"
        self.patches.append(args[-1])
        self.timeouts.append(kw.get("_request_timeout"))


def test_a_stalled_api_server_never_blocks_a_report_and_reports_coalesce() -> None:
    import threading

    api = _SlowApi()
    sink = StatusSink("wft", "ml", 2, api=api, timeout_s=7.0)
    sink.publish(Progress(step=1, total_steps=4, epoch=0.1, loss=2.0))
    assert api.entered.wait(30)  # the first patch is now stuck in the API call
    done = threading.Event()

    def training_steps() -> None:
        sink.publish(Progress(step=2, total_steps=4, epoch=0.2, loss=1.5, eval_wer=0.3))
        sink.publish(Progress(step=3, total_steps=4, epoch=0.3, loss=1.2, last_checkpoint="/c3"))
        done.set()

    threading.Thread(target=training_steps, daemon=True).start()
    assert done.wait(30), "publish blocked on a stalled API server"
    assert not sink.flush(timeout_s=0.01)  # still stuck: flush gives up, bounded
    api.release.set()
    assert sink.flush(timeout_s=30)
    first, second = api.patches
    assert first["status"]["progress"]["step"] == 1
    # the two reports made meanwhile went as one patch, the newest value of each field
    # winning and the eval WER of the earlier one kept
    progress = second["status"]["progress"]
    assert (progress["step"], progress["loss"], progress["evalWer"]) == (3, 1.2, 0.3)
    assert second["status"]["lastCheckpoint"] == "/c3" and progress["attempt"] == 2
    assert api.timeouts == [7.0, 7.0]  # every call is bounded
    WhisperFineTuneStatus.model_validate(second["status"])


def test_a_failing_patch_is_logged_and_training_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    class Down:
        def patch_namespaced_custom_object_status(self, *a: Any, **kw: Any) -> None:
            raise ConnectionError("connection refused")

    sink = StatusSink("wft", "ml", None, api=Down())
    sink.publish(Progress(step=1, total_steps=4, epoch=0.1))
    assert sink.flush(timeout_s=30)
    assert "could not publish progress to ml/wft: connection refused" in caplog.text
