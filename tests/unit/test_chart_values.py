"""Chart toggles (metrics, node pools, images) and values the schema must refuse."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from toolbin import CHART_DIR as CHART
from toolbin import helm_template, helm_template_text, require_tool

pytestmark = pytest.mark.unit

DIGEST = "sha256:" + "ab" * 32


@pytest.fixture(scope="module")
def helm() -> Path:
    return require_tool("helm")


def kinds(docs: list[dict[str, Any]]) -> set[str]:
    return {d["kind"] for d in docs}


def settings_of(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (cm,) = [d for d in docs if d["kind"] == "ConfigMap"]
    parsed: dict[str, Any] = yaml.safe_load(cm["data"]["settings.yaml"])
    return parsed


def container_of(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def test_metrics_on_by_default_with_a_service_and_no_service_monitor(helm: Path) -> None:
    docs = helm_template(helm)
    assert "Service" in kinds(docs) and "ServiceMonitor" not in kinds(docs)
    (service,) = [d for d in docs if d["kind"] == "Service"]
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}
    ]
    ports = {p["name"]: p["containerPort"] for p in container_of(docs)["ports"]}
    assert ports["metrics"] == 9090
    assert settings_of(docs)["metricsPort"] == 9090
    # The Service selects exactly the operator pod.
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


def test_service_monitor_scrapes_the_metrics_port(helm: Path) -> None:
    values = {"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}}}
    docs = helm_template(helm, values)
    (monitor,) = [d for d in docs if d["kind"] == "ServiceMonitor"]
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["endpoints"] == [
        {"port": "metrics", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}
    ]
    (service,) = [d for d in docs if d["kind"] == "Service"]
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )


def test_metrics_off_removes_port_service_and_monitor(helm: Path) -> None:
    docs = helm_template(helm, {"metrics": {"enabled": False}})
    assert not {"Service", "ServiceMonitor"} & kinds(docs)
    assert "metrics" not in {p["name"] for p in container_of(docs)["ports"]}
    assert settings_of(docs)["metricsPort"] == 0  # the operator's "off"


def test_service_monitor_without_metrics_fails_with_a_reason(helm: Path) -> None:
    values = {"metrics": {"enabled": False, "serviceMonitor": {"enabled": True}}}
    proc = helm_template_text(helm, values, check=False)
    assert proc.returncode != 0
    assert "metrics.serviceMonitor.enabled needs metrics.enabled" in proc.stderr


def test_custom_node_pools_replace_the_defaults(helm: Path) -> None:
    pools = [
        {
            "accelerator": "nvidia-t4",
            "nodeSelector": {"pool": "t4"},
            "tolerations": [
                {"key": "gpu", "operator": "Equal", "value": "t4", "effect": "NoSchedule"}
            ],
            "gpuMemoryGiB": 16,
        },
        {"accelerator": "amd-mi300x", "nodeSelector": {"pool": "mi300"}, "gpuMemoryGiB": 192},
    ]
    settings = settings_of(helm_template(helm, {"nodePools": pools}))
    assert settings["nodePools"] == {
        "nvidia-t4": {
            "nodeSelector": {"pool": "t4"},
            "tolerations": [
                {"key": "gpu", "operator": "Equal", "value": "t4", "effect": "NoSchedule"}
            ],
            "gpuMemoryGiB": 16,
        },
        "amd-mi300x": {"nodeSelector": {"pool": "mi300"}, "gpuMemoryGiB": 192},
    }


def test_default_node_pools_cover_the_documented_accelerators(helm: Path) -> None:
    pools = settings_of(helm_template(helm))["nodePools"]
    assert set(pools) == {"nvidia-l4", "nvidia-a100-80gb", "nvidia-h100-80gb"}
    assert {name: p["gpuMemoryGiB"] for name, p in pools.items()} == {
        "nvidia-l4": 24,
        "nvidia-a100-80gb": 80,
        "nvidia-h100-80gb": 80,
    }
    for pool in pools.values():
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pool[
            "tolerations"
        ]


def test_duplicate_accelerators_are_refused(helm: Path) -> None:
    pool = {"accelerator": "nvidia-l4", "nodeSelector": {"a": "b"}, "gpuMemoryGiB": 24}
    proc = helm_template_text(helm, {"nodePools": [pool, pool]}, check=False)
    assert proc.returncode != 0
    assert 'accelerator "nvidia-l4" is listed twice' in proc.stderr


def test_images_default_to_app_version_and_accept_digests(helm: Path) -> None:
    docs = helm_template(helm)
    assert container_of(docs)["image"] == "ghcr.io/whisperft/operator:0.1.0"
    assert settings_of(docs)["trainerImage"] == "ghcr.io/whisperft/trainer:0.1.0"
    values = {
        "image": {"repository": "reg.example/wft-op", "tag": "1.2.3", "digest": DIGEST},
        "trainer": {"image": {"repository": "reg.example/wft-train", "tag": "1.2.3"}},
    }
    docs = helm_template(helm, values)
    assert container_of(docs)["image"] == f"reg.example/wft-op:1.2.3@{DIGEST}"
    assert settings_of(docs)["trainerImage"] == "reg.example/wft-train:1.2.3"


def test_settings_carry_defaults_and_namespaces(helm: Path) -> None:
    values = {"defaults": {"workerResources": {"cpu": "16", "memory": "64Gi"}}}
    settings = settings_of(helm_template(helm, values, namespace="ml"))
    assert settings["namespaces"] == ["ml"]
    assert settings["workerDefaults"] == {"cpu": "16", "memory": "64Gi"}
    assert settings["shmSize"] == "8Gi"  # merged with the defaults, not replaced
    assert settings["rayVersion"] == "2.60.0"
    assert (settings["runAsUser"], settings["fsGroup"]) == (1000, 100)


def test_default_scope_is_namespaced_to_the_release_namespace(helm: Path) -> None:
    """`watch.scope: namespaces` is the default; an empty list serves the install
    namespace (a Role there, no cluster-wide RBAC), like the old "release" scope."""
    for values in (
        {},
        {"watch": {"scope": "namespaces", "namespaces": []}},
        {"watch": {"scope": "release"}},
    ):
        docs = helm_template(helm, values, namespace="ml")
        assert settings_of(docs)["namespaces"] == ["ml"], values
        rbac = {(d["kind"], d["metadata"].get("namespace")) for d in docs if "Role" in d["kind"]}
        assert rbac == {("Role", "ml"), ("RoleBinding", "ml")}, values
        assert "--all-namespaces" not in container_of(docs)["args"]
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    assert defaults["watch"] == {"scope": "namespaces", "namespaces": []}


def test_rendered_settings_load_in_the_operator(helm: Path, tmp_path: Path) -> None:
    """The chart writes exactly the file format operator/settings.py reads."""
    from whisperft.operator.settings import ENV_SETTINGS_FILE, load_settings

    values = {
        "watch": {"scope": "namespaces", "namespaces": ["a", "b"]},
        "metrics": {"port": 9191},
        "trainer": {"image": {"repository": "reg.example/t", "tag": "9"}},
        "nodePools": [
            {"accelerator": "x1", "nodeSelector": {"p": "x"}, "gpuMemoryGiB": 40, "bf16": False}
        ],
    }
    docs = helm_template(helm, values)
    (container,) = [
        c
        for d in docs
        if d["kind"] == "Deployment"
        for c in d["spec"]["template"]["spec"]["containers"]
    ]
    env = {e["name"]: e.get("value") for e in container["env"]}
    path = tmp_path / "settings.yaml"
    path.write_text(yaml.safe_dump(settings_of(docs)))
    assert ENV_SETTINGS_FILE in env
    settings = load_settings({ENV_SETTINGS_FILE: str(path)})
    assert settings.namespaces == ["a", "b"]
    assert settings.metrics_port == 9191
    assert settings.trainer_image == "reg.example/t:9"
    assert set(settings.node_pools) == {"x1"}
    assert settings.node_pools["x1"].gpu_memory_gib == 40
    assert settings.node_pools["x1"].bf16 is False


def test_ray_version_matches_the_locked_ray(helm: Path) -> None:
    lock = (Path(__file__).resolve().parents[2] / "requirements.lock").read_text()
    (ray_pin,) = [
        line.split("==")[1].split()[0] for line in lock.splitlines() if line.startswith("ray==")
    ]
    assert settings_of(helm_template(helm))["rayVersion"] == ray_pin


def test_extra_args_and_env_reach_the_operator(helm: Path) -> None:
    values = {"operator": {"extraArgs": ["--verbose"], "extraEnv": [{"name": "X", "value": "1"}]}}
    container = container_of(helm_template(helm, values))
    assert container["args"][-1] == "--verbose"
    assert {"name": "X", "value": "1"} in container["env"]


# (values, the field path helm must name, a fragment of the reason)
BAD_VALUES: list[tuple[dict[str, Any], str, str]] = [
    ({"watch": {"scope": "everywhere"}}, "/watch/scope", "value must be one of"),
    (
        {"watch": {"scope": "namespaces", "namespaces": ["Team_A"]}},
        "/watch/namespaces/0",
        "does not match pattern",
    ),
    ({"nodePools": []}, "/nodePools", "minItems"),
    (
        {"nodePools": [{"accelerator": "x", "nodeSelector": {"a": "b"}, "gpuMemoryGiB": 0}]},
        "/nodePools/0/gpuMemoryGiB",
        "exclusiveMinimum",
    ),
    (
        {"nodePools": [{"accelerator": "x", "gpuMemoryGiB": 24}]},
        "/nodePools/0",
        "missing property 'nodeSelector'",
    ),
    (
        {"nodePools": [{"accelerator": "Big GPU", "nodeSelector": {"a": "b"}, "gpuMemoryGiB": 24}]},
        "/nodePools/0/accelerator",
        "does not match pattern",
    ),
    (
        {"nodePools": [{"accelerator": "x", "nodeSelector": {}, "gpuMemoryGiB": 24}]},
        "/nodePools/0/nodeSelector",
        "minProperties",
    ),
    (
        {
            "nodePools": [
                {
                    "accelerator": "x",
                    "nodeSelector": {"a": "b"},
                    "gpuMemoryGiB": 24,
                    "tolerations": [{"operator": "Maybe"}],
                }
            ]
        },
        "/nodePools/0/tolerations/0/operator",
        "value must be one of",
    ),
    ({"resources": {"limits": {"memory": "lots"}}}, "/resources/limits/memory", ""),
    (
        {"defaults": {"workerResources": {"gpus": 1}}},
        "/defaults/workerResources",
        "additional properties 'gpus' not allowed",
    ),
    ({"defaults": {"sharedMemorySize": "huge"}}, "/defaults/sharedMemorySize", "oneOf"),
    ({"trainer": {"rayVersion": "latest"}}, "/trainer/rayVersion", "does not match pattern"),
    (
        {"securityContext": {"allowPrivilegeEscalation": True, "capabilities": {"drop": ["ALL"]}}},
        "/securityContext/allowPrivilegeEscalation",
        "value must be false",
    ),
    (
        {
            "podSecurityContext": {
                "runAsNonRoot": False,
                "seccompProfile": {"type": "RuntimeDefault"},
            }
        },
        "/podSecurityContext/runAsNonRoot",
        "value must be true",
    ),
    ({"metrics": {"port": 80}}, "/metrics/port", "minimum"),
    (
        {"metrics": {"serviceMonitor": {"interval": "often"}}},
        "/metrics/serviceMonitor/interval",
        "does not match pattern",
    ),
    ({"image": {"digest": "latest"}}, "/image/digest", "does not match pattern"),
    ({"image": {"repository": "ghcr.io/x:1.0"}}, "/image/repository", "does not match pattern"),
    ({"operator": {"logFormat": "xml"}}, "/operator/logFormat", "value must be one of"),
    ({"replicas": 2}, "", "additional properties 'replicas' not allowed"),
]


@pytest.mark.parametrize(
    ("values", "field", "reason"), BAD_VALUES, ids=[f or "root" for _, f, _ in BAD_VALUES]
)
def test_schema_refuses_bad_values_naming_the_field(
    helm: Path, values: dict[str, Any], field: str, reason: str
) -> None:
    proc = helm_template_text(helm, values, check=False)
    assert proc.returncode != 0, f"accepted bad values {values}"
    assert "values don't meet the specifications of the schema" in proc.stderr
    assert f"- at '{field}'" in proc.stderr, proc.stderr
    assert reason in proc.stderr, proc.stderr


def test_image_allowlist_and_kuberay_namespace_reach_the_operator(helm: Path) -> None:
    from whisperft.operator.settings import Settings

    default = Settings.model_validate(settings_of(helm_template(helm)))
    assert (default.allowed_images, default.require_image_digest) == ([], False)
    assert default.kuberay_namespace == "kuberay-system"
    values = {
        "trainer": {"allowedImages": ["registry.corp/ml"], "requireDigest": True},
        "operator": {"kuberayNamespace": "ray-system"},
    }
    st = Settings.model_validate(settings_of(helm_template(helm, values)))
    assert st.allowed_images == ["registry.corp/ml"] and st.require_image_digest is True
    assert st.kuberay_namespace == "ray-system"


def test_ray_pod_monitor_selects_the_ray_pods_of_the_served_namespaces(helm: Path) -> None:
    from whisperft import names
    from whisperft.operator.render.pods import HEAD, WORKER

    assert not [d for d in helm_template(helm, namespace="ops") if d["kind"] == "PodMonitor"]
    docs = helm_template(
        helm,
        namespace="ops",
        values={
            "metrics": {"rayPodMonitor": {"enabled": True, "labels": {"release": "kps"}}},
            "watch": {"scope": "namespaces", "namespaces": ["speech", "asr"]},
        },
    )
    (pm,) = [d for d in docs if d["kind"] == "PodMonitor"]
    assert pm["metadata"]["labels"]["release"] == "kps"
    assert pm["spec"]["namespaceSelector"] == {"matchNames": ["speech", "asr"]}
    exprs = {e["key"]: e for e in pm["spec"]["selector"]["matchExpressions"]}
    assert exprs[names.LABEL_FINETUNE]["operator"] == "Exists"
    assert set(exprs[names.LABEL_COMPONENT]["values"]) == {HEAD, WORKER}
    assert pm["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"
