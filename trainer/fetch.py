"""Bring a finished run's model to local disk: from its bucket output location, or
from its claim through a short-lived pod (trainer.claim_copy).

A bucket run counts as finished only with its results.json (written last, see
trainer.outputs), and its model/ and ct2/ only with their commit markers; every
file is checked against the marker's SHA-256 on the way down.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from whisperft.trainer.outputs import MODEL_DIRS, PLOT, RESULTS
from whisperft.trainer.storage import commit
from whisperft.trainer.storage.objects import store_for
from whisperft.trainer.storage.uri import StorageURI, parse_uri


class FetchError(RuntimeError):
    """The run cannot be fetched (not finished, no such model, no access): names what."""


@dataclass
class Fetched:
    dest: Path
    formats: list[str]
    bytes: int
    results: dict[str, Any] = field(default_factory=dict)


def output_location(model_path: str) -> str:
    """The output location of a model path (status.model.path ends in /model)."""
    return model_path.rstrip("/").removesuffix("/model")


def fetch_bucket(location: str, dest: Path, *, formats: tuple[str, ...] = ("hf", "ct2")) -> Fetched:
    """Download model/ (and ct2/ when the run exported it and it is asked for),
    results.json and the plot from a bucket output location into ``dest``."""
    base = parse_uri(location)
    store = store_for(base)
    store.check_bucket(base)
    results_uri = base.join(RESULTS)
    if not store.is_file(results_uri):
        raise FetchError(
            f"{base}: no {RESULTS}, so no finished run is there (a run writes it last; "
            "check the location, or wait for the run to succeed)"
        )
    results = json.loads(store.read_bytes(results_uri))
    exported = (results.get("exported") or {}).get("formats") or ["hf"]
    wanted = [f for f in formats if f in exported]
    if not wanted:
        raise FetchError(f"{base}: the run exported {exported}, none of {list(formats)}")
    before = store.counters.bytes_read
    dest.mkdir(parents=True, exist_ok=True)
    for fmt in wanted:
        prefix: StorageURI = base.join(MODEL_DIRS[fmt])
        try:
            commit.download_tree(prefix, dest / MODEL_DIRS[fmt], store=store)
        except FileNotFoundError as exc:
            raise FetchError(f"{prefix}: {exc}") from None
    for name in (PLOT,):
        if store.is_file(base.join(name)):
            store.download_file(base.join(name), dest / name)
    (dest / RESULTS).write_text(json.dumps(results, indent=2))
    return Fetched(dest, wanted, store.counters.bytes_read - before, results)
