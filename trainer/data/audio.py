"""Audio decoding: soundfile (libsndfile: wav/flac/ogg/mp3), downmix, soxr to 16 kHz.

Deliberately not `datasets.Audio` decoding: datasets >= 4 decodes through
torchcodec, which needs FFmpeg and a wheel matching torch. libsndfile ships
inside the soundfile wheel and reads Common Voice's MP3 directly.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from whisperft.trainer.data.errors import DataError

SAMPLE_RATE = 16_000
# More than this many frames short of what the header declares means the
# stream broke off (truncated download, corrupt frames); one MPEG frame is 1,152.
_MISSING_FRAMES_TOLERANCE = 2 * 1152


def to_mono_16k(samples: np.ndarray, rate: int, *, name: str = "<array>") -> np.ndarray:
    """Downmix (frames, channels) or (frames,) audio and resample it to 16 kHz float32."""
    if rate <= 0:
        raise DataError(f"{name}: invalid sample rate {rate}", reason="corrupt_audio")
    data = np.asarray(samples, dtype=np.float32)
    if data.ndim == 2:
        data = data.mean(axis=1, dtype=np.float32)
    elif data.ndim != 1:
        raise DataError(f"{name}: audio has shape {data.shape}, want 1-D or (frames, channels)")
    if data.size == 0:
        raise DataError(f"{name}: no audio frames", reason="corrupt_audio")
    if not np.isfinite(data).all():
        raise DataError(f"{name}: audio contains NaN or infinite samples", reason="corrupt_audio")
    if rate != SAMPLE_RATE:
        data = soxr.resample(data, rate, SAMPLE_RATE, quality="HQ")
    return np.ascontiguousarray(data, dtype=np.float32)


def _decode(source: str | io.BytesIO, name: str, max_seconds: float | None = None) -> np.ndarray:
    """With ``max_seconds``, a longer clip is refused (reason too_long) from its header,
    or after reading just past the limit when the header cannot say: a multi-hour
    recording is never decoded whole."""
    too_long: str | None = None
    try:
        with sf.SoundFile(source) as f:
            declared, rate = f.frames, f.samplerate
            limit = int(max_seconds * rate) + 1 if max_seconds is not None and rate > 0 else -1
            if limit > 0 and 0 < declared < 2**40 and declared > limit + _MISSING_FRAMES_TOLERANCE:
                too_long = f"{declared / rate:.1f} s > {max_seconds} s (not decoded)"
                data = np.zeros((0, 1), dtype=np.float32)
            else:
                data = f.read(
                    frames=limit + 1 if limit > 0 else -1, dtype="float32", always_2d=True
                )
                if limit > 0 and len(data) > limit:
                    too_long = f"longer than {max_seconds} s (decoding stopped there)"
    except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
        raise DataError(f"{name}: cannot decode audio ({exc})", reason="corrupt_audio") from exc
    if too_long is not None:
        raise DataError(f"{name}: {too_long}", reason="too_long")
    if len(data) == 0:
        raise DataError(f"{name}: no audio frames", reason="corrupt_audio")
    if 0 < declared < 2**40 and len(data) < declared - _MISSING_FRAMES_TOLERANCE:
        raise DataError(
            f"{name}: truncated or corrupt audio: decoded {len(data)} of {declared} frames",
            reason="corrupt_audio",
        )
    if not np.any(data):
        raise DataError(f"{name}: audio is digital silence", reason="corrupt_audio")
    return to_mono_16k(data, rate, name=name)


def load_audio(path: str | Path, *, max_seconds: float | None = None) -> np.ndarray:
    """Decode an audio file to 16 kHz mono float32; DataError if missing, empty, corrupt
    or (with ``max_seconds``) too long."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: audio file not found", reason="missing_clip")
    if p.stat().st_size == 0:
        raise DataError(f"{p}: audio file is empty (0 bytes)", reason="empty_audio")
    return _decode(str(p), str(p), max_seconds)


def decode_bytes(
    data: bytes, *, name: str = "<bytes>", max_seconds: float | None = None
) -> np.ndarray:
    """Decode encoded audio held in memory (e.g. an Arrow cell) like load_audio."""
    if not data:
        raise DataError(f"{name}: audio is empty (0 bytes)", reason="empty_audio")
    return _decode(io.BytesIO(data), name, max_seconds)
