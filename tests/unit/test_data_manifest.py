"""JSONL manifests: relative paths, bad lines counted, declared durations filter undecoded."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from whisperft.trainer.data import SAMPLE_RATE, DataError, iter_split, read_split

pytestmark = pytest.mark.unit


def clip(path: Path, seconds: float, rate: int = 48_000, channels: int = 1) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(rate * seconds)) / rate
    mono = (0.4 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)
    sf.write(path, mono if channels == 1 else np.stack([mono] * channels, axis=1), rate)


def write_manifest(path: Path, lines: list[object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        for line in lines:
            f.write(line if isinstance(line, bytes) else json.dumps(line).encode())
            f.write(b"\n")


def test_manifest_file_with_bad_lines(tmp_path: Path) -> None:
    clip(tmp_path / "audio" / "a.wav", 1.0, 48_000, channels=2)
    clip(tmp_path / "audio" / "b.wav", 2.0, 22_050)
    write_manifest(
        tmp_path / "m.jsonl",
        [
            {"audio": "audio/a.wav", "text": "Stereo clip.", "speaker": "s1", "id": "a1"},
            b"{broken json",
            b'"a string"',
            {"audio": "audio/b.wav"},
            {"audio": "audio/b.wav", "text": "  "},
            b"\xff\xfe not utf-8",
            {"audio": "audio/nope.wav", "text": "Missing."},
            {"audio": str(tmp_path / "audio" / "b.wav"), "sentence": "Absolute path."},
            b"",
        ],
    )
    data = read_split("manifest", tmp_path / "m.jsonl", "test")
    assert [e.sentence for e in data.examples] == ["Stereo clip.", "Absolute path."]
    assert data.skipped == collections.Counter(
        bad_row=3, empty_sentence=1, bad_encoding=1, missing_clip=1
    )
    first = data.examples[0]
    assert first.meta == {
        "id": "a1",
        "path": str(tmp_path / "audio" / "a.wav"),
        "speaker": "s1",
        "split": "test",
        "duration": "1.000",
    }
    assert len(data.examples[1].audio) / SAMPLE_RATE == pytest.approx(2.0, abs=0.01)


def test_declared_duration_filters_without_decoding(tmp_path: Path) -> None:
    clip(tmp_path / "ok.wav", 1.0)
    write_manifest(
        tmp_path / "train.jsonl",
        [
            # never decoded: the file does not exist, yet the skip is "too_long"
            {"audio": "absent.wav", "text": "Long.", "duration": 45.0},
            {"audio": "absent.wav", "text": "Short.", "duration": 0.1},
            {"audio": "ok.wav", "text": "Kept.", "duration": 1.0},
            {"audio": "ok.wav", "text": "Bad duration.", "duration": "long"},
        ],
    )
    skipped: collections.Counter[str] = collections.Counter()
    kept = list(iter_split("manifest", tmp_path, "train", skipped=skipped, min_duration_s=0.5))
    assert [e.sentence for e in kept] == ["Kept."]
    assert skipped == collections.Counter(too_long=1, too_short=1, bad_row=1)


def test_directory_of_split_manifests(tmp_path: Path) -> None:
    clip(tmp_path / "x.wav", 1.0)
    write_manifest(tmp_path / "validation.jsonl", [{"audio": "x.wav", "text": "Dev via alias."}])
    assert [e.sentence for e in read_split("manifest", tmp_path, "dev").examples] == [
        "Dev via alias."
    ]
    with pytest.raises(DataError, match=r"no test\.jsonl manifest; found: validation\.jsonl"):
        read_split("manifest", tmp_path, "test")


def test_all_lines_bad_is_an_error_naming_reasons(tmp_path: Path) -> None:
    write_manifest(tmp_path / "m.jsonl", [b"nope", {"audio": "a.wav", "text": ""}])
    with pytest.raises(DataError) as err:
        read_split("manifest", tmp_path / "m.jsonl", "train")
    assert str(tmp_path / "m.jsonl") in str(err.value)
    assert "bad_row: 1" in str(err.value) and "empty_sentence: 1" in str(err.value)
