#!/usr/bin/env python3
"""Make the bundled sample corpus: espeak-ng speech in exact Common Voice layout.

Reads hand-written sentences from tools/corpus_text/<lang>.txt (sections [train],
[dev], [test]), speaks every sentence with several espeak-ng voices, and writes
trainer/corpus/<lang>/{train,dev,test,validated}.tsv plus clips/*.mp3 the way a
Common Voice release looks: 48 kHz mono MP3 (espeak-ng itself writes 22,050 Hz,
so readers must resample), tab-separated files with the release's columns.

Each split has its own voices, so the test split is spoken only by voices that
never appear in train, and sentences never repeat across splits: a WER measured
on test after fine-tuning on train measures generalisation, not memorisation.

Everything is seeded, so the same text and espeak-ng version give the same
corpus. Needs espeak-ng on PATH (Debian: apt-get install espeak-ng), soundfile
(its bundled libsndfile encodes MP3) and soxr.

    python tools/make_corpus.py                 # both languages -> trainer/corpus
    python tools/make_corpus.py --langs en --out /tmp/corpus
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import random
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

# The reader defines the layout; the generator writes exactly what it reads.
from whisperft.trainer.data.commonvoice import COLUMNS

REPO = Path(__file__).resolve().parent.parent
TEXT_DIR = Path(__file__).resolve().parent / "corpus_text"
DEFAULT_OUT = REPO / "trainer" / "corpus"

SPLITS = ("train", "dev", "test")
CLIP_RATE = 48_000  # Common Voice clips are 48 kHz mono MP3
# libsndfile maps compression level to LAME's bitrate; 0.99 gives 32 kbit/s CBR,
# the lowest MPEG-1 Layer III allows at 48 kHz (about 4 kB per second of audio).
MP3_COMPRESSION = 0.99
SEED = 20_240_611
# Clips per split. Every sentence is read once, and as many as the target allows
# (chosen by the seed) a second time by another voice of the same split. Swahili
# train stays below two readings per sentence to keep the corpus near 8 MB.
CLIP_TARGETS = {
    "en": {"train": 400, "dev": 60, "test": 100},
    "sw": {"train": 210, "dev": 40, "test": 60},
}
MIN_WORDS, MAX_WORDS = 4, 14
EDGE_PAD_S = 0.08  # silence kept around the speech after trimming
CLIP_NUMBER_BASE = {"en": 40_100_000, "sw": 40_200_000}


@dataclass(frozen=True)
class Voice:
    espeak: str  # espeak-ng voice, language+variant
    speed: int  # words per minute (espeak -s); each clip jitters it a little
    pitch: int  # 0-99 (espeak -p); jittered too
    gender: str  # Common Voice "gender" column
    accent: str  # Common Voice "accents" column

    def client_id(self, lang: str) -> str:
        # Common Voice client ids are 128 hex characters; a stable hash per voice.
        return hashlib.sha512(f"whisperft-corpus/{lang}/{self.espeak}".encode()).hexdigest()


# The variants (m1..m8, f1..f5) of the test voices are never used in train, nor
# those of dev: every split has its own speakers, as Common Voice does.
VOICES: dict[str, dict[str, list[Voice]]] = {
    "en": {
        "train": [
            Voice("en-us+m1", 168, 45, "male", "United States English"),
            Voice("en-us+f1", 162, 55, "female", "United States English"),
            Voice("en+m3", 172, 50, "male", "England English"),
            Voice("en+f2", 160, 50, "female", "England English"),
            Voice("en-gb-x-rp+m4", 170, 40, "male", "England English"),
            Voice("en-029+m2", 165, 52, "male", "West Indies and Bermuda"),
            Voice("en-us+f5", 175, 58, "female", "United States English"),
            Voice("en-gb-scotland+m1", 166, 48, "male", "Scottish English"),
        ],
        "dev": [
            Voice("en-us+m6", 170, 46, "male", "United States English"),
            Voice("en+f3", 164, 54, "female", "England English"),
        ],
        "test": [
            Voice("en-us+m7", 168, 50, "male", "United States English"),
            Voice("en+f4", 165, 52, "female", "England English"),
            Voice("en-gb-x-rp+m8", 172, 44, "male", "England English"),
        ],
    },
    "sw": {
        "train": [
            Voice("sw+m1", 176, 45, "male", "Kenya"),
            Voice("sw+f1", 171, 55, "female", "Kenya"),
            Voice("sw+m3", 181, 50, "male", "Tanzania"),
            Voice("sw+f2", 174, 50, "female", "Tanzania"),
            Voice("sw+m4", 178, 42, "male", "Kenya"),
            Voice("sw+f5", 182, 58, "female", "Tanzania"),
        ],
        "dev": [
            Voice("sw+m6", 176, 46, "male", "Kenya"),
            Voice("sw+f3", 174, 54, "female", "Tanzania"),
        ],
        "test": [
            Voice("sw+m7", 178, 50, "male", "Tanzania"),
            Voice("sw+f4", 176, 52, "female", "Kenya"),
        ],
    },
}


@dataclass(frozen=True)
class Clip:
    number: int
    split: str
    sentence: str
    voice: Voice
    speed: int
    pitch: int

    def name(self, lang: str) -> str:
        return f"common_voice_{lang}_{self.number}.mp3"


def norm_key(sentence: str) -> str:
    """What 'the same sentence' means for the cross-split check."""
    return " ".join(re.sub(r"[^\w\s']", " ", sentence.lower()).split())


def read_sentences(path: Path) -> dict[str, list[str]]:
    """Parse a corpus text file; refuse bad lengths and any repeated sentence."""
    splits: dict[str, list[str]] = {s: [] for s in SPLITS}
    seen: dict[str, str] = {}
    current: str | None = None
    problems: list[str] = []
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1]
            if current not in splits:
                problems.append(f"{path}:{lineno}: unknown section {line}")
            continue
        if current is None or current not in splits:
            problems.append(f"{path}:{lineno}: sentence outside a [train]/[dev]/[test] section")
            continue
        if "\t" in line:
            problems.append(f"{path}:{lineno}: tab inside a sentence")
        words = len(line.split())
        if not MIN_WORDS <= words <= MAX_WORDS:
            problems.append(f"{path}:{lineno}: {words} words, want {MIN_WORDS}-{MAX_WORDS}")
        key = norm_key(line)
        if key in seen:
            problems.append(f"{path}:{lineno}: repeats a sentence already in [{seen[key]}]")
        seen[key] = current
        splits[current].append(line)
    if problems:
        raise SystemExit("bad corpus text:\n  " + "\n  ".join(problems))
    return splits


def plan_clips(lang: str, sentences: dict[str, list[str]], seed: int) -> list[Clip]:
    """Assign voices round-robin (balanced per split) with seeded speed/pitch jitter."""
    clips: list[Clip] = []
    number = CLIP_NUMBER_BASE[lang]
    for split in SPLITS:
        rng = random.Random(f"{seed}/{lang}/{split}")
        voices = VOICES[lang][split]
        texts = sentences[split]
        target = CLIP_TARGETS[lang][split]
        if not len(texts) <= target <= 2 * len(texts) or len(voices) < 2:
            raise SystemExit(
                f"{lang}/{split}: {len(texts)} sentences and {len(voices)} voices "
                f"cannot make {target} clips (one or two readings each, two voices or more)"
            )
        twice = set(rng.sample(range(len(texts)), target - len(texts)))
        order = list(voices)
        rng.shuffle(order)
        turn = 0
        for index, sentence in enumerate(texts):
            # Consecutive turns of the rotation: a repeated sentence gets a second voice.
            for _ in range(2 if index in twice else 1):
                voice = order[turn % len(order)]
                turn += 1
                clips.append(
                    Clip(
                        number=number,
                        split=split,
                        sentence=sentence,
                        voice=voice,
                        speed=voice.speed + rng.randint(-8, 8),
                        pitch=max(0, min(99, voice.pitch + rng.randint(-6, 6))),
                    )
                )
                number += 1
    return clips


def trim(audio: np.ndarray, rate: int) -> np.ndarray:
    """Cut espeak's leading/trailing silence, keeping a short pad."""
    level = np.abs(audio)
    loud = np.flatnonzero(level > 0.02 * max(float(level.max()), 1e-9))
    if loud.size == 0:
        return audio
    pad = int(EDGE_PAD_S * rate)
    return audio[max(0, loud[0] - pad) : loud[-1] + pad]


