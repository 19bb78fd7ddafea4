"""Disk a run needs on its checkpoint claim: the feature cache, the encoder-output
cache, the converted model, the checkpoints it keeps and the exported model.

Features are float16 log-mels (n_mels x 3000 frames per clip) and encoder
outputs float16 (1500 x d_model per clip), as trainer/data/features.py and
trainer/encoder_cache.py write them. A DeepSpeed checkpoint holds the module
weights and, per trainable parameter, the fp32 master copy and Adam's two
moments (12 bytes); a LoRA checkpoint holds the adapters only. On disk at once:
``keepCheckpoints``, the best one, and the one being written before the
oldest is pruned. Clip counts are known only when the spec bounds them
(``maxTrainExamples``/``maxEvalExamples``) or the caller counted them.
"""

from __future__ import annotations

from dataclasses import dataclass

from whisperft.operator.planning.memory import GIB, PlanInput, Strategy, trainable_params
from whisperft.operator.planning.whisper_sizes import ENCODER_POSITIONS, WhisperDims

FEATURE_FRAMES = 3000


@dataclass(frozen=True)
class DiskInput:
    clips: int | None  # every split's clips, when known
    keep_checkpoints: int
    save_every: int
    max_steps: int | None
    encoder_cache: bool  # frozen encoder prefix cached (freezeEncoder, no specAugment)
    sixteen_bit: bool  # bf16/fp16 weights on GPUs; CPU workers keep fp32
    claim_gib: float | None  # None: a claim the user brings, size unknown


@dataclass(frozen=True)
class DiskPlan:
    features_gib: float | None
    encoder_cache_gib: float | None
    model_cache_gib: float
    checkpoint_gib: float
    checkpoints_on_disk: int
    export_gib: float
    claim_gib: float | None
    notes: tuple[str, ...] = ()

    @property
    def known_gib(self) -> float:
        caches = (self.features_gib or 0.0) + (self.encoder_cache_gib or 0.0)
        return (
            caches
            + self.model_cache_gib
            + self.checkpoint_gib * self.checkpoints_on_disk
            + self.export_gib
        )

    @property
    def fits(self) -> bool:
        return self.claim_gib is None or self.known_gib <= self.claim_gib

    def refusal(self) -> str | None:
        if self.fits:
            return None
        return (
            f"will not fit on disk: the run needs {self.known_gib:.1f} GiB on its checkpoint "
            f"claim ({self.checkpoints_on_disk} checkpoints of {self.checkpoint_gib:.2f} GiB, "
            f"caches {(self.features_gib or 0) + (self.encoder_cache_gib or 0):.1f} GiB, model "
            f"{self.model_cache_gib + self.export_gib:.1f} GiB), the claim is {self.claim_gib:g} "
            "GiB; raise spec.checkpoints.size or lower training.keepCheckpoints"
        )


def checkpoints_on_disk(d: DiskInput) -> int:
    if d.save_every == 0:
        return 1  # one checkpoint, at the end
    if d.max_steps is not None:
        saves = max(1, d.max_steps // d.save_every)
        return min(saves, d.keep_checkpoints + 2)
    return d.keep_checkpoints + 2


def plan_disk(dims: WhisperDims, inp: PlanInput, s: Strategy, d: DiskInput) -> DiskPlan:
    wbytes = 2 if d.sixteen_bit else 4
    t = trainable_params(dims, inp, s.lora)
    saved_weights = t if s.lora else dims.params
    ckpt = (wbytes * saved_weights + 12 * t) / GIB
    notes: list[str] = []
    if d.clips is None:
        feats = enc = None
        per_k = 1000 * dims.n_mels * FEATURE_FRAMES * 2 / GIB
        notes.append(
            f"clip count unknown: features take {per_k:.2f} GiB per 1,000 clips"
            + (
                f", encoder outputs {1000 * ENCODER_POSITIONS * dims.d_model * 2 / GIB:.2f} GiB"
                if d.encoder_cache
                else ""
            )
        )
    else:
        feats = d.clips * dims.n_mels * FEATURE_FRAMES * 2 / GIB
        enc = d.clips * ENCODER_POSITIONS * dims.d_model * 2 / GIB if d.encoder_cache else 0.0
    return DiskPlan(
        features_gib=None if feats is None else round(feats, 3),
        encoder_cache_gib=None if enc is None else round(enc, 3),
        model_cache_gib=round(4 * dims.params / GIB, 3),
        checkpoint_gib=round(ckpt, 3),
        checkpoints_on_disk=checkpoints_on_disk(d),
        export_gib=round(4 * dims.params / GIB, 3),
        claim_gib=d.claim_gib,
        notes=tuple(notes),
    )
