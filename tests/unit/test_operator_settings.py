"""Operator settings: defaults, the mounted YAML file, env overrides, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from whisperft.operator.settings import ENV_SETTINGS_FILE, SettingsError, load_settings

pytestmark = pytest.mark.unit


def test_defaults_have_the_three_gpu_pools() -> None:
    s = load_settings({})
    assert set(s.node_pools) == {"nvidia-l4", "nvidia-a100-80gb", "nvidia-h100-80gb"}
    assert s.node_pools["nvidia-l4"].gpu_memory_gib == 24
    assert s.node_pools["nvidia-h100-80gb"].gpu_resource == "nvidia.com/gpu"
    assert s.namespaces == []
    assert s.pool(None) is None and s.pool("nvidia-b200") is None


def test_built_in_defaults_are_what_the_chart_installs() -> None:
    """`whisperft render` (no settings file) must show what an installed operator makes."""
    chart = Path(__file__).resolve().parents[2] / "manifests" / "base" / "settings.yaml"
    installed = load_settings({ENV_SETTINGS_FILE: str(chart)})
    built_in = load_settings({})
    assert built_in.node_pools == installed.node_pools
    assert built_in.worker_defaults == installed.worker_defaults
    assert built_in.cpu_worker_defaults == installed.cpu_worker_defaults
    assert built_in.head_defaults == installed.head_defaults


def test_file_then_env(tmp_path: Path) -> None:
    f = tmp_path / "settings.yaml"
    f.write_text(
        """
nodePools:
  nvidia-t4:
    nodeSelector: {pool: t4}
    tolerations: [{key: gpu, operator: Exists, effect: NoSchedule}]
    gpuMemoryGiB: 16
    bf16: false
trainerImage: registry.local/trainer:1
workerDefaults: {memory: 64Gi}
namespaces: [a, b]
"""
    )
    s = load_settings(
        {
            ENV_SETTINGS_FILE: str(f),
            "WHISPERFT_TRAINER_IMAGE": "registry.local/trainer:2",
            "WHISPERFT_WORKER_CPU": "12",
        }
    )
    assert list(s.node_pools) == ["nvidia-t4"]  # the file's table replaces the defaults
    assert s.node_pools["nvidia-t4"].node_selector == {"pool": "t4"}
    assert s.trainer_image == "registry.local/trainer:2"  # env wins over the file
    assert (s.worker_defaults.cpu, s.worker_defaults.memory) == ("12", "64Gi")  # merged key by key
    assert s.namespaces == ["a", "b"]
    assert load_settings(
        {ENV_SETTINGS_FILE: str(f), "WHISPERFT_NAMESPACES": "x, y,"}
    ).namespaces == ["x", "y"]


@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        ("nodePools: {p: {gpuMemoryGiB: -1}}", "gpuMemoryGiB"),
        ("nodePools: {p: {}}", "gpuMemoryGiB"),
        ("metricsPort: 99999", "metricsPort"),
        ("bogus: 1", "bogus"),
        ("- a list", "mapping"),
        ("a: [unclosed", "cannot parse"),
    ],
)
def test_bad_settings_name_the_problem(tmp_path: Path, text: str, phrase: str) -> None:
    f = tmp_path / "s.yaml"
    f.write_text(text)
    with pytest.raises(SettingsError, match=phrase):
        load_settings({ENV_SETTINGS_FILE: str(f)})


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="not found"):
        load_settings({ENV_SETTINGS_FILE: str(tmp_path / "nope.yaml")})
