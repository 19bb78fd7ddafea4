"""One schema: `whisperft train` reads the WhisperFineTune resource, and the
trainer's config is that spec plus a Runtime of platform decisions only."""

from pathlib import Path

import pytest
import yaml

from whisperft.operator.api.resource import apply_overrides, dump_yaml, load_resource_file
from whisperft.operator.api.spec import WhisperFineTuneSpec
from whisperft.trainer.cli_train import load_config
from whisperft.trainer.config import ConfigError, Runtime, TrainConfig

pytestmark = pytest.mark.unit

ROOT = Path(__file__).parents[2]
EXAMPLES = sorted(
    [*(ROOT / "examples").glob("*.yaml"), *(ROOT / "manifests/examples").glob("*.yaml")]
)

# Every Runtime field is a platform decision. A recipe knob added here instead
# of on the resource would make the resource unable to express a run: add it to
# the spec (operator/api/spec*.py), not to this list.
PLATFORM_FIELDS = {
    "workers": "Ray Train workers, from spec.resources and the node pool / this machine",
    "use_gpu": "from spec.resources.accelerator and what the machine has",
    "cpus_per_worker": "from spec.resources.cpu and the pool's pod size",
    "max_failures": "Ray Train's in-place restarts, a platform policy",
    "deepspeed": "the ZeRO stage the planner picked (spec.training.deepspeed mode auto)",
    "strategy": "micro-batch, accumulation, checkpointing and LoRA the planner picked (mode auto)",
    "data_path": "spec.dataset.path as the pod or machine sees it (claim mount)",
    "storage_path": "where the claim (or local disk) is mounted",
    "output_dir": "spec.output.location, or the claim's output directory",
    "output_uri": "spec.output.location when it is a bucket",
    "checkpoint_uri": "<output bucket>/checkpoints/<name>: where this platform keeps checkpoints",
    "shared_scratch": "whether the pods share a claim (a platform fact)",
    "model_cache_dir": "cache placement on the claim",
    "feature_cache_dir": "cache placement on the claim",
    "cache_max_gib": "what the claim has left for caches (the disk plan)",
}


def _write(tmp_path: Path, spec: dict, name: str = "t") -> Path:  # type: ignore[type-arg]
    p = tmp_path / f"{name}.yaml"
    p.write_text(
        dump_yaml(
            {
                "apiVersion": "whisperft.io/v1alpha1",
                "kind": "WhisperFineTune",
                "metadata": {"name": name},
                "spec": spec,
            }
        )
    )
    return p


BASE = {
    "dataset": {"path": "bundled:en"},
    "training": {"maxSteps": 5},
    "checkpoints": {"size": "1Gi"},
    "model": {"name": "bundled:tiny.en", "language": "en"},
}


def test_runtime_holds_only_platform_decisions() -> None:
    assert set(Runtime.model_fields) == set(PLATFORM_FIELDS)
    # The recipe is the resource's spec itself, not a copy of its fields.
    assert TrainConfig.model_fields["spec"].annotation is WhisperFineTuneSpec


def test_dumped_strings_keep_their_type() -> None:
    from whisperft.operator.api.resource import parse_yaml

    data = {"memory": "1e3", "lr": 1e-5, "cpu": "1", "flag": "yes", "t": "1:30"}
    assert parse_yaml(dump_yaml(data), source="t") == [data]


def test_config_round_trips_through_yaml(tmp_path: Path) -> None:
    cfg = load_config(str(ROOT / "examples/demo.yaml"), [])
    again = TrainConfig.from_dict(yaml.safe_load(cfg.to_yaml()))
    assert again == cfg
    assert cfg.name == "demo" and cfg.runtime.output_dir == "runs/demo"
    assert cfg.runtime.storage_path == "runs/demo/checkpoints"
    assert cfg.training.audio_context_margin_seconds == 1.0 and cfg.training.max_new_tokens == 96


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_is_a_resource(path: Path) -> None:
    res = load_resource_file(path)
    assert res.kind == "WhisperFineTune" and res.metadata.name


@pytest.mark.parametrize(
    "field, value, fragment",
    [
        ("training", {"maxSteps": 10, "epochs": 1}, "exactly one of training.maxSteps"),
        ("training", {"maxSteps": 0}, "spec.training.maxSteps"),
        ("training", {"maxSteps": 5, "learningRate": -1}, "spec.training.learningRate"),
        ("training", {"maxSteps": 5, "trainTopEncoderLayers": 2}, "set freezeEncoder: true"),
        ("training", {"maxSteps": 5, "maxNewTokens": 449}, "spec.training.maxNewTokens"),
        (
            "training",
            {"maxSteps": 5, "deepspeed": {"mode": "explicit", "stage": 2, "offloadParams": True}},
            "offloadParams needs ZeRO stage 3",
        ),
        ("dataset", {"path": "x", "format": "wav"}, "spec.dataset.format"),
        (
            "dataset",
            {"path": "x", "minDurationSeconds": 10, "maxDurationSeconds": 5},
            "minDurationSeconds must be below",
        ),
        ("dataset", {"path": "x", "maxDurationSeconds": 31}, "spec.dataset.maxDurationSeconds"),
        ("resources", {"workers": 0}, "spec.resources.workers"),
        ("trainig", {}, "spec.trainig"),
    ],
)
def test_bad_values_are_named(tmp_path: Path, field: str, value: dict, fragment: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ConfigError) as err:
        load_resource_file(_write(tmp_path, {**BASE, field: value}))
    assert fragment in str(err.value)
    assert str(err.value).startswith(str(tmp_path))


