"""LoRA (issue 13) without a model: what admission refuses, naming the field, and
which checkpoints a LoRA run may continue (trainer.lora.resume_problem)."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from trainconfig_factory import train_config

from whisperft.operator.api.spec import WhisperFineTuneSpec
from whisperft.operator.planning.admission import lora_problem
from whisperft.trainer.lora import resume_problem

pytestmark = pytest.mark.unit


def spec(model: str = "bundled:tiny.en", **training: Any) -> WhisperFineTuneSpec:
    return WhisperFineTuneSpec.model_validate(
        {
            "model": {"name": model, "language": "en"},
            "dataset": {"path": "bundled:en"},
            "training": {"maxSteps": 10, **training},
            "checkpoints": {"size": "10Gi"},
        }
    )


# ---- admission ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "training",
    [
        {},
        {"lora": {"mode": "on"}},
        {"lora": {"mode": "auto"}},
        {"lora": {"mode": "on"}, "deepspeed": {"mode": "explicit", "stage": 3}},
        {"lora": {"mode": "on"}, "freezeEncoder": True, "trainTopEncoderLayers": 1},
        {"lora": {"mode": "on"}, "specAugment": True, "gradientCheckpointing": True},
        {"lora": {"mode": "on", "rank": 384}},
        {"lora": {"mode": "off", "rank": 512}},  # off: the adapter settings are unused
    ],
)
def test_lora_combinations_that_train_are_admitted(training: dict[str, Any]) -> None:
    assert lora_problem(spec(**training)) is None


@pytest.mark.parametrize("mode", ["on", "auto"])
def test_a_rank_wider_than_the_model_is_refused_naming_the_field(mode: str) -> None:
    why = lora_problem(spec(lora={"mode": mode, "rank": 512}))
    assert why is not None and why.startswith("spec.training.lora.rank: 512")
    assert "384" in why  # tiny's width, the most a rank can use


def test_a_model_known_only_by_its_files_is_not_refused_for_its_width() -> None:
    assert (
        lora_problem(spec(model="/models/custom-export", lora={"mode": "on", "rank": 512})) is None
    )


def test_the_width_is_the_model_s_own() -> None:
    assert lora_problem(spec(lora={"mode": "on", "rank": 385})) is not None  # tiny: 384
    for model in ("bundled:base", "openai/whisper-small", "openai/whisper-large-v3"):
        assert lora_problem(spec(model=model, lora={"mode": "on", "rank": 512})) is None, model


def test_the_admission_check_imports_no_trainer_stack() -> None:
    for heavy in ("torch", "peft", "transformers"):
        if heavy in sys.modules:
            pytest.skip(f"{heavy} already imported by another test in this process")
    lora_problem(spec(lora={"mode": "on"}))
    assert not {"torch", "peft", "transformers"} & set(sys.modules)


# ---- resume --------------------------------------------------------------------------


def _wire(lora: dict[str, Any] | None, **runtime: Any) -> dict[str, Any]:
    training: dict[str, Any] = {"maxSteps": 10}
    if lora is not None:
        training["lora"] = lora
    return train_config(training=training, **runtime).to_wire()


def _cfg(lora: dict[str, Any] | None, **runtime: Any) -> Any:
    training: dict[str, Any] = {"maxSteps": 10}
    if lora is not None:
        training["lora"] = lora
    return train_config(training=training, **runtime)


def test_the_same_adapters_and_a_full_run_continue_themselves() -> None:
    assert resume_problem(_wire(None), _cfg(None)) is None
    on = {"mode": "on", "rank": 8}
    assert resume_problem(_wire(on), _cfg(on)) is None
    # alpha, dropout and the learning rate may change between attempts: same tensors
    assert resume_problem(_wire(on), _cfg({**on, "alpha": 4, "dropout": 0.2})) is None
    # mode auto with the planner's LoRA is the same run as mode on
    auto = _cfg({"mode": "auto", "rank": 8}, strategy={"lora": True})
    assert auto.lora is not None
    assert resume_problem(_wire(on), auto) is None


@pytest.mark.parametrize(
    ("saved", "now", "named"),
    [
        (None, {"mode": "on"}, "holds a full fine-tune"),
        ({"mode": "on"}, None, "holds LoRA adapters"),
        ({"mode": "on"}, {"mode": "auto"}, "holds LoRA adapters"),  # auto without the planner's
        ({"mode": "on", "rank": 8}, {"mode": "on", "rank": 16}, "rank"),
        ({"mode": "on"}, {"mode": "on", "targetModules": ["q_proj", "v_proj"]}, "target_modules"),
    ],
)
def test_other_adapters_or_none_cannot_continue_a_checkpoint(
    saved: dict[str, Any] | None, now: dict[str, Any] | None, named: str
) -> None:
    why = resume_problem(_wire(saved), _cfg(now))
    assert why is not None and why.startswith("spec.training.lora: ") and named in why


def test_a_checkpoint_of_an_older_schema_is_left_to_the_key_check() -> None:
    assert resume_problem({"spec": {"nonsense": 1}}, _cfg({"mode": "on"})) is None
