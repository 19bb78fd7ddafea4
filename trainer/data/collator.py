"""Batches for Whisper: features stacked, labels shifted, padded and prefix-masked."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

IGNORE_INDEX = -100


@dataclass(frozen=True)
class Batch:
    input_features: np.ndarray  # (B, mels, frames) float32
    decoder_input_ids: np.ndarray  # (B, L) int64
    labels: np.ndarray  # (B, L) int64, IGNORE_INDEX where no loss applies
    n_label_tokens: int


def collate(
    features: np.ndarray,
    labels: Sequence[Sequence[int]],
    indices: Sequence[int],
    *,
    prefix_len: int,
    pad_id: int,
) -> Batch:
    """Teacher-forcing inputs and targets for the examples at ``indices``.

    ``labels[i]`` is the full sequence ``[sot, (lang, task,) notimestamps, text..., eot]``.
    The decoder reads all but the last token and predicts all but the first; the
    targets that are still prefix tokens (language, task, no-timestamps) are
    masked, so the model is conditioned on them but never trained to emit them.
    """
    if not indices:
        raise ValueError("collate needs at least one example")
    seqs = [list(labels[i]) for i in indices]
    width = max(len(s) for s in seqs) - 1
    dec = np.full((len(seqs), width), pad_id, dtype=np.int64)
    tgt = np.full((len(seqs), width), IGNORE_INDEX, dtype=np.int64)
    n_tokens = 0
    for row, seq in enumerate(seqs):
        inp, out = seq[:-1], seq[1:]
        dec[row, : len(inp)] = inp
        tgt[row, : len(out)] = out
        tgt[row, : max(prefix_len - 1, 0)] = IGNORE_INDEX
        n_tokens += len(out) - max(prefix_len - 1, 0)
    feats = np.stack([np.asarray(features[i], dtype=np.float32) for i in indices])
    return Batch(input_features=feats, decoder_input_ids=dec, labels=tgt, n_label_tokens=n_tokens)


@dataclass(frozen=True)
class DataPosition:
    """Where a worker is in the data: resumable from a checkpoint."""

    epoch: int
    index: int  # micro-batch index within the epoch


def micro_batches_per_epoch(n: int, world_size: int, batch_size: int) -> int:
    per_rank = n // world_size
    count = per_rank // batch_size
    if count == 0:
        raise ValueError(
            f"{n} training examples cannot fill one batch of {batch_size} on each of "
            f"{world_size} workers; lower batch_size_per_worker or add data"
        )
    return count


def shard_indices(n: int, *, epoch: int, seed: int, rank: int, world_size: int) -> np.ndarray:
    """This rank's example order for ``epoch``: a seeded shuffle, strided by rank."""
    order = np.random.default_rng(seed + epoch).permutation(n)
    usable = n - n % world_size
    return order[:usable][rank::world_size]


def micro_batch(
    n: int, *, micro_step: int, batch_size: int, seed: int, rank: int, world_size: int
) -> tuple[DataPosition, list[int]]:
    """The indices of global micro-step ``micro_step`` for ``rank``."""
    per_epoch = micro_batches_per_epoch(n, world_size, batch_size)
    epoch, index = divmod(micro_step, per_epoch)
    order = shard_indices(n, epoch=epoch, seed=seed, rank=rank, world_size=world_size)
    chosen = order[index * batch_size : (index + 1) * batch_size]
    return DataPosition(epoch, index), [int(i) for i in chosen]
