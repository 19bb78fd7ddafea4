"""Common Voice release directories: good rows, every bad-input case, filters, streaming."""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from whisperft.trainer.data import SAMPLE_RATE, DataError, iter_split, read_split

pytestmark = pytest.mark.unit

HEADER = "client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccents\tlocale\tsegment"


def tone(seconds: float, rate: int = 48_000, channels: int = 1) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    mono = (0.4 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    return mono if channels == 1 else np.stack([mono] * channels, axis=1)


def row(clip: str, sentence: str, client: str = "c1") -> str:
    return f"{client}\t{clip}\t{sentence}\t2\t0\t\tmale\t\ten\t"


def make_release(root: Path, rows: dict[str, list[str]]) -> Path:
    (root / "clips").mkdir(parents=True, exist_ok=True)
    for split, lines in rows.items():
        (root / f"{split}.tsv").write_text("\n".join([HEADER, *lines]) + "\n", encoding="utf-8")
    return root


def add_clip(
    root: Path, name: str, seconds: float = 1.0, rate: int = 48_000, channels: int = 1
) -> None:
    sf.write(root / "clips" / name, tone(seconds, rate, channels), rate, format="MP3")


def test_reads_rows_resampled_with_meta(tmp_path: Path) -> None:
    root = make_release(
        tmp_path, {"train": [row("a.mp3", "  Hello there.  "), row("b.mp3", "Bye.", "c2")]}
    )
    add_clip(root, "a.mp3", 1.0)
    add_clip(root, "b.mp3", 2.0, channels=2)  # stereo clips are converted, not rejected
    data = read_split("commonvoice", root, "train")
    assert [e.sentence for e in data.examples] == ["Hello there.", "Bye."]
    assert not data.skipped
    assert data.source == str(root / "train.tsv")
    first, second = data.examples
    assert first.audio.dtype == np.float32 and first.audio.ndim == 1
    assert len(first.audio) / SAMPLE_RATE == pytest.approx(1.0, abs=0.1)
    assert len(second.audio) / SAMPLE_RATE == pytest.approx(2.0, abs=0.1)
    assert first.meta["id"] == "a" and first.meta["speaker"] == "c1"
    assert first.meta["split"] == "train" and first.meta["path"] == str(root / "clips" / "a.mp3")
    assert second.meta["speaker"] == "c2" and second.meta["locale"] == "en"


def test_every_bad_row_is_counted_and_loses_nothing_else(tmp_path: Path) -> None:
    lines = [
        row("ok1.mp3", "A fine sentence."),
        row("missing.mp3", "Its clip is gone."),
        row("empty.mp3", "Its clip is zero bytes."),
        row("corrupt.mp3", "Its clip is garbage."),
        row("truncated.mp3", "Its clip broke off."),
        row("ok2.mp3", "   "),  # whitespace sentence
        row("ok2.mp3", ""),  # empty sentence
        "c1\tok2.mp3\ttoo few fields",
        row("ok2.mp3", "A tab\tinside makes one field too many."),
        row("ok2.mp3", "Another fine sentence."),
    ]
    root = make_release(tmp_path, {"train": lines})
    for name in ("ok1.mp3", "ok2.mp3"):
        add_clip(root, name, 1.5)
    (root / "clips" / "empty.mp3").write_bytes(b"")
    (root / "clips" / "corrupt.mp3").write_bytes(np.random.default_rng(1).bytes(3000))
    sf.write(root / "clips" / "full.mp3", tone(3.0), 48_000, format="MP3")
    good = (root / "clips" / "full.mp3").read_bytes()
    (root / "clips" / "truncated.mp3").write_bytes(good[:200])
    # a line that is not UTF-8 (Latin-1 "café"), in the middle of the file
    with (root / "train.tsv").open("ab") as f:
        f.write(b"c1\tok1.mp3\tcaf\xe9 au lait\t2\t0\t\t\t\ten\t\n")
        f.write(row("ok1.mp3", "The last good row.").encode() + b"\n")
    data = read_split("commonvoice", root, "train")
    assert [e.sentence for e in data.examples] == [
        "A fine sentence.",
        "Another fine sentence.",
        "The last good row.",
    ]
    assert data.skipped == collections.Counter(
        missing_clip=1, empty_audio=1, corrupt_audio=2, empty_sentence=2, bad_row=2, bad_encoding=1
    )


def test_wrong_column_layout_names_file_and_columns(tmp_path: Path) -> None:
    (tmp_path / "train.tsv").write_text("file\ttext\tclient_id\n", encoding="utf-8")
    with pytest.raises(DataError) as err:
        read_split("commonvoice", tmp_path, "train")
    message = str(err.value)
    assert str(tmp_path / "train.tsv") in message
    assert "missing columns ['path', 'sentence']" in message
    assert "unexpected columns ['file', 'text']" in message


def test_comma_separated_file_is_a_layout_error(tmp_path: Path) -> None:
    (tmp_path / "test.tsv").write_text("client_id,path,sentence\nc,a.mp3,Hi\n", encoding="utf-8")
    with pytest.raises(DataError, match="missing columns"):
        iter_split("commonvoice", tmp_path, "test", skipped=collections.Counter())


def test_newer_release_columns_are_accepted(tmp_path: Path) -> None:
    header = "client_id\tpath\tsentence_id\tsentence\tsentence_domain\tup_votes\tdown_votes\tage\tgender\taccents\tvariant\tlocale\tsegment"
    (tmp_path / "clips").mkdir()
    (tmp_path / "train.tsv").write_text(
        f"{header}\nc\ta.mp3\tid1\tHi there you.\t\t2\t0\t\t\t\t\ten\t\n", encoding="utf-8"
    )
    add_clip(tmp_path, "a.mp3")
    assert [e.sentence for e in read_split("commonvoice", tmp_path, "train").examples] == [
        "Hi there you."
    ]


def test_non_utf8_header_and_missing_split(tmp_path: Path) -> None:
    (tmp_path / "train.tsv").write_bytes(b"client_id\tp\xe4th\tsentence\n")
    with pytest.raises(DataError, match="header line is not UTF-8"):
        read_split("commonvoice", tmp_path, "train")
    with pytest.raises(DataError, match=r"no test\.tsv.*found: train\.tsv"):
        read_split("commonvoice", tmp_path, "test")


def test_zero_usable_examples_names_path_and_reasons(tmp_path: Path) -> None:
    root = make_release(tmp_path, {"dev": [row("gone.mp3", "Nothing here."), row("x.mp3", " ")]})
    with pytest.raises(DataError) as err:
        read_split("commonvoice", root, "dev")
    message = str(err.value)
    assert str(root / "dev.tsv") in message
    assert "missing_clip: 1" in message and "empty_sentence: 1" in message
    make_release(tmp_path, {"test": []})
    with pytest.raises(DataError, match="the split has no rows"):
        read_split("commonvoice", root, "test")


def test_duration_and_label_filters_count(tmp_path: Path) -> None:
    root = make_release(
        tmp_path,
        {
            "train": [
                row("short.mp3", "Short one."),
                row("mid.mp3", "Middle one."),
                row("long.mp3", "Long one."),
                row("mid.mp3", "word " * 20),
            ]
        },
    )
    add_clip(root, "short.mp3", 0.3)
    add_clip(root, "mid.mp3", 2.0)
    add_clip(root, "long.mp3", 6.0)
    data = read_split(
        "commonvoice",
        root,
        "train",
        min_duration_s=0.5,
        max_duration_s=5.0,
        label_length=lambda s: len(s.split()),
        max_label_tokens=10,
    )
    assert [e.sentence for e in data.examples] == ["Middle one."]
    assert data.skipped == collections.Counter(too_short=1, too_long=1, label_too_long=1)
    assert float(data.examples[0].meta["duration"]) == pytest.approx(2.0, abs=0.1)


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown data format 'csv'"):
        read_split("csv", tmp_path, "train")
    with pytest.raises(DataError, match="bad duration bounds"):
        read_split("commonvoice", tmp_path, "train", min_duration_s=5, max_duration_s=1)
    with pytest.raises(DataError, match="does not exist"):
        read_split("commonvoice", tmp_path / "nowhere", "train")
    with pytest.raises(DataError, match="available: bundled:en, bundled:sw"):
        read_split("commonvoice", "bundled:xx", "train")


def test_iter_split_streams_lazily_with_limit(tmp_path: Path) -> None:
    lines = [row(f"c{i}.mp3", f"Sentence number {i}.") for i in range(3)] + [
        row("gone.mp3", "Late.")
    ]
    root = make_release(tmp_path, {"train": lines})
    for i in range(3):
        add_clip(root, f"c{i}.mp3")
    skipped: collections.Counter[str] = collections.Counter()
    stream = iter_split("commonvoice", root, "train", skipped=skipped)
    first = next(stream)
    assert first.sentence == "Sentence number 0."
    assert not skipped  # the missing clip on the last row has not been reached yet
    assert [e.sentence for e in stream][-1] == "Sentence number 2."
    assert skipped == collections.Counter(missing_clip=1)
    limited = list(iter_split("commonvoice", root, "train", skipped=collections.Counter(), limit=2))
    assert len(limited) == 2


def test_large_split_streams_in_bounded_memory(tmp_path: Path) -> None:
    """A 50,000-row TSV is not loaded whole: taking 3 examples reads only a few rows."""
    lines = [row("a.mp3", f"Row {i}.") for i in range(50_000)]
    root = make_release(tmp_path, {"train": lines})
    add_clip(root, "a.mp3", 0.5)
    import tracemalloc

    tracemalloc.start()
    stream = iter_split("commonvoice", root, "train", skipped=collections.Counter())
    taken = [next(stream) for _ in range(3)]
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert [e.sentence for e in taken] == ["Row 0.", "Row 1.", "Row 2."]
    assert peak < 2_000_000  # the TSV is ~3 MB; as a list of Python strings, ~6 MB
