"""A run's outputs in a bucket: the same layout as a local output directory.

    <location>/model/          HF model (a committed prefix: objects, then its marker)
    <location>/ct2/            CTranslate2 model, when output.formats has ct2 (committed)
    <location>/hypotheses.json, final_metrics.json   rank 0, after the model
    <location>/training.png, results.json             the driver; results.json LAST
    <location>/checkpoints/<name>/                    trainer.checkpoint_bucket

results.json is the run's own completion mark: `whisperft fetch` and a reader
of the bucket take a run as finished only when it is there, and its model/
and ct2/ only when their markers are.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from whisperft.trainer.checkpoint import FINAL_METRICS
from whisperft.trainer.storage import commit
from whisperft.trainer.storage.objects import store_for
from whisperft.trainer.storage.uri import parse_uri

MODEL_DIRS = {"hf": "model", "ct2": "ct2"}
RESULTS = "results.json"
PLOT = "training.png"


def upload_model(out_dir: Path, location: str, formats: list[str]) -> list[str]:
    """Rank 0, after the export: each format's directory, then the final metrics; the URIs."""
    base = parse_uri(location)
    store = store_for(base)
    uploaded = []
    for fmt in formats:
        sub = MODEL_DIRS[fmt]
        commit.upload_tree(out_dir / sub, base.join(sub), store=store)
        uploaded.append(str(base.join(sub)))
    for name in ("hypotheses.json", FINAL_METRICS):
        if (out_dir / name).is_file():
            store.upload_file(out_dir / name, base.join(name))
    return uploaded


def final_metrics(out_dir: Path, location: str | None) -> dict[str, Any]:
    """What rank 0 wrote at the end: from local disk when the driver shares it, else the bucket."""
    local = out_dir / FINAL_METRICS
    if local.is_file():
        return dict(json.loads(local.read_text()))
    if location is None:
        return {}
    uri = parse_uri(location).join(FINAL_METRICS)
    store = store_for(uri)
    if not store.is_file(uri):
        return {}
    return dict(json.loads(store.read_bytes(uri)))


def upload_results(out_dir: Path, location: str) -> str:
    """The driver, last: the plot, then results.json (the run's completion mark)."""
    base = parse_uri(location)
    store = store_for(base)
    if (out_dir / PLOT).is_file():
        store.upload_file(out_dir / PLOT, base.join(PLOT))
    store.upload_file(out_dir / RESULTS, base.join(RESULTS))
    return str(base.join(RESULTS))


def clear_final_metrics(location: str) -> None:
    """An earlier run's final metrics are never this run's (the driver, before training)."""
    uri = parse_uri(location).join(FINAL_METRICS)
    store_for(uri).delete(uri)


def check_writable(location: str) -> None:
    """StorageError naming the URI and principal unless this principal can write there."""
    base = parse_uri(location)
    store = store_for(base)
    store.check_bucket(base)
    probe = base.join(".whisperft-write-check")
    store.write_bytes(probe, b"ok")
    store.delete(probe)
