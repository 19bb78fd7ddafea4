"""The frozen-encoder cache is keyed by what the states depend on."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from whisperft.trainer.encoder_cache import cache_dir_for

pytestmark = pytest.mark.unit


def test_key_follows_weights_features_and_depth(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    weights = model / "model.safetensors"
    weights.write_bytes(b"a" * 64)
    root = tmp_path / "cache"
    first = cache_dir_for(root, str(model), "/f/train", 3)
    assert first == cache_dir_for(root, str(model), "/f/train", 3)
    assert first.parent == root
    assert first != cache_dir_for(root, str(model), "/f/other", 3)
    assert first != cache_dir_for(root, str(model), "/f/train", 2)
    # the same path overwritten with other weights is another cache
    weights.write_bytes(b"b" * 65)
    second = cache_dir_for(root, str(model), "/f/train", 3)
    assert second != first
    # same size, rewritten later: still another cache
    st = weights.stat()
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert cache_dir_for(root, str(model), "/f/train", 3) != second
