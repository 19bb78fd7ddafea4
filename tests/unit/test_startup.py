"""Why a pod does not start, as the kubelet and the scheduler put it on the pod."""

from __future__ import annotations

from typing import Any

import pytest

from whisperft.operator.api.phase import Reason
from whisperft.operator.startup import from_summary, pod_problem, summary

pytestmark = pytest.mark.unit


def pod(status: dict[str, Any], attempt: str | None = "2") -> dict[str, Any]:
    labels = {"whisperft.io/attempt": attempt} if attempt else {}
    return {"metadata": {"name": "ft-2-head-abc", "labels": labels}, "status": status}


def waiting(reason: str, message: str = "") -> dict[str, Any]:
    return {
        "containerStatuses": [
            {
                "image": "reg.example/trainer:9",
                "state": {"waiting": {"reason": reason, "message": message}},
            }
        ]
    }


@pytest.mark.parametrize("why", ["ErrImagePull", "ImagePullBackOff", "InvalidImageName"])
def test_image_that_cannot_be_pulled(why: str) -> None:
    p = pod_problem(pod(waiting(why, "manifest unknown")))
    assert p is not None and p.reason is Reason.IMAGE_PULL_FAILED
    assert "reg.example/trainer:9" in p.message and "manifest unknown" in p.message
    assert (p.pod, p.attempt) == ("ft-2-head-abc", 2)


def test_container_config_error() -> None:
    p = pod_problem(pod(waiting("CreateContainerConfigError", 'secret "hf" not found')))
    assert p is not None and p.reason is Reason.POD_CONFIG_ERROR and 'secret "hf"' in p.message


@pytest.mark.parametrize(
    "message, reason",
    [
        ("0/4 nodes are available: 4 Insufficient nvidia.com/gpu.", Reason.UNSCHEDULABLE),
        ('persistentvolumeclaim "ckpt" not found', Reason.CLAIM_NOT_BOUND),
        ("pod has unbound immediate PersistentVolumeClaims", Reason.CLAIM_NOT_BOUND),
    ],
)
def test_unschedulable_keeps_the_schedulers_reason(message: str, reason: Reason) -> None:
    st = {
        "conditions": [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": message,
            }
        ]
    }
    p = pod_problem(pod(st))
    assert p is not None and p.reason is reason and message in p.message


def test_healthy_and_starting_pods_have_no_problem() -> None:
    assert pod_problem(pod({})) is None
    assert pod_problem(pod({"conditions": [{"type": "PodScheduled", "status": "True"}]})) is None
    assert pod_problem(pod(waiting("ContainerCreating"))) is None
    assert summary(pod({})) is None


def test_summary_round_trip() -> None:
    p = pod_problem(pod(waiting("ErrImagePull"), attempt=None))
    s = summary(pod(waiting("ErrImagePull"), attempt=None))
    assert s is not None and from_summary(s) == p and p is not None and p.attempt is None
