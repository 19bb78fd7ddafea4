"""Checkpoint layout, validation, discovery and retention (no torch import).

One checkpoint is the directory ``<storage>/<run>/checkpoint_step_NNNNNNNN``
that Ray Train merges from every worker's upload:

- ``ds/``: DeepSpeed's engine state (model, optimizer, scheduler shards); a LoRA
  run's holds only the adapters and their optimizer state (trainer.lora);
- ``rng_rank{r}.json``: each rank's RNG state, plain JSON (trainer.rng_state);
  checkpoints written before it have a pickled ``rng_rank{r}.pt``, never loaded;
- ``manifest_rank{r}.json``: the files rank r wrote, with sizes and SHA-256;
- ``trainer_state.json``: step, data position, metrics history, best WER and
  the whole TrainConfig (written by rank 0).

A checkpoint counts only when every rank's manifest is present and every file
it lists has the recorded size: a partial upload or a truncated file is
skipped in favour of the previous good checkpoint, with a warning. Before a
resume the contents are checked against the recorded digests too, so a file
damaged in place (same size) is skipped the same way instead of failing the
load on every retry. Digests cost one extra read of what a rank just wrote.
A file in ``ds/`` that no manifest lists makes the checkpoint incomplete too:
DeepSpeed finds some of its files by glob and would read it.

Digests catch damage, not an attacker: the claim may be writable by others,
who can rewrite a manifest along with its file. What stops code planted there
is that nothing of a checkpoint is unpickled: RNG state is JSON and every
torch file, DeepSpeed's included, is read weights-only (trainer.safe_load).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PREFIX = "checkpoint_step_"
STATE_FILE = "trainer_state.json"
DS_TAG = "ds"
_NAME = re.compile(rf"^{PREFIX}(\d+)$")
# Written by rank 0 into the output directory once the model is exported: the
# final metrics and history, which the driver merges into results.json (Ray
# Train keeps only metrics reported with a checkpoint, and the final checkpoint
# is saved before the exported weights are chosen and scored).
FINAL_METRICS = "final_metrics.json"


@dataclass(frozen=True)
class ExportChoice:
    """Which weights the run exported, and why."""

    checkpoint: str  # the checkpoint holding the same weights
    step: int
    selected: str  # "bestEval" or "last" (the status enum)
    note: str | None  # why not the best, when it could not be used

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def dir_name(step: int) -> str:
    return f"{PREFIX}{step:08d}"


def step_of(path: Path) -> int | None:
    m = _NAME.match(path.name)
    return int(m.group(1)) if m else None


@dataclass
class TrainerState:
    step: int
    micro_step: int
    epoch: int
    world_size: int
    total_steps: int
    config: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    baseline_wer: float | None = None  # test split, before training
    baseline_cer: float | None = None
    best_wer: float | None = None
    best_step: int | None = None
    samples_seen: int = 0
    optim_fingerprint: float | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> TrainerState:
        return cls(**json.loads(text))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_manifest(local_dir: Path, rank: int) -> None:
    """Record the files this rank wrote (after writing them, before upload)."""
    files = {}
    for f in sorted(local_dir.rglob("*")):
        if f.is_file() and not f.name.startswith("manifest_rank"):
            files[str(f.relative_to(local_dir))] = {"size": f.stat().st_size, "sha256": _sha256(f)}
    (local_dir / f"manifest_rank{rank}.json").write_text(json.dumps({"rank": rank, "files": files}))


def problem(ckpt: Path, *, verify_content: bool = False) -> str | None:
    """Why ``ckpt`` cannot be resumed from, or None when it is complete.

    Sizes are always checked; ``verify_content`` also checks every digest
    (reads the whole checkpoint: done once, before a resume).
    """
    if not (ckpt / STATE_FILE).is_file():
        return f"{STATE_FILE} missing"
    sizes = {
        f.relative_to(ckpt).as_posix(): f.stat().st_size for f in ckpt.rglob("*") if f.is_file()
    }
    digest = (lambda rel: _sha256(ckpt / rel)) if verify_content else None
    return tree_problem(sizes, lambda rel: (ckpt / rel).read_text(), digest)


def tree_problem(
    sizes: dict[str, int],
    read_text: Callable[[str], str],
    digest: Callable[[str], str] | None = None,
) -> str | None:
    """`problem` over any listing: relative path -> size, a reader of the small JSON
    files, and (to verify content) a digest function; a bucket prefix uses the same rules."""
    if STATE_FILE not in sizes:
        return f"{STATE_FILE} missing"
    try:
        state = TrainerState.from_json(read_text(STATE_FILE))
    except (ValueError, TypeError) as exc:
        return f"{STATE_FILE} unreadable ({exc})"
    listed: set[str] = set()
    for rank in range(state.world_size):
        manifest = f"manifest_rank{rank}.json"
        if manifest not in sizes:
            return f"rank {rank} never finished writing (no {manifest})"
        try:
            files = json.loads(read_text(manifest))["files"]
        except (ValueError, KeyError) as exc:
            return f"{manifest} unreadable ({exc})"
        listed.update(files)
        for rel, entry in files.items():
            if Path(rel).is_absolute() or ".." in Path(rel).parts:
                return f"{manifest} lists {rel}, outside the checkpoint"
            size, want = (
                (entry, None) if isinstance(entry, int) else (entry["size"], entry["sha256"])
            )
            if rel not in sizes:
                return f"{rel} missing"
            if sizes[rel] != size:
                return f"{rel} is {sizes[rel]} bytes, expected {size} (truncated?)"
            if digest is not None and want is not None and digest(rel) != want:
                return f"{rel} does not match its recorded SHA-256 (damaged in place)"
    for rel in sorted(sizes):
        if rel.startswith(f"{DS_TAG}/") and rel not in listed:
            return f"{rel} is in no rank's manifest (not written by this run)"
    return None


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoint directories of a run, newest step first."""
    if not run_dir.is_dir():
        return []
    found = [(s, p) for p in run_dir.iterdir() if p.is_dir() and (s := step_of(p)) is not None]
    return [p for _, p in sorted(found, reverse=True)]


