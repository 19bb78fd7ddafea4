from pathlib import Path

import pytest

from whisperft.trainer.cli_train import apply_overrides, load_config
from whisperft.trainer.config import ConfigError, TrainConfig

pytestmark = pytest.mark.unit


def test_defaults_round_trip(tmp_path: Path) -> None:
    c = TrainConfig()
    p = tmp_path / "c.yaml"
    c.dump(p)
    assert TrainConfig.load(p) == c


@pytest.mark.parametrize(
    "raw, fragment",
    [
        ({"training": {"max_steps": 10, "epochs": 1}}, "exactly one of max_steps or epochs"),
        ({"training": {"max_steps": 0}}, "training.max_steps"),
        ({"training": {"max_steps": 5, "learning_rate": -1}}, "training.learning_rate"),
        ({"training": {"max_steps": 5, "deepspeed": {"stage": 5}}}, "training.deepspeed.stage"),
        (
            {"training": {"max_steps": 5, "deepspeed": {"stage": 2, "offload_params": True}}},
            "offload_params needs ZeRO stage 3",
        ),
        ({"data": {"format": "wav"}}, "data.format"),
        (
            {"data": {"min_duration_s": 10, "max_duration_s": 5}},
            "min_duration_s (10.0) must be below",
        ),
        ({"data": {"max_duration_s": 31}}, "data.max_duration_s"),
        ({"scaling": {"workers": 0}}, "scaling.workers"),
        ({"run": {"name": "../escape"}}, "run.name"),
        ({"trainig": {}}, "trainig"),
    ],
)
def test_bad_values_are_named(raw: dict, fragment: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ConfigError) as err:
        TrainConfig.from_dict(raw, source="bad.yaml")
    assert fragment in str(err.value)
    assert str(err.value).startswith("bad.yaml:")


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        TrainConfig.load(tmp_path / "nope.yaml")
    bad = tmp_path / "b.yaml"
    bad.write_bytes(b"model: \xff\xfe")
    with pytest.raises(ConfigError, match="not UTF-8"):
        TrainConfig.load(bad)
    bad.write_text("model: [unclosed")
    with pytest.raises(ConfigError, match="cannot parse"):
        TrainConfig.load(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        TrainConfig.load(bad)


def test_overrides(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("training:\n  max_steps: 10\n  learning_rate: 0.001\n")
    c = load_config(str(p), ["training.max_steps=3", "scaling.workers=1", "model.language=sw"])
    assert c.training.max_steps == 3 and c.training.learning_rate == 0.001
    assert c.scaling.workers == 1 and c.model.language == "sw"
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        apply_overrides({}, ["training.max_steps"])
    with pytest.raises(ConfigError, match="not a section"):
        apply_overrides({"run": "x"}, ["run.name=y"])


def test_demo_config_is_valid() -> None:
    c = TrainConfig.load(Path(__file__).parents[2] / "examples" / "demo.yaml")
    assert (
        c.scaling.workers == 2
        and c.training.deepspeed.stage == 2
        and c.model.name == "bundled:tiny.en"
    )


def test_cli_refuses_bad_config_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from whisperft.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text("training:\n  max_steps: -3\n")
    assert main(["train", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "training.max_steps" in err and "bad.yaml" in err
