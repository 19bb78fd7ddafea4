"""The committed sample corpus, read back through the Common Voice reader."""

from __future__ import annotations

import csv
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest
import soundfile as sf

from whisperft.trainer.data import SAMPLE_RATE, corpus_root, read_split, resolve_data_path
from whisperft.trainer.data.commonvoice import COLUMNS

pytestmark = pytest.mark.unit

SPLITS = ("train", "dev", "test")
LANGS = ("en", "sw")
REPO = Path(__file__).resolve().parents[2]
MAX_TOTAL_BYTES = 8_500_000  # the corpus ships in the wheel: keep it small
# Floors, so the corpus can grow but not silently shrink.
MIN_CLIPS = {
    "en": {"train": 400, "dev": 60, "test": 100},
    "sw": {"train": 200, "dev": 40, "test": 60},
}


def rows(lang: str, split: str) -> list[dict[str, str]]:
    path = corpus_root() / lang / f"{split}.tsv"
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def norm(sentence: str) -> str:
    return " ".join(re.sub(r"[^\w\s']", " ", sentence.lower()).split())


def make_corpus_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_corpus", REPO / "tools" / "make_corpus.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("lang", LANGS)
def test_layout_and_columns_exact(lang: str) -> None:
    root = resolve_data_path(f"bundled:{lang}")
    assert root == corpus_root() / lang
    for split in (*SPLITS, "validated"):
        header = (root / f"{split}.tsv").read_text(encoding="utf-8").splitlines()[0]
        assert header.split("\t") == list(COLUMNS)
    for split in SPLITS:
        got = rows(lang, split)
        assert len(got) >= MIN_CLIPS[lang][split]
        assert all(r["locale"] == lang and len(r["client_id"]) == 128 for r in got)
        assert all(re.fullmatch(rf"common_voice_{lang}_\d+\.mp3", r["path"]) for r in got)
    validated = rows(lang, "validated")
    assert sorted(r["path"] for r in validated) == sorted(
        r["path"] for split in SPLITS for r in rows(lang, split)
    )
    on_disk = sorted(p.name for p in (root / "clips").iterdir())
    assert on_disk == sorted(r["path"] for r in validated)  # no orphan or missing clips


@pytest.mark.parametrize("lang", LANGS)
def test_held_out_splits_have_new_voices_and_new_sentences(lang: str) -> None:
    train = rows(lang, "train")
    train_voices = {r["client_id"] for r in train}
    train_sentences = {norm(r["sentence"]) for r in train}
    for split in ("dev", "test"):
        held = rows(lang, split)
        assert not {r["client_id"] for r in held} & train_voices, f"{split} voices seen in train"
        assert not {norm(r["sentence"]) for r in held} & train_sentences, f"{split} text in train"
    assert not {r["client_id"] for r in rows(lang, "dev")} & {
        r["client_id"] for r in rows(lang, "test")
    }
    assert len(train_voices) >= 6


@pytest.mark.parametrize("lang", LANGS)
def test_clips_are_48k_mono_mp3_short(lang: str) -> None:
    clips = corpus_root() / lang / "clips"
    for path in sorted(clips.iterdir()):
        info = sf.info(path)
        assert (info.format, info.samplerate, info.channels) == ("MP3", 48_000, 1), path
        assert 1.0 <= info.duration <= 6.0, path


@pytest.mark.parametrize("lang", LANGS)
def test_test_split_decodes_to_16k_through_the_reader(lang: str) -> None:
    data = read_split("commonvoice", f"bundled:{lang}", "test")
    assert not data.skipped
    assert len(data.examples) == len(rows(lang, "test"))
    for example in data.examples:
        info = sf.info(example.meta["path"])
        assert abs(len(example.audio) - info.duration * SAMPLE_RATE) <= 0.01 * SAMPLE_RATE
        assert 0.4 < float(abs(example.audio).max()) <= 1.0  # generated at -3 dBFS peak
    speakers = {e.meta["speaker"] for e in data.examples}
    assert speakers == {r["client_id"] for r in rows(lang, "test")}


def test_total_size_bound() -> None:
    total = sum(p.stat().st_size for p in corpus_root().rglob("*") if p.is_file())
    assert total <= MAX_TOTAL_BYTES, f"corpus is {total / 1e6:.2f} MB"


@pytest.mark.parametrize("lang", LANGS)
def test_corpus_matches_its_text(lang: str) -> None:
    """Editing tools/corpus_text without `make corpus` fails here."""
    module = make_corpus_module()
    text = module.read_sentences(REPO / "tools" / "corpus_text" / f"{lang}.txt")
    for split in SPLITS:
        assert {r["sentence"] for r in rows(lang, split)} == set(text[split]), split
        assert len(rows(lang, split)) == module.CLIP_TARGETS[lang][split]


def test_corpus_text_refuses_cross_split_duplicates(tmp_path: Path) -> None:
    module = make_corpus_module()
    bad = tmp_path / "xx.txt"
    bad.write_text("[train]\nThe cat sat down here.\n[test]\nthe cat, sat down here!\nToo short.\n")
    with pytest.raises(SystemExit, match=r"repeats a sentence already in \[train\](?s:.*)2 words"):
        module.read_sentences(bad)
