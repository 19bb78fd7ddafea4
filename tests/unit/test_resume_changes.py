"""A resume with other data-order settings is named, not silent."""

from __future__ import annotations

import pytest

from whisperft.trainer.config import TrainConfig
from whisperft.trainer.worker import data_position_changes

pytestmark = pytest.mark.unit


def test_only_data_order_settings_count() -> None:
    saved = TrainConfig().model_dump(mode="json")
    same = TrainConfig().model_dump(mode="json")
    assert data_position_changes(saved, same) == []
    other = TrainConfig.from_dict(
        {
            "training": {
                "max_steps": 100,
                "learning_rate": 3e-5,
                "batch_size_per_worker": 4,
                "seed": 7,
            },
            "data": {"path": "bundled:sw"},
        }
    ).model_dump(mode="json")
    # the learning rate is not a data-order setting
    assert data_position_changes(saved, other) == [
        "training.batch_size_per_worker",
        "training.seed",
        "data.path",
    ]
