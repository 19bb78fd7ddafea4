"""Operator settings: defaults, the mounted YAML file, env overrides, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from whisperft.operator.settings import ENV_SETTINGS_FILE, Settings, SettingsError, load_settings

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


# --- Pods a platform team can shape (rayPods, trainerServiceAccount, head resources) ---


def _load(tmp_path: Path, text: str) -> Settings:
    f = tmp_path / "s.yaml"
    f.write_text(text)
    return load_settings({ENV_SETTINGS_FILE: str(f)})


def test_pod_shaping_defaults_add_nothing() -> None:
    s = load_settings({})
    pods = s.ray_pods
    assert (pods.env, pods.labels, pods.annotations, pods.image_pull_secrets) == ([], {}, {}, [])
    assert pods.priority_class_name is None
    assert pods.head_node_affinity is None and pods.worker_node_affinity is None
    assert s.trainer_service_account.annotations == {}
    assert s.head_defaults.ephemeral_storage is None


SHAPED = """
rayPods:
  env:
    - {name: HTTPS_PROXY, value: "http://proxy.corp:3128"}
    - name: NODE_IP
      valueFrom: {fieldRef: {fieldPath: status.hostIP}}
    - name: WANDB_API_KEY
      valueFrom: {secretKeyRef: {name: wandb, key: api-key}}
  labels: {team: speech, cost-center: "4711"}
  annotations: {cluster-autoscaler.kubernetes.io/safe-to-evict: "false"}
  priorityClassName: training-high
  imagePullSecrets: [{name: corp-registry}]
  workerNodeAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      nodeSelectorTerms:
        - matchExpressions:
            - {key: topology.kubernetes.io/zone, operator: In, values: [us-central1-a]}
  headNodeAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 50
        preference:
          matchExpressions: [{key: pool, operator: In, values: [cpu]}]
trainerServiceAccount:
  annotations:
    iam.gke.io/gcp-service-account: trainer@proj.iam.gserviceaccount.com
