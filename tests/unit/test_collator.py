import numpy as np
import pytest

from whisperft.trainer.data.collator import (
    IGNORE_INDEX,
    collate,
    micro_batch,
    micro_batches_per_epoch,
    shard_indices,
)

pytestmark = pytest.mark.unit

SOT, EN, TR, NOTS, EOT = 50258, 50259, 50360, 50364, 50257


def test_shift_pad_and_prefix_mask() -> None:
    feats = np.arange(3 * 2 * 4, dtype=np.float16).reshape(3, 2, 4)
    labels = [
        [SOT, EN, TR, NOTS, 11, 12, EOT],
        [SOT, EN, TR, NOTS, 21, EOT],
        [SOT, EN, TR, NOTS, 31, 32, 33, EOT],
    ]
    b = collate(feats, labels, [1, 2], prefix_len=4, pad_id=EOT)
    assert b.input_features.dtype == np.float32
    assert b.input_features.shape == (2, 2, 4)
    np.testing.assert_array_equal(b.input_features[0], feats[1].astype(np.float32))
    # decoder reads everything but the last token, padded with the pad id
    assert b.decoder_input_ids.tolist() == [
        [SOT, EN, TR, NOTS, 21, EOT, EOT],
        [SOT, EN, TR, NOTS, 31, 32, 33],
    ]
    # targets: prefix positions (lang, task, notimestamps) masked; padding masked
    m = IGNORE_INDEX
    assert b.labels.tolist() == [[m, m, m, 21, EOT, m, m], [m, m, m, 31, 32, 33, EOT]]
    assert b.n_label_tokens == 2 + 4


def test_english_only_prefix_masks_one_position() -> None:
    b = collate(np.zeros((1, 1, 1)), [[SOT, NOTS, 7, EOT]], [0], prefix_len=2, pad_id=EOT)
    assert b.labels.tolist() == [[IGNORE_INDEX, 7, EOT]]


def test_empty_batch_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one"):
        collate(np.zeros((1, 1, 1)), [[1, 2]], [], prefix_len=1, pad_id=0)


def test_shards_are_disjoint_and_cover_the_epoch() -> None:
    n, world = 103, 2
    a = shard_indices(n, epoch=0, seed=1, rank=0, world_size=world)
    b = shard_indices(n, epoch=0, seed=1, rank=1, world_size=world)
    assert len(a) == len(b) == 51
    assert not set(a) & set(b)
    assert len(set(a) | set(b)) == 102
    # a new epoch reshuffles
    assert shard_indices(n, epoch=1, seed=1, rank=0, world_size=world).tolist() != a.tolist()


def test_micro_batch_position_is_resumable() -> None:
    n, bs, world = 40, 4, 2
    per_epoch = micro_batches_per_epoch(n, world, bs)
    assert per_epoch == 5
    seen = [
        micro_batch(n, micro_step=s, batch_size=bs, seed=0, rank=0, world_size=world)
        for s in range(12)
    ]
    assert [p.epoch for p, _ in seen] == [0] * 5 + [1] * 5 + [2] * 2
    epoch0 = [i for _, idx in seen[:5] for i in idx]
    assert len(set(epoch0)) == 20
    # the same global micro-step always gives the same examples (resume exactness)
    again = micro_batch(n, micro_step=7, batch_size=bs, seed=0, rank=0, world_size=world)
    assert again == seen[7]


def test_too_little_data_names_the_numbers() -> None:
    with pytest.raises(
        ValueError, match="3 training examples cannot fill one batch of 2 on each of 2 workers"
    ):
        micro_batches_per_epoch(3, 2, 2)
