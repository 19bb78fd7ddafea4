"""The batched log-mel extractor against WhisperFeatureExtractor's own output."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from transformers import WhisperFeatureExtractor

from whisperft.trainer.data import load_audio
from whisperft.trainer.data.log_mel import LogMel

pytestmark = pytest.mark.unit

CLIPS = Path(__file__).resolve().parents[2] / "trainer" / "corpus" / "en" / "clips"


def _library(fe: WhisperFeatureExtractor, clips: list[np.ndarray]) -> np.ndarray:
    return np.stack(
        [fe(c, sampling_rate=16000, return_tensors="np").input_features[0] for c in clips]
    )


@pytest.mark.parametrize("mels", [80, 128])
def test_matches_the_library_on_clips_of_every_length(mels: int) -> None:
    fe = WhisperFeatureExtractor(feature_size=mels)
    rng = np.random.default_rng(0)
    lengths = [0, 1, 159, 160, 401, 16000, 77_777, 479_999, 480_000, 600_000]
    clips = [(rng.standard_normal(n) * rng.uniform(0.01, 0.5)).astype(np.float32) for n in lengths]
    ours = LogMel(fe)(clips)
    ref = _library(fe, clips)
    assert ours.shape == ref.shape == (len(clips), mels, 3000)
    assert np.abs(ours - ref).max() < 1e-4


def test_matches_the_library_on_real_speech_batched_and_alone() -> None:
    fe = WhisperFeatureExtractor()
    clips = [load_audio(p) for p in sorted(CLIPS.iterdir())[:12]]
    assert len(clips) == 12
    ref = _library(fe, clips)
    log_mel = LogMel(fe)
    assert np.abs(log_mel(clips) - ref).max() < 1e-4
    assert np.abs(log_mel(clips[5:6]) - ref[5:6]).max() < 1e-4  # batch-independent


def test_dither_falls_back_to_the_library() -> None:
    fe = WhisperFeatureExtractor(dither=1e-3)
    log_mel = LogMel(fe)
    assert log_mel.identity()["exact"] is False
    out = log_mel([np.zeros(8000, np.float32)])
    assert out.shape == (1, 80, 3000)
    assert LogMel(WhisperFeatureExtractor()).identity() != log_mel.identity()


def test_empty_batch() -> None:
    assert LogMel(WhisperFeatureExtractor())([]).shape == (0, 80, 3000)


def test_feature_cache_batches_in_order_and_keeps_durations(tmp_path: Path) -> None:
    from collections import Counter

    from whisperft.trainer.data.example import Example
    from whisperft.trainer.data.features import build_feature_set
    from whisperft.trainer.evaluation import decode_order

    fe = WhisperFeatureExtractor()
    rng = np.random.default_rng(1)
    seconds = [0.5 + (i * 7 % 11) * 0.3 for i in range(37)]  # 37: two full batches and a rest
    examples = [
        Example(
            audio=(rng.standard_normal(int(s * 16000)) * 0.1).astype(np.float32),
            sentence=f"clip {i}",
            meta={"id": str(i), "path": f"{i}.wav", "speaker": "s", "split": "test"},
        )
        for i, s in enumerate(seconds)
    ]
    fs = build_feature_set(
        cache_root=tmp_path,
        key="k",
        examples=iter(examples),
        skipped=Counter(),
        extract=LogMel(fe),
        labels_for=lambda s: [len(s)],
        batch_size=16,
    )
    assert len(fs) == 37 and fs.sentences == [e.sentence for e in examples]
    ref = _library(fe, [examples[i].audio for i in (0, 16, 36)])
    assert np.abs(np.asarray(fs.features[[0, 16, 36]], np.float32) - ref).max() < 2e-3  # float16
    assert [float(m["seconds"]) for m in fs.meta] == pytest.approx(seconds, abs=1e-3)
    order = decode_order(fs.meta)
    assert sorted(order) == list(range(37))
    assert [seconds[i] for i in order] == sorted(seconds, reverse=True)


def test_float16_output_is_the_float32_output_rounded() -> None:
    fe = WhisperFeatureExtractor()
    clips = [load_audio(p) for p in sorted(CLIPS.iterdir())[:4]] + [np.zeros(480_000, np.float32)]
    log_mel = LogMel(fe)
    half = log_mel(clips, np.float16)
    assert half.dtype == np.float16
    assert np.array_equal(half, log_mel(clips).astype(np.float16))


def test_prefetch_keeps_order_raises_in_order_and_stops_when_abandoned() -> None:
    import threading

    from whisperft.trainer.data.features import _prefetched

    assert list(_prefetched(iter(range(50)))) == list(range(50))

    def failing():  # type: ignore[no-untyped-def]
        yield 1
        yield 2
        raise ValueError("clip 3 is corrupt")

    got = []
    with pytest.raises(ValueError, match="clip 3 is corrupt"):
        for x in _prefetched(failing()):
            got.append(x)
    assert got == [1, 2]
    produced = []

    def endless():  # type: ignore[no-untyped-def]
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    gen = _prefetched(endless(), depth=2)
    assert next(gen) == 0
    gen.close()  # the consumer walks away: the thread must stop, not run on forever
    assert not [t for t in threading.enumerate() if t.name == "feature-prefetch"]
    assert len(produced) < 10
