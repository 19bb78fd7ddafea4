"""Audio decoding: formats, channel layouts and rates all come out as 16 kHz mono float32."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from whisperft.trainer.data import SAMPLE_RATE, DataError, decode_bytes, load_audio, to_mono_16k

pytestmark = pytest.mark.unit


def tone(freq: float, rate: int, seconds: float = 1.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(audio: np.ndarray, rate: int = SAMPLE_RATE) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return float(np.fft.rfftfreq(len(audio), 1 / rate)[np.argmax(spectrum)])


def check_16k(audio: np.ndarray, seconds: float) -> None:
    assert audio.dtype == np.float32
    assert audio.ndim == 1
    assert abs(len(audio) - seconds * SAMPLE_RATE) <= 0.01 * SAMPLE_RATE + 1152


@pytest.mark.parametrize(
    ("rate", "fmt", "subtype"),
    [
        (48_000, "WAV", "PCM_16"),  # Common Voice's rate, as PCM
        (22_050, "WAV", "FLOAT"),  # espeak-ng's rate
        (44_100, "FLAC", "PCM_16"),
        (48_000, "OGG", "VORBIS"),
        (48_000, "MP3", "MPEG_LAYER_III"),  # Common Voice's rate and codec
        (16_000, "WAV", "PCM_16"),  # already right: passes through
    ],
)
def test_formats_and_rates_resample_to_16k_keeping_pitch(
    tmp_path: Path, rate: int, fmt: str, subtype: str
) -> None:
    path = tmp_path / f"tone.{fmt.lower()}"
    sf.write(path, tone(1000.0, rate), rate, format=fmt, subtype=subtype)
    audio = load_audio(path)
    check_16k(audio, 1.0)
    assert peak_hz(audio) == pytest.approx(1000.0, abs=3.0)
    assert 0.3 < float(np.abs(audio).max()) < 0.7  # level kept (0.5 in)


def test_stereo_48k_is_downmixed_not_rejected(tmp_path: Path) -> None:
    left, right = tone(440.0, 48_000), tone(1500.0, 48_000)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), 48_000)
    audio = load_audio(path)
    check_16k(audio, 1.0)
    spectrum = np.abs(np.fft.rfft(audio))
    freqs = np.fft.rfftfreq(len(audio), 1 / SAMPLE_RATE)
    strongest = sorted(float(f) for f in freqs[np.argsort(spectrum)[-2:]])
    assert strongest == [pytest.approx(440.0, abs=2.0), pytest.approx(1500.0, abs=2.0)]


def test_decode_bytes_matches_file(tmp_path: Path) -> None:
    path = tmp_path / "a.mp3"
    sf.write(path, tone(700.0, 48_000), 48_000, format="MP3")
    np.testing.assert_array_equal(decode_bytes(path.read_bytes()), load_audio(path))


def test_array_input_resampled() -> None:
    audio = to_mono_16k(np.stack([tone(300.0, 22_050)] * 2, axis=1), 22_050)
    check_16k(audio, 1.0)
    assert peak_hz(audio) == pytest.approx(300.0, abs=3.0)


def mp3_bytes(tmp_path: Path, seconds: float = 2.0) -> bytes:
    path = tmp_path / "good.mp3"
    sf.write(path, tone(500.0, 48_000, seconds), 48_000, format="MP3")
    return path.read_bytes()


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found") as err:
        load_audio(tmp_path / "nope.mp3")
    assert err.value.reason == "missing_clip"


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty.mp3").write_bytes(b"")
    with pytest.raises(DataError, match=r"empty.mp3: audio file is empty") as err:
        load_audio(tmp_path / "empty.mp3")
    assert err.value.reason == "empty_audio"
    with pytest.raises(DataError, match="empty"):
        decode_bytes(b"")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("random_bytes", "cannot decode"),
        ("text", "cannot decode"),
        ("header_then_garbage", "cannot decode"),
        ("overwritten_middle", "cannot decode"),
        # a few frames garbled: the decoder resyncs but stops short of the header's length
        ("garbled_frames", r"truncated or corrupt audio: decoded \d+ of 96000 frames"),
        ("header_fragment_only", "cannot decode"),
    ],
)
def test_corrupt_or_truncated_mp3(tmp_path: Path, damage: str, message: str) -> None:
    good = mp3_bytes(tmp_path)
    noise = np.random.default_rng(0).bytes
    data = {
        "random_bytes": noise(4000),
        "text": b"this is not audio\n" * 100,
        "header_then_garbage": good[:400] + bytes(range(256)) * 16,
        "overwritten_middle": good[:2000] + noise(2000) + good[4000:],
        "garbled_frames": good[:3000] + noise(500) + good[3500:],
        "header_fragment_only": good[:100],
    }[damage]
    path = tmp_path / "bad.mp3"
    path.write_bytes(data)
    with pytest.raises(DataError, match=rf"bad\.mp3: {message}") as err:
        load_audio(path)
    assert err.value.reason == "corrupt_audio"


def test_digital_silence_is_corrupt(tmp_path: Path) -> None:
    """A clip that decodes to all zeros (a failed recording) carries no speech."""
    path = tmp_path / "silent.mp3"
    sf.write(path, np.zeros(48_000, dtype=np.float32), 48_000, format="MP3")
    with pytest.raises(DataError, match="digital silence") as err:
        load_audio(path)
    assert err.value.reason == "corrupt_audio"


def test_non_finite_array_rejected() -> None:
    samples = tone(300.0, 16_000)
    samples[10] = np.nan
    with pytest.raises(DataError, match="NaN"):
        to_mono_16k(samples, 16_000)


@pytest.mark.parametrize(
    ("fmt", "subtype", "ext"),
    [("WAV", "PCM_16", "wav"), ("FLAC", "PCM_16", "flac"), ("MP3", "MPEG_LAYER_III", "mp3")],
)
def test_a_long_recording_is_refused_without_being_decoded_whole(
    tmp_path: Path, fmt: str, subtype: str, ext: str
) -> None:
    import tracemalloc

    rate, minutes = 8_000, 10
    path = tmp_path / f"long.{ext}"
    sf.write(
        path, tone(440, rate, seconds=60.0 * minutes, amp=0.3), rate, format=fmt, subtype=subtype
    )
    tracemalloc.start()
    try:
        with pytest.raises(DataError) as err:
            load_audio(path, max_seconds=30.0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert err.value.reason == "too_long" and "30.0 s" in str(err.value)
    # A whole decode is 10 min x 8 kHz x 4 bytes = 19 MB (plus the resampled copy);
    # refusing it costs at most the first 30 s.
    assert peak < 4_000_000, peak
    # Within the limit it decodes as before, and the bytes path refuses the same way.
    short = tmp_path / f"short.{ext}"
    sf.write(short, tone(440, rate, seconds=5.0), rate, format=fmt, subtype=subtype)
    check_16k(load_audio(short, max_seconds=30.0), 5.0)
    with pytest.raises(DataError) as err:
        decode_bytes(path.read_bytes(), name="long", max_seconds=30.0)
    assert err.value.reason == "too_long"
