"""A resume with other data-order settings is named, not silent."""

from __future__ import annotations

import pytest
from trainconfig_factory import train_config

from whisperft.trainer.worker import data_position_changes

pytestmark = pytest.mark.unit


def test_only_data_order_settings_count() -> None:
    saved = train_config().to_wire()
    same = train_config().to_wire()
    assert data_position_changes(saved, same) == []
    other = train_config(
        training={"maxSteps": 100, "learningRate": 3e-5, "batchSizePerWorker": 4, "seed": 7},
        dataset={"path": "bundled:sw"},
        model={"name": "bundled:base", "language": "sw"},
    ).to_wire()
    # the learning rate (and the model) are not data-order settings
    assert data_position_changes(saved, other) == [
        "spec.training.batchSizePerWorker",
        "spec.training.seed",
        "spec.dataset.path",
    ]