@pytest.mark.parametrize(
    "text, field",
    [
        ("training: {maxSteps: 5, learningRate: '1e-5'}", "spec.training.learningRate"),
        ("training: {maxSteps: '5'}", "spec.training.maxSteps"),
        ("resources: {workers: '2'}", "spec.resources.workers"),
        ("suspend: 'true'", "spec.suspend"),
        ("training: {maxSteps: 5, freezeEncoder: 'yes'}", "spec.training.freezeEncoder"),
    ],
)
def test_quoted_scalars_are_refused_like_the_api_server(
    tmp_path: Path, text: str, field: str
) -> None:
    spec = {**BASE, **yaml.safe_load(text)}
    with pytest.raises(ConfigError) as err:
        load_resource_file(_write(tmp_path, spec))
    assert field in str(err.value)


def test_unquoted_yaml_scalars_parse_as_kubectl_does(tmp_path: Path) -> None:
    p = tmp_path / "k.yaml"
    p.write_text(
        "apiVersion: whisperft.io/v1alpha1\nkind: WhisperFineTune\nmetadata: {name: k}\n"
        "spec:\n  dataset: {path: bundled:en}\n  checkpoints: {size: 1Gi}\n"
        "  training: {maxSteps: 5, learningRate: 1e-5, freezeEncoder: yes}\n"
        "  resources: {workers: 2.0}\n"
    )
    res = load_resource_file(p)
    # PyYAML alone reads 1e-5 as a string; kubectl (and we) read a number.
    assert res.spec.training.learning_rate == pytest.approx(1e-5)
    assert res.spec.training.freeze_encoder is True
    assert res.spec.resources.workers == 2 and isinstance(res.spec.resources.workers, int)


def test_overrides_use_the_resource_paths(tmp_path: Path) -> None:
    p = _write(tmp_path, {**BASE, "training": {"maxSteps": 10, "learningRate": 0.001}})
    c = load_config(
        str(p),
        [
            "spec.training.maxSteps=3",
            "spec.resources.workers=1",
            "spec.model.name=bundled:base",
            "spec.model.language=sw",
            "spec.output.location=" + str(tmp_path / "out"),
        ],
    )
    assert c.training.max_steps == 3 and c.training.learning_rate == 0.001
    assert c.runtime.workers == 1 and c.model.language == "sw"
    assert c.runtime.output_dir == str(tmp_path / "out")
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        apply_overrides({}, ["spec.training.maxSteps"])
    with pytest.raises(ConfigError, match="not a section"):
        apply_overrides({"spec": "x"}, ["spec.training=y"])
    assert apply_overrides({"spec": {"a": 1}}, ["spec.a=null"]) == {"spec": {"a": None}}
    # A quoted override is a string, as in the file, and refused the same way.
    with pytest.raises(ConfigError, match=r"spec\.training\.maxSteps"):
        load_config(str(p), ["spec.training.maxSteps='3'"])


def test_local_runtime_reads_the_resources(tmp_path: Path) -> None:
    p = _write(tmp_path, {**BASE, "resources": {"workers": 3, "cpu": "2"}})
    rt = load_config(str(p), []).runtime
    assert (rt.workers, rt.cpus_per_worker, rt.use_gpu) == (3, 2.0, False)
    # deepspeed auto on CPU: the planner's CPU choice.
    assert rt.deepspeed.stage == 2
    # cpu unset: the machine's cores shared among the workers (one worker gets them all)
    from whisperft.operator.api.resource import WhisperFineTune
    from whisperft.trainer.local_runtime import local_runtime

    for workers, cores, each in ((1, 8, 8.0), (2, 8, 4.0), (3, 2, 1.0)):
        res = WhisperFineTune.model_validate(
            {
                "apiVersion": "whisperft.io/v1alpha1",
                "kind": "WhisperFineTune",
                "metadata": {"name": "c"},
                "spec": {**BASE, "resources": {"workers": workers}},
            }
        )
        rt = local_runtime(res, machine_cpus=lambda n=cores: n)  # type: ignore[misc]
        assert rt.cpus_per_worker == each, (workers, cores)
    gpu = _write(tmp_path, {**BASE, "resources": {"accelerator": "nvidia-l4"}}, "g")
    with pytest.raises(ConfigError, match="this machine has 0"):
        load_config(str(gpu), [])
    claim = _write(tmp_path, {**BASE, "dataset": {"path": "x", "claimName": "data"}}, "c")
    with pytest.raises(ConfigError, match=r"spec\.dataset\.claimName"):
        load_config(str(claim), [])


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_resource_file(tmp_path / "nope.yaml")
    bad = tmp_path / "b.yaml"
    bad.write_bytes(b"spec: \xff\xfe")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_resource_file(bad)
    bad.write_text("spec: [unclosed")
    with pytest.raises(ConfigError, match="cannot parse"):
        load_resource_file(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_resource_file(bad)
    bad.write_text("a: 1\n---\nb: 2\n")
    with pytest.raises(ConfigError, match="expected one WhisperFineTune document, found 2"):
        load_resource_file(bad)
    # The old snake_case TrainConfig format is refused with the fields named.
    bad.write_text("model: {name: bundled:tiny.en}\ntraining: {max_steps: 3}\n")
    with pytest.raises(ConfigError) as err:
        load_resource_file(bad)
    assert "metadata" in str(err.value) and "spec" in str(err.value)


def test_language_is_checked_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from whisperft.cli import main

    p = _write(tmp_path, {**BASE, "model": {"name": "bundled:tiny.en", "language": "sw"}})
    assert main(["train", str(p), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "spec.model.language" in err and "English-only" in err


def test_cli_refuses_bad_config_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from whisperft.cli import main

    bad = _write(tmp_path, {**BASE, "training": {"maxSteps": -3}}, "bad")
    assert main(["train", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "spec.training.maxSteps" in err and "bad.yaml" in err
