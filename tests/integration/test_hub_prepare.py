"""Format hub through the trainer's data preparation: a streamed hub-layout repository
(parquet, built from the bundled corpus) becomes cached log-mel features for the
bundled tiny.en model, keyed so that a changed file is re-read and an unchanged one
is not. (The readers themselves: tests/unit/test_data_hub.py.)"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest

from whisperft.operator.api.resource import parse_spec
from whisperft.trainer.config import ResolvedDeepSpeed, Runtime, TrainConfig
from whisperft.trainer.data import corpus_root

pytestmark = pytest.mark.integration
datasets = pytest.importorskip("datasets")


def _parquet(split: str, n: int, file: Path) -> None:
    root = corpus_root() / "en"
    with (root / f"{split}.tsv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[:n]
    audio = [{"bytes": (root / "clips" / r["path"]).read_bytes(), "path": r["path"]} for r in rows]
    ds = datasets.Dataset.from_dict(
        {"audio": audio, "sentence": [r["sentence"] for r in rows]}
    ).cast_column("audio", datasets.Audio())
    file.parent.mkdir(parents=True, exist_ok=True)
    ds.to_parquet(str(file))


def _config(repo: Path, tmp: Path, **dataset: Any) -> TrainConfig:
    spec = parse_spec(
        {
            "model": {"name": "bundled:tiny.en"},
            "dataset": {"format": "hub", "path": str(repo), **dataset},
            "training": {"maxSteps": 1},
            "checkpoints": {"size": "1Gi"},
        }
    )
    runtime = Runtime(
        workers=1,
        use_gpu=False,
        cpus_per_worker=1,
        deepspeed=ResolvedDeepSpeed(stage=0),
        data_path=str(repo),
        storage_path=str(tmp / "runs"),
        output_dir=str(tmp / "out"),
        feature_cache_dir=str(tmp / "features"),
    )
    return TrainConfig(name="hub", spec=spec, runtime=runtime)


def test_prepare_data_streams_a_hub_repository_into_cached_features(tmp_path: Path) -> None:
    from whisperft.trainer.main import prepare_data

    repo = tmp_path / "cv-mini"
    _parquet("train", 6, repo / "data" / "train-00000-of-00001.parquet")
    _parquet("dev", 3, repo / "data" / "validation-00000-of-00001.parquet")
    _parquet("test", 3, repo / "data" / "test-00000-of-00001.parquet")
    cfg = _config(repo, tmp_path, streaming=True, maxTrainExamples=4, maxEvalExamples=2)

    first = prepare_data(cfg, progress=False)
    assert {role: len(fs) for role, fs in first.splits.items()} == {
        "train": 4,
        "eval": 2,
        "test": 2,
    }
    assert first.splits["train"].features.shape[1:] == (80, 3000)

    again = prepare_data(cfg, progress=False)  # same files: the cache entries are reused
    assert {r: fs.path for r, fs in again.splits.items()} == {
        r: fs.path for r, fs in first.splits.items()
    }

    test_file = repo / "data" / "test-00000-of-00001.parquet"
    _parquet("test", 2, test_file)  # rewritten: another size and mtime
    changed = prepare_data(cfg, progress=False)
    assert changed.splits["test"].path != first.splits["test"].path
    assert len(changed.splits["test"]) == 2


def test_evaluate_reads_a_hub_repository(tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    repo = tmp_path / "cv-eval"
    _parquet("test", 4, repo / "data" / "test-00000-of-00001.parquet")
    out = tmp_path / "eval.json"
    proc = subprocess.run(
        [
            sys.executable, "-m", "whisperft", "evaluate", "--model", "bundled:tiny.en",
            "--data", str(repo), "--format", "hub", "--streaming", "--limit", "3",
            "--json", str(out),
        ],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "HF_DATASETS_CACHE": str(tmp_path / "hf-cache")},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["n_utterances"] == 3 and 0.0 <= result["wer"] < 1.0, result
    assert result["format"] == "hub"