headDefaults: {ephemeralStorage: 20Gi}
"""


def test_pod_shaping_from_the_settings_file(tmp_path: Path) -> None:
    s = _load(tmp_path, SHAPED)
    pods = s.ray_pods
    assert [e.name for e in pods.env] == ["HTTPS_PROXY", "NODE_IP", "WANDB_API_KEY"]
    assert pods.env[1].to_wire() == {
        "name": "NODE_IP",
        "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}},
    }
    assert pods.labels == {"team": "speech", "cost-center": "4711"}
    assert pods.priority_class_name == "training-high"
    assert [r.name for r in pods.image_pull_secrets] == ["corp-registry"]
    assert pods.worker_node_affinity is not None and pods.head_node_affinity is not None
    assert s.trainer_service_account.annotations == {
        "iam.gke.io/gcp-service-account": "trainer@proj.iam.gserviceaccount.com"
    }
    # Merged key by key with the built-in head defaults.
    assert (s.head_defaults.cpu, s.head_defaults.memory) == ("2", "8Gi")
    assert s.head_defaults.ephemeral_storage == "20Gi"
    # The wire form loads back unchanged (the e2e harness writes settings that way).
    assert Settings.model_validate(s.to_wire()) == s


@pytest.mark.parametrize(
    "name",
    [
        "RAY_AUTH_MODE",
        "RAY_AUTH_TOKEN",
        "RAY_AUTH_TOKEN_PATH",
        "ray_auth_mode",
        "RAY_ENABLE_K8S_TOKEN_AUTH",
        "RAY_ADDRESS",
        "KUBERAY_GEN_RAY_START_CMD",
        "WHISPERFT_CONFIG",
        "WHISPERFT_ATTEMPT",
        "WHISPERFT_ANYTHING",
        "HF_TOKEN",
        "HF_HOME",
    ],
)
def test_reserved_env_names_are_refused_naming_them(tmp_path: Path, name: str) -> None:
    with pytest.raises(SettingsError, match=rf"rayPods\.env.*'{name}' is reserved"):
        _load(tmp_path, f"rayPods: {{env: [{{name: {name}, value: x}}]}}")


@pytest.mark.parametrize(
    ("entry", "phrase"),
    [
        ("{name: A, value: x}, {name: A, value: y}", "'A' is set twice"),
        ("{name: A}", "exactly one of value and valueFrom"),
        ("{name: A, value: x, valueFrom: {fieldRef: {fieldPath: x}}}", "exactly one of"),
        ("{name: A, valueFrom: {}}", "exactly one source"),
        ("{name: 'A=B', value: x}", "'A=B'"),
        ("{name: A, value: 3}", "valid string"),
    ],
)
def test_bad_env_entries_are_refused(tmp_path: Path, entry: str, phrase: str) -> None:
    with pytest.raises(SettingsError, match=phrase):
        _load(tmp_path, f"rayPods: {{env: [{entry}]}}")


@pytest.mark.parametrize("field", ["labels", "annotations"])
@pytest.mark.parametrize(
    "key",
    [
        "whisperft.io/finetune",
        "whisperft.io/attempt",
        "whisperft.io/anything",
        "team.whisperft.io/x",
        "ray.io/node-type",
        "ray.io/cluster",
        "kueue.x-k8s.io/queue-name",
        "app.kubernetes.io/managed-by",
        "app.kubernetes.io/instance",
    ],
)
def test_reserved_pod_metadata_keys_are_refused_naming_them(
    tmp_path: Path, field: str, key: str
) -> None:
    with pytest.raises(SettingsError, match=rf"rayPods\.{field}.*'{key}' is reserved"):
        _load(tmp_path, f"rayPods: {{{field}: {{'{key}': x}}}}")


def test_reserved_service_account_annotations_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"trainerServiceAccount.*'whisperft.io/x' is reserved"):
        _load(tmp_path, "trainerServiceAccount: {annotations: {'whisperft.io/x': y}}")


@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        ("rayPods: {labels: {'bad key': x}}", "'bad key' is not a valid label key"),
        ("rayPods: {labels: {'a/b/c': x}}", "'a/b/c' is not a valid label key"),
        ("rayPods: {labels: {team: 'has space'}}", "'has space' of label 'team'"),
        (f"rayPods: {{labels: {{team: {'x' * 64}}}}}", "of label 'team'"),
        ("rayPods: {annotations: {'-x': y}}", "'-x' is not a valid annotation key"),
        ("rayPods: {priorityClassName: High_Prio}", "priorityClassName"),
        ("rayPods: {imagePullSecrets: [{}]}", "imagePullSecrets.0.name"),
        (
            "rayPods: {workerNodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution:"
            " {nodeSelectorTerms: [{matchExpressions: [{key: k, operator: In}]}]}}}",
            "operator In needs values",
        ),
        (
            "rayPods: {headNodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution:"
            " {nodeSelectorTerms: [{matchExpressions: [{key: k, operator: Exists, values: [a]}]}]}}}",
            "operator Exists takes no values",
        ),
        (
            "rayPods: {headNodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution:"
            " {nodeSelectorTerms: []}}}",
            "nodeSelectorTerms",
        ),
        (
            "rayPods: {workerNodeAffinity: {preferredDuringSchedulingIgnoredDuringExecution:"
            " [{weight: 0, preference: {}}]}}",
            "weight",
        ),
        ("rayPods: {affinity: {}}", "affinity"),
        ("headDefaults: {ephemeralStorage: lots}", "ephemeralStorage"),
    ],
)
def test_bad_pod_shaping_is_refused_naming_the_field(
    tmp_path: Path, text: str, phrase: str
) -> None:
    with pytest.raises(SettingsError, match=phrase):
        _load(tmp_path, text)


def test_the_operator_does_not_start_with_a_reserved_key(tmp_path: Path) -> None:
    """`whisperft operator run` loads the settings before it watches anything."""
    import os
    import subprocess
    import sys

    f = tmp_path / "s.yaml"
    f.write_text("rayPods: {env: [{name: RAY_AUTH_MODE, value: disabled}]}")
    env = {**os.environ, ENV_SETTINGS_FILE: str(f), "KUBECONFIG": str(tmp_path / "none")}
    proc = subprocess.run(
        [sys.executable, "-m", "whisperft.cli", "operator", "run", "--namespace=x"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode != 0
    assert "rayPods.env.0.name" in proc.stderr and "'RAY_AUTH_MODE' is reserved" in proc.stderr