def latest_good(run_dir: Path, *, verify_content: bool = True) -> tuple[Path, TrainerState] | None:
    """The newest complete checkpoint; incomplete newer ones are skipped loudly.

    Digests are checked by default (before a resume); a caller that only reads
    the state of a checkpoint it just wrote can skip that read of every file.
    """
    for ckpt in list_checkpoints(run_dir):
        why = problem(ckpt, verify_content=verify_content)
        if why is None:
            return ckpt, TrainerState.from_json((ckpt / STATE_FILE).read_text())
        log.warning("skipping checkpoint %s: %s; falling back to the previous one", ckpt, why)
    return None


def prune_plan(
    newest_first: list[tuple[int, bool]], *, keep_last: int, best_step: int | None
) -> list[int]:
    """Steps to delete from (step, complete) pairs, newest first: all but the newest
    ``keep_last`` complete checkpoints and the best one."""
    removed: list[int] = []
    kept = 0
    for step, good in newest_first:
        if good and kept < keep_last:
            kept += 1
            continue
        if step == best_step and good:
            continue
        if not good and kept == 0:
            continue  # never delete what may still be an upload in progress at the head
        removed.append(step)
    return removed


def prune(run_dir: Path, *, keep_last: int, best_step: int | None) -> list[Path]:
    """Delete all but the newest ``keep_last`` complete checkpoints and the best one."""
    found = {step_of(c): c for c in list_checkpoints(run_dir)}
    plan = prune_plan(
        [(s, problem(c) is None) for s, c in found.items() if s is not None],
        keep_last=keep_last,
        best_step=best_step,
    )
    for step in plan:
        shutil.rmtree(found[step], ignore_errors=True)
    return [found[s] for s in plan]
