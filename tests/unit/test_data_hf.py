"""Hugging Face datasets dirs: save_to_disk output and audiofolder layouts.

The audio column is never decoded through datasets.Audio (torchcodec); our
reader decodes the stored bytes/paths with soundfile.
"""

from __future__ import annotations

import collections
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from whisperft.trainer.data import SAMPLE_RATE, DataError, read_split

pytestmark = pytest.mark.unit


def tone(seconds: float, rate: int, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (0.4 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write_clips(folder: Path, specs: dict[str, tuple[float, int]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, (seconds, rate) in specs.items():
        fmt = "MP3" if name.endswith(".mp3") else None
        sf.write(folder / name, tone(seconds, rate), rate, format=fmt)


@pytest.fixture(scope="module")
def saved_dict(tmp_path_factory: pytest.TempPathFactory) -> Path:
    datasets = pytest.importorskip("datasets")
    src = tmp_path_factory.mktemp("src")
    write_clips(src, {"a.wav": (1.0, 48_000), "b.mp3": (2.0, 48_000), "c.flac": (1.5, 22_050)})
    train = datasets.Dataset.from_dict(
        {
            "audio": [str(src / "a.wav"), str(src / "b.mp3"), str(src / "c.flac")],
            "sentence": ["First one.", "Second one.", "   "],
            "client_id": ["s1", "s2", "s3"],
        }
    ).cast_column("audio", datasets.Audio())
    validation = datasets.Dataset.from_dict(
        {"audio": [str(src / "a.wav")], "transcription": ["Held out."]}
    ).cast_column("audio", datasets.Audio())
    out = tmp_path_factory.mktemp("saved") / "ds"
    datasets.DatasetDict({"train": train, "validation": validation}).save_to_disk(str(out))
    for clip in src.iterdir():  # save_to_disk embedded the bytes; the files are not needed
        clip.unlink()
    return out


def test_save_to_disk_dict_reads_embedded_audio(saved_dict: Path) -> None:
    data = read_split("hf", saved_dict, "train")
    assert [e.sentence for e in data.examples] == ["First one.", "Second one."]
    assert data.skipped == collections.Counter(empty_sentence=1)
    durations = [len(e.audio) / SAMPLE_RATE for e in data.examples]
    assert durations == [pytest.approx(1.0, abs=0.05), pytest.approx(2.0, abs=0.1)]
    assert [e.meta["speaker"] for e in data.examples] == ["s1", "s2"]
    assert all(e.audio.dtype == np.float32 for e in data.examples)


def test_dev_finds_validation_and_text_column_variants(saved_dict: Path) -> None:
    data = read_split("hf", saved_dict, "dev")
    assert [e.sentence for e in data.examples] == ["Held out."]
    with pytest.raises(DataError, match=r"no split 'test'.*splits: \['train', 'validation'\]"):
        read_split("hf", saved_dict, "test")


def test_single_saved_dataset_with_array_audio_and_bad_columns(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict(
        {
            "audio": [{"array": tone(1.0, 8_000).tolist(), "sampling_rate": 8_000}],
            "text": ["From an array."],
        }
    )
    ds.save_to_disk(str(tmp_path / "single"))
    data = read_split("hf", tmp_path / "single", "train")
    assert data.examples[0].sentence == "From an array."
    assert len(data.examples[0].audio) == SAMPLE_RATE
    with pytest.raises(DataError, match="single saved Dataset has no splits"):
        read_split("hf", tmp_path / "single", "test")
    datasets.Dataset.from_dict({"wave": ["x"], "words": ["y"]}).save_to_disk(str(tmp_path / "odd"))
    with pytest.raises(DataError, match=r"no audio column.*columns are: wave, words"):
        read_split("hf", tmp_path / "odd", "train")


def test_audiofolder_per_split_csv_with_quoted_commas(tmp_path: Path) -> None:
    write_clips(tmp_path / "train", {"a.wav": (1.0, 44_100), "b.wav": (1.0, 16_000)})
    (tmp_path / "train" / "metadata.csv").write_bytes(
        b'file_name,transcription\na.wav,"Well, hello there."\n'
        b"b.wav,caf\xe9\n"  # not UTF-8: skipped, counted
        b"missing.wav,Gone.\n"
        b"b.wav,Plain one.\n"
    )
    write_clips(tmp_path / "test", {"t.wav": (1.0, 48_000)})
    (tmp_path / "test" / "metadata.csv").write_text("file_name,transcription\nt.wav,Test.\n")
    data = read_split("hf", tmp_path, "train")
    assert [e.sentence for e in data.examples] == ["Well, hello there.", "Plain one."]
    assert data.skipped == collections.Counter(bad_encoding=1, missing_clip=1)
    assert [e.sentence for e in read_split("hf", tmp_path, "test").examples] == ["Test."]


def test_audiofolder_root_jsonl_split_by_folder(tmp_path: Path) -> None:
    write_clips(tmp_path / "train", {"a.mp3": (1.0, 48_000)})
    write_clips(tmp_path / "validation", {"v.wav": (1.0, 48_000)})
    records = [
        {"file_name": "train/a.mp3", "sentence": "Train clip."},
        {"file_name": "validation/v.wav", "sentence": "Dev clip."},
        {"file_name": "train/a.mp3", "sentence": ""},
    ]
    (tmp_path / "metadata.jsonl").write_text(
        "\n".join(json.dumps(r) for r in records) + "\n{not json\n", encoding="utf-8"
    )
    train = read_split("hf", tmp_path, "train")
    assert [e.sentence for e in train.examples] == ["Train clip."]
    assert train.skipped == collections.Counter(empty_sentence=1, bad_row=1)
    assert [e.sentence for e in read_split("hf", tmp_path, "dev").examples] == ["Dev clip."]


def test_audiofolder_without_splits_is_train_only(tmp_path: Path) -> None:
    write_clips(tmp_path, {"a.wav": (1.0, 48_000)})
    (tmp_path / "metadata.csv").write_text("file_name,text\na.wav,Only train.\n")
    assert [e.sentence for e in read_split("hf", tmp_path, "train").examples] == ["Only train."]
    with pytest.raises(DataError, match="audiofolder has no split 'test'"):
        read_split("hf", tmp_path, "test")
    (tmp_path / "metadata.csv").write_text("path,text\na.wav,No file_name column.\n")
    with pytest.raises(DataError, match=r"metadata\.csv: no file_name column"):
        read_split("hf", tmp_path, "train")


def test_not_a_dataset_dir(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(DataError, match="not a Hugging Face dataset directory"):
        read_split("hf", tmp_path, "train")


def test_malformed_rows_of_a_saved_dataset_are_skipped_and_counted(tmp_path: Path) -> None:
    """One bad row used to stop the whole read (a ValueError out of the reader)."""
    datasets = pytest.importorskip("datasets")
    good = tone(1.0, 8_000).tolist()
    rows = [
        {"array": good, "sampling_rate": 8_000},
        {"array": [float("nan")] * 10, "sampling_rate": 8_000},  # non-finite samples
        {"array": good, "sampling_rate": -5},  # impossible rate
        {"array": good, "sampling_rate": 8_000},
    ]
    ds = datasets.Dataset.from_dict({"audio": rows, "text": ["One.", "Two.", "Three.", "Four."]})
    ds.save_to_disk(str(tmp_path / "bad"))
    data = read_split("hf", tmp_path / "bad", "train")
    assert [e.sentence for e in data.examples] == ["One.", "Four."]
    assert sum(data.skipped.values()) == 2, data.skipped