def synthesize(clip: Clip, workdir: Path) -> tuple[bytes, float]:
    """Speak one clip; return (mp3 bytes at 48 kHz, duration in seconds)."""
    wav = workdir / f"{clip.number}.wav"
    command = ["espeak-ng", "-v", clip.voice.espeak, "-s", str(clip.speed)]
    command += ["-p", str(clip.pitch), "-w", str(wav), clip.sentence]
    subprocess.run(command, check=True, capture_output=True)
    audio, rate = sf.read(wav, dtype="float32", always_2d=False)
    wav.unlink()
    audio = trim(audio, rate)
    audio = soxr.resample(audio, rate, CLIP_RATE, quality="HQ").astype(np.float32)
    # Peak at -3 dBFS: MP3 coding overshoots by ~15% at this bitrate; stay below 1.0.
    audio *= 0.7 / max(float(np.abs(audio).max()), 1e-9)
    buf = io.BytesIO()
    sf.write(
        buf,
        audio,
        CLIP_RATE,
        format="MP3",
        subtype="MPEG_LAYER_III",
        compression_level=MP3_COMPRESSION,
        bitrate_mode="CONSTANT",
    )
    return buf.getvalue(), len(audio) / CLIP_RATE


def write_tsv(path: Path, rows: Sequence[dict[str, str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(
            f, fieldnames=COLUMNS, delimiter="\t", quoting=csv.QUOTE_NONE, lineterminator="\n"
        )
        writer.writeheader()
        writer.writerows(rows)


@dataclass
class LangReport:
    lang: str
    clips: dict[str, int]
    sentences: dict[str, int]
    seconds: dict[str, float]
    shortest: float
    longest: float
    bytes: int


def make_language(lang: str, out: Path, seed: int, jobs: int) -> LangReport:
    sentences = read_sentences(TEXT_DIR / f"{lang}.txt")
    clips = plan_clips(lang, sentences, seed)
    target = out / lang
    if target.exists():
        shutil.rmtree(target)
    (target / "clips").mkdir(parents=True)
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(jobs) as pool:
        results = list(pool.map(lambda c: synthesize(c, Path(tmp)), clips))
    rows: dict[str, list[dict[str, str]]] = {s: [] for s in SPLITS}
    seconds = {s: 0.0 for s in SPLITS}
    total = 0
    for clip, (mp3, duration) in zip(clips, results, strict=True):
        (target / "clips" / clip.name(lang)).write_bytes(mp3)
        total += len(mp3)
        seconds[clip.split] += duration
        rows[clip.split].append(
            {
                "client_id": clip.voice.client_id(lang),
                "path": clip.name(lang),
                "sentence": clip.sentence,
                "up_votes": "2",
                "down_votes": "0",
                "age": "",
                "gender": clip.voice.gender,
                "accents": clip.voice.accent,
                "locale": lang,
                "segment": "",
            }
        )
    for split in SPLITS:
        write_tsv(target / f"{split}.tsv", rows[split])
    write_tsv(target / "validated.tsv", [r for s in SPLITS for r in rows[s]])
    durations = [d for _, d in results]
    return LangReport(
        lang=lang,
        clips={s: len(rows[s]) for s in SPLITS},
        sentences={s: len(sentences[s]) for s in SPLITS},
        seconds=seconds,
        shortest=min(durations),
        longest=max(durations),
        bytes=total,
    )


def espeak_version() -> str:
    out = subprocess.run(["espeak-ng", "--version"], check=True, capture_output=True, text=True)
    found = re.search(r"\d+\.\d+[\w.-]*", out.stdout)
    return found.group(0) if found else out.stdout.strip()


def write_readme(out: Path, reports: Sequence[LangReport], seed: int) -> None:
    total_bytes = sum(r.bytes for r in reports)
    lines = [
        "# Bundled sample corpus",
        "",
        "Synthetic speech in exact Common Voice release layout, the offline default",
        "data set for the demo and the tests (`bundled:en`, `bundled:sw`).",
        "Generated by `tools/make_corpus.py`; do not edit by hand.",
        "",
        "## Where the text comes from",
        "",
        "Every sentence was written by hand for this project (short everyday",
        "sentences, 4-14 words); none is copied from another corpus. The text is in",
        "`tools/corpus_text/en.txt` and `tools/corpus_text/sw.txt`, grouped into",
        "`[train]`, `[dev]` and `[test]`; no sentence appears in more than one split",
        "(the generator refuses duplicates). The speech is synthesized with",
        f"espeak-ng {espeak_version()}. Each sentence is read by one or two voices",
        "of its split (see Sizes), with seeded speed and pitch jitter per clip.",
        "",
        "## Layout",
        "",
        "`<lang>/train.tsv`, `dev.tsv`, `test.tsv`, `validated.tsv` (all clips) with the",
        "columns `" + " ".join(COLUMNS) + "`, and",
        f"`<lang>/clips/common_voice_<lang>_<n>.mp3`: {CLIP_RATE // 1000} kHz mono MP3,",
        "32 kbit/s CBR, like Common Voice clips (espeak-ng writes 22,050 Hz; the",
        "clips are resampled to 48 kHz so readers exercise the resampling path).",
        "`client_id` is a stable hash of the voice.",
        "",
        "## Voices per split",
        "",
        "The dev and test splits are spoken only by voices (espeak-ng variants) that",
        "never appear in train, so a WER on test after fine-tuning on train measures",
        "generalisation to new speakers and new sentences.",
        "",
        "| language | split | voices (espeak-ng `-v`) |",
        "|---|---|---|",
    ]
    for r in reports:
        for split in SPLITS:
            names = ", ".join(f"`{v.espeak}`" for v in VOICES[r.lang][split])
            lines.append(f"| {r.lang} | {split} | {names} |")
    lines += [
        "",
        "## Sizes",
        "",
        "| language | split | sentences | clips | audio (s) |",
        "|---|---|---|---|---|",
    ]
    for r in reports:
        for split in SPLITS:
            lines.append(
                f"| {r.lang} | {split} | {r.sentences[split]} | {r.clips[split]} "
                f"| {r.seconds[split]:.0f} |"
            )
    for r in reports:
        lines.append("")
        lines.append(
            f"{r.lang}: clips {r.shortest:.2f}-{r.longest:.2f} s, {r.bytes / 1e6:.2f} MB of MP3."
        )
    lines += [
        "",
        f"Total: {total_bytes / 1e6:.2f} MB of MP3.",
        "",
        "## Regenerate or grow",
        "",
        "Add sentences to a section of `tools/corpus_text/<lang>.txt` (a new language",
        "needs its voices in `VOICES` in the script), then run `make corpus`",
        f"(`python tools/make_corpus.py`; needs `espeak-ng`). Seed: {seed}. The same",
        "text and espeak-ng version give the same clips.",
        "",
    ]
    (out / "README.md").write_text("\n".join(lines), encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="corpus root (%(default)s)")
    parser.add_argument(
        "--langs", nargs="+", default=sorted(VOICES), choices=sorted(VOICES), help="languages"
    )
    parser.add_argument("--seed", type=int, default=SEED, help="voice/jitter seed (%(default)s)")
    parser.add_argument("--jobs", type=int, default=2, help="parallel espeak-ng processes")
    args = parser.parse_args(argv)
    if shutil.which("espeak-ng") is None:
        print("espeak-ng not found: apt-get install espeak-ng", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    reports = []
    for lang in args.langs:
        report = make_language(lang, args.out, args.seed, args.jobs)
        reports.append(report)
        for split in SPLITS:
            print(
                f"{lang} {split:5s}: {report.sentences[split]:3d} sentences, "
                f"{report.clips[split]:3d} clips, {report.seconds[split]:6.0f} s"
            )
        print(
            f"{lang}: clips {report.shortest:.2f}-{report.longest:.2f} s, "
            f"{report.bytes / 1e6:.2f} MB -> {args.out / lang}"
        )
    total = f"total {sum(r.bytes for r in reports) / 1e6:.2f} MB"
    if {r.lang for r in reports} == set(VOICES):
        write_readme(args.out, reports, args.seed)
        print(f"{total}; wrote {args.out / 'README.md'}")
    else:  # the README describes every language; a partial run leaves it alone
        print(f"{total}; README.md not rewritten (only {' '.join(args.langs)} made)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
