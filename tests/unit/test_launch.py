"""Where a run's workers go: this process (Ray Train's local mode) or a Ray cluster."""

from __future__ import annotations

import os

import pytest

from whisperft.trainer.config import ConfigError
from whisperft.trainer.launch import in_process, single_rank_env

pytestmark = pytest.mark.unit


def test_auto_trains_one_local_worker_in_process_and_more_on_ray() -> None:
    assert in_process("auto", ray_address=None, workers=1) is True
    assert in_process("auto", ray_address=None, workers=2) is False
    # Inside a RayJob the driver always joins the cluster, whatever the worker count.
    assert in_process("auto", ray_address="auto", workers=1) is False
    assert in_process("ray", ray_address=None, workers=1) is False
    assert in_process("in-process", ray_address=None, workers=1) is True


@pytest.mark.parametrize(
    ("launch", "address", "workers", "named"),
    [
        ("in-process", None, 2, "spec.resources.workers asks for 2"),
        ("in-process", "auto", 1, "--ray-address"),
        ("threads", None, 1, "expected one of auto, ray, in-process"),
    ],
)
def test_impossible_launches_are_bad_input(
    launch: str, address: str | None, workers: int, named: str
) -> None:
    with pytest.raises(ConfigError, match=named):
        in_process(launch, ray_address=address, workers=workers)


def test_single_rank_env_sets_a_one_rank_group_and_restores(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("MASTER_PORT", "29999")  # set by someone else: kept, then left as it was
    with single_rank_env():
        assert (os.environ["RANK"], os.environ["WORLD_SIZE"]) == ("0", "1")
        assert os.environ["MASTER_ADDR"] == "127.0.0.1"
        assert os.environ["MASTER_PORT"] == "29999"
    assert "RANK" not in os.environ and "WORLD_SIZE" not in os.environ
    assert os.environ["MASTER_PORT"] == "29999"
