"""What a WhisperFineTune may ask for: images, tolerations and scheduling are
checked against the platform's settings at admission (Planned=False naming the
field), and the pool's scheduling wins over the user's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from whisperft.operator.api.phase import Reason
from whisperft.operator.api.spec import WhisperFineTuneSpec
from whisperft.operator.planning.resolve import resolve
from whisperft.operator.render.bundle import render_attempt
from whisperft.operator.render.meta import Meta
from whisperft.operator.settings import Settings, load_settings

pytestmark = pytest.mark.unit

TRAINER = "ghcr.io/whisperft/trainer:0.2.0"


def spec(**over: Any) -> WhisperFineTuneSpec:
    doc: dict[str, Any] = {
        "model": {"name": "bundled:tiny.en", "language": "en"},
        "dataset": {"path": "bundled:en"},
        "training": {"maxSteps": 10},
        "resources": {"accelerator": "nvidia-l4"},
        "checkpoints": {"size": "10Gi"},
    }
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(doc.get(key), dict):
            doc[key] = {**doc[key], **value}
        else:
            doc[key] = value
    return WhisperFineTuneSpec.model_validate(doc)


def settings(**over: Any) -> Settings:
    return Settings.model_validate({"trainerImage": TRAINER, **over})


def refusal(s: WhisperFineTuneSpec, st: Settings) -> str | None:
    problem = resolve(s, st).problem
    if problem is None:
        return None
    assert problem.reason == Reason.INVALID_SPEC
    return problem.message


def worker_pod(s: WhisperFineTuneSpec, st: Settings) -> dict[str, Any]:
    rendered = render_attempt(s, Meta("ft", "ml", "uid-1"), st)
    (rayjob,) = rendered.of_kind("RayJob")
    group = rayjob["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]
    return dict(group["template"]["spec"])


# ---- images -----------------------------------------------------------------------


def test_by_default_only_the_installed_trainer_image_is_allowed() -> None:
    st = settings()
    assert refusal(spec(), st) is None
    assert refusal(spec(image=TRAINER), st) is None
    assert refusal(spec(image="ghcr.io/whisperft/trainer@sha256:" + "a" * 64), st) is None
    for image in ("docker.io/attacker/miner:latest", "ghcr.io/whisperft/trainer:other",
                  "ghcr.io/whisperft/trainer-evil:0.2.0"):  # fmt: skip
        msg = refusal(spec(image=image), st)
        assert msg is not None and "spec.image" in msg and image in msg, (image, msg)


@pytest.mark.parametrize(
    ("image", "ok"),
    [
        ("registry.corp/ml/whisper:1", True),
        ("registry.corp/ml/sub/whisper:1", True),
        ("registry.corp/ml-evil/whisper:1", False),  # a prefix is a path, not a string prefix
        ("registry.corp/mlx:1", False),
        ("ghcr.io/whisperft/trainer:0.2.0", True),  # the installed image stays allowed
        ("docker.io/library/python:3.11", False),
    ],
)
def test_allowed_image_prefixes_match_whole_path_segments(image: str, ok: bool) -> None:
    st = settings(allowedImages=["registry.corp/ml"])
    assert (refusal(spec(image=image), st) is None) is ok, image


def test_a_required_digest_refuses_tags() -> None:
    st = settings(allowedImages=["registry.corp/ml/"], requireImageDigest=True)
    msg = refusal(spec(image="registry.corp/ml/whisper:1"), st)
    assert msg is not None and "digest" in msg and "spec.image" in msg
    assert refusal(spec(image="registry.corp/ml/whisper@sha256:" + "b" * 64), st) is None


def test_a_user_image_is_always_pulled() -> None:
    """IfNotPresent would run a private image cached on the node without pull rights."""
    st = settings(allowedImages=["registry.corp/ml"])
    assert worker_pod(spec(), st)["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    pod = worker_pod(spec(image="registry.corp/ml/w:1"), st)
    assert pod["containers"][0]["imagePullPolicy"] == "Always"


def test_image_settings_load_from_the_chart_keys(tmp_path: Path) -> None:
    f = tmp_path / "settings.yaml"
    f.write_text(f"trainerImage: {TRAINER}\nallowedImages: [a.io/x]\nrequireImageDigest: true\n")
    st = load_settings({"WHISPERFT_SETTINGS_FILE": str(f)})
    assert st.allowed_images == ["a.io/x"] and st.require_image_digest is True


# ---- scheduling ----------------------------------------------------------------------


def test_a_keyless_exists_toleration_is_refused() -> None:
    bad = spec(resources={"tolerations": [{"operator": "Exists"}]})
    msg = refusal(bad, settings())
    assert msg is not None and "spec.resources.tolerations[0]" in msg and "key" in msg
    ok = spec(resources={"tolerations": [{"key": "team", "operator": "Exists"}]})
    assert refusal(ok, settings()) is None


def test_the_pools_node_selector_wins_and_a_conflicting_key_is_refused() -> None:
    pool_key = "nvidia.com/gpu.product"
    conflict = spec(resources={"nodeSelector": {pool_key: "NVIDIA-H100-80GB-HBM3"}})
    msg = refusal(conflict, settings())
    assert msg is not None and f"spec.resources.nodeSelector[{pool_key}]" in msg
    same = spec(resources={"nodeSelector": {pool_key: "NVIDIA-L4", "zone": "a"}})
    assert refusal(same, settings()) is None
    pod = worker_pod(same, settings())
    assert pod["nodeSelector"] == {pool_key: "NVIDIA-L4", "zone": "a"}


def test_user_tolerations_are_added_to_the_pools_never_replace_them() -> None:
    extra = {"key": "team", "operator": "Equal", "value": "speech", "effect": "NoSchedule"}
    pod = worker_pod(spec(resources={"tolerations": [extra]}), settings())
    keys = [t.get("key") for t in pod["tolerations"]]
    assert keys == ["nvidia.com/gpu", "team"]
