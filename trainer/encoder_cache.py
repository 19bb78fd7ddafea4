"""Training past a frozen encoder prefix without running it every step.

The encoder is ~80% of Whisper's FLOPs and every input is 30 s, whatever the
clip length. When the conv stem and the first ``k`` encoder layers are frozen
and no augmentation touches the input, their output is a fixed function of
the example, so it is computed once per example (sharded over the workers)
and stored next to the run; training then runs only the top encoder layers
and the decoder.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from whisperft.trainer.data.rows import Rows


def frozen_prefix_layers(model: Any, train_top_layers: int) -> int:
    n = len(model.model.encoder.layers)
    if not 0 <= train_top_layers <= n:
        raise ValueError(
            f"train_top_encoder_layers={train_top_layers}, but the encoder has {n} layers"
        )
    return n - train_top_layers


def encoder_prefix(model: Any, input_features: torch.Tensor, k: int) -> torch.Tensor:
    """Output of the conv stem, positions and the first ``k`` layers (final norm when k = all)."""
    enc = model.model.encoder
    h = nn.functional.gelu(enc.conv1(input_features))
    h = nn.functional.gelu(enc.conv2(h)).permute(0, 2, 1)
    h = h + enc.embed_positions.weight[: h.shape[1]]
    for layer in enc.layers[:k]:
        h = layer(h, None)
    if k == len(enc.layers):
        h = enc.layer_norm(h)
    return h


class TailModel(nn.Module):
    """Whisper from cached encoder-prefix states: top encoder layers + decoder."""

    def __init__(self, whisper: Any, k: int) -> None:
        super().__init__()
        self.whisper = whisper
        self.k = k

    def forward(
        self, hidden: torch.Tensor, decoder_input_ids: torch.Tensor, labels: torch.Tensor
    ) -> Any:
        from transformers.modeling_outputs import BaseModelOutput

        enc = self.whisper.model.encoder
        if self.k < len(enc.layers):
            for layer in enc.layers[self.k :]:
                hidden = layer(hidden, None)
            hidden = enc.layer_norm(hidden)
        return self.whisper(
            encoder_outputs=BaseModelOutput(last_hidden_state=hidden),
            decoder_input_ids=decoder_input_ids,
            labels=labels,
        )


def cache_dir_for(
    root: Path, model_dir: str, features_path: str, k: int, *, precision: str = "fp32"
) -> Path:
    """Keyed by the model's files (name, size, mtime), not only its path: a model
    directory overwritten in place (a re-imported export on a claim) must not
    reuse states computed from the old weights; and by the precision they were
    computed in (a bf16-autocast run's states are not an fp32 run's)."""
    files = sorted(
        (p.name, p.stat().st_size, p.stat().st_mtime_ns)
        for p in Path(model_dir).iterdir()
        if p.is_file()
    )
    key = hashlib.sha256(
        json.dumps([str(model_dir), files, str(features_path), k, precision]).encode()
    ).hexdigest()[:16]
    return root / f"encoder-{key}"


def build_sharded(
    model: Any, features: np.ndarray, out: Path, *, k: int, rank: int, world: int, batch: int = 8
) -> None:
    """Rank ``rank`` writes states for examples ``rank::world`` (skipped if already there)."""
    part = out / f"part{rank}-of{world}.f16"
    done = out / f"part{rank}-of{world}.done"
    if done.exists():
        return
    out.mkdir(parents=True, exist_ok=True)
    indices = list(range(rank, len(features), world))
    param = next(model.parameters())
    shape: tuple[int, ...] = ()
    with torch.inference_mode(), open(part, "wb") as f:
        for s in range(0, len(indices), batch):
            chunk = indices[s : s + batch]
            x = torch.from_numpy(
                np.stack([np.asarray(features[i], dtype=np.float32) for i in chunk])
            )
            h = encoder_prefix(model, x.to(param.device, param.dtype), k).float().cpu().numpy()
            shape = h.shape[1:]
            f.write(h.astype(np.float16).tobytes())
    done.write_text(json.dumps({"n": len(indices), "shape": list(shape)}))


class CachedStates:
    """All parts, read row by row (data/rows.py); ``states[i]`` is example i's prefix output."""

    def __init__(self, out: Path, world: int, n: int) -> None:
        self.world = world
        self.parts = []
        for r in range(world):
            info = json.loads((out / f"part{r}-of{world}.done").read_text())
            shape = (info["n"], *info["shape"])
            self.parts.append(Rows(out / f"part{r}-of{world}.f16", np.float16, shape))
        self.n = n

    def __getitem__(self, i: int) -> np.ndarray:
        return self.parts[i % self.world][i // self.world]

    def __len__(self) -> int:
        return self.n
