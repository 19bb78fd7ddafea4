"""The Python API builds, validates and resolves through the same code as the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from whisperft.client import FineTune, Summary
from whisperft.operator.api.resource import SpecError, load_resource_file
from whisperft.operator.api.status import WhisperFineTuneStatus
from whisperft.trainer.cli_train import load_config

pytestmark = pytest.mark.unit

DEMO = Path(__file__).parents[2] / "examples" / "demo.yaml"


def test_load_is_the_file_and_the_cli_resolves_it_alike() -> None:
    ft = FineTune.load(DEMO)
    assert ft.resource == load_resource_file(DEMO)
    assert ft.local_config() == load_config(str(DEMO), [])


def test_build_takes_either_key_style_and_equals_the_file() -> None:
    file = FineTune.load(DEMO)
    spec = file.resource.to_wire()["spec"]
    built = FineTune.build("demo", **spec)
    assert built.resource == file.resource
    snake = FineTune.build(
        "t",
        dataset={"path": "bundled:en"},
        training={"max_steps": 3, "batch_size_per_worker": 2},
        checkpoints={"size": "1Gi"},
        model={"name": "bundled:tiny.en"},
    )
    assert snake.spec.training.batch_size_per_worker == 2


def test_with_values_and_overrides_validate_like_the_file() -> None:
    ft = FineTune.load(DEMO)
    small = ft.with_values({"spec.training.maxSteps": 3, "spec.resources.workers": 1})
    assert (small.spec.training.max_steps, small.spec.resources.workers) == (3, 1)
    assert ft.spec.training.max_steps == 120  # a copy, not a mutation
    assert ft.with_overrides(["spec.training.maxSteps=7"]).spec.training.max_steps == 7
    with pytest.raises(SpecError, match=r"spec\.training\.maxSteps"):
        ft.with_values({"spec.training.maxSteps": "3"})  # quoted: refused, as the server does
    with pytest.raises(SpecError, match=r"spec\.training\.maxSteps"):
        ft.with_values({"spec.training.maxSteps": 0})


def test_the_language_is_checked_on_construction() -> None:
    with pytest.raises(SpecError) as err:
        FineTune.load(DEMO).with_values({"spec.model.language": "sw"})
    assert "spec.model.language" in str(err.value) and "English-only" in str(err.value)
    ok = FineTune.load(DEMO).with_values(
        {
            "spec.model.name": "bundled:base",
            "spec.model.language": "lg",
            "spec.model.trainAsLanguage": "sw",
        }
    )
    assert ok.spec.model.train_as_language == "sw"


def test_yaml_round_trip() -> None:
    ft = FineTune.load(DEMO)
    again = FineTune.from_dict(__import__("yaml").safe_load(ft.to_yaml()))
    assert again == ft


def test_summaries_from_results_and_from_status_agree() -> None:
    results = {
        "steps": 40,
        "test_wer_before": 0.34,
        "test_wer_after": 0.08,
        "eval_wer": 0.09,
        "best_eval_wer": 0.085,
        "best_step": 30,
    }
    status = WhisperFineTuneStatus.model_validate(
        {
            "phase": "Succeeded",
            "progress": {
                "step": 40,
                "totalSteps": 40,
                "testWerBefore": 0.34,
                "testWerAfter": 0.08,
                "evalWer": 0.09,
                "bestEvalWer": 0.085,
                "bestStep": 30,
            },
        }
    )
    a, b = Summary.from_results(results), Summary.from_status(status)
    assert a == b
    assert str(a) == "Succeeded: step 40/40, test WER 34.00% -> 8.00%"
    assert Summary.from_status(None).phase is None
