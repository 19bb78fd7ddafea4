"""The caches on a claim stay within their bound: least recently used entries go first,
never one the run uses; a killed run's temporary directories are cleaned."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from whisperft.operator.planning.disk import DiskPlan
from whisperft.operator.render.trainconfig import cache_bound_gib
from whisperft.trainer import cache_prune

pytestmark = pytest.mark.unit


def _entry(root: Path, name: str, size: int, used_ago_s: float) -> Path:
    d = root / name
    d.mkdir(parents=True)
    (d / "features.f16").write_bytes(b"\0" * size)
    cache_prune.touch(d)
    t = time.time() - used_ago_s
    os.utime(d / cache_prune.USED, (t, t))
    return d


def test_least_recently_used_go_first_and_the_runs_own_stay(tmp_path: Path) -> None:
    old = _entry(tmp_path, "aaa", 400, used_ago_s=3000)
    mid = _entry(tmp_path, "encoder-bbb", 400, used_ago_s=2000)
    mine = _entry(tmp_path, "ccc", 400, used_ago_s=9000)  # oldest, but this run's
    new = _entry(tmp_path, "ddd", 400, used_ago_s=10)
    removed = cache_prune.prune(tmp_path, keep=[mine], max_bytes=900)
    assert removed == [old, mid]
    assert mine.is_dir() and new.is_dir()
    # Within the bound nothing goes; no bound keeps everything but stale temporaries.
    assert cache_prune.prune(tmp_path, keep=[mine], max_bytes=900) == []
    assert cache_prune.prune(tmp_path, keep=[], max_bytes=None) == []


def test_a_killed_runs_temporary_directory_is_removed_once_stale(tmp_path: Path) -> None:
    fresh = tmp_path / ".key1-abc"
    stale = tmp_path / ".key2-def"
    for d in (fresh, stale):
        d.mkdir()
    t = time.time() - 2 * cache_prune.STALE_TMP_S
    os.utime(stale, (t, t))
    assert cache_prune.prune(tmp_path, keep=[], max_bytes=None) == [stale]
    assert fresh.is_dir()  # may be another run's build in progress


def test_the_bound_is_what_the_claim_has_left() -> None:
    disk = DiskPlan(
        features_gib=None,
        encoder_cache_gib=None,
        model_cache_gib=2.0,
        checkpoint_gib=3.0,
        checkpoints_on_disk=4,
        export_gib=1.0,
        claim_gib=50.0,
    )
    assert cache_bound_gib(disk) == 50.0 - (12.0 + 2.0 + 1.0)
    assert cache_bound_gib(None) is None
