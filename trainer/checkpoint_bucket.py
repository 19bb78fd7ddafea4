"""Checkpoints in a bucket: ``<checkpoint_uri>/checkpoint_step_NNNNNNNN/``, same layout
and the same completeness rules as on a claim (trainer.checkpoint.tree_problem).

Every rank uploads the files it wrote and its ``manifest_rank{r}.json`` LAST, so
the manifests are the commit markers: a prefix missing one, or holding an object
of another size, never counts as good (a rank cut off mid-upload, a server that
dropped the connection). Uploads go through trainer.storage, which retries
transient errors with backoff and names the URI and principal otherwise.

Ray Train is not given these checkpoints (no shared storage is assumed between
the pods); a resume downloads the chosen one to node-local scratch
(``local_root/<name>``) once per node, under a file lock, and the engine loads
it from there.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

from whisperft.trainer import checkpoint as ckpt
from whisperft.trainer.node_lock import node_lock
from whisperft.trainer.storage.objects import Store, store_for
from whisperft.trainer.storage.uri import StorageURI, parse_uri

log = logging.getLogger(__name__)


class BucketCheckpoints:
    def __init__(self, uri: str | StorageURI, local_root: Path, store: Store | None = None) -> None:
        self.uri = parse_uri(uri) if isinstance(uri, str) else uri
        self.local_root = local_root
        self.store = store or store_for(self.uri)

    def prefix(self, name: str) -> StorageURI:
        return self.uri.join(name)

    def names(self) -> list[str]:
        """Checkpoint prefixes, newest step first."""
        found = [
            (s, n)
            for n in self.store.subprefixes(self.uri)
            if (s := ckpt.step_of(Path(n))) is not None
        ]
        return [n for _, n in sorted(found, reverse=True)]

    def problem(self, name: str) -> str | None:
        """Why the prefix is not a complete checkpoint (sizes, from one listing), or None."""
        base = self.prefix(name)
        sizes = {rel: int(info.size or 0) for rel, info in self.store.walk_files(base)}
        return ckpt.tree_problem(
            sizes, lambda rel: self.store.read_bytes(base.join(rel)).decode("utf-8")
        )

    # -- writing -------------------------------------------------------------------
    def clear(self, name: str) -> None:
        """Remove a partial prefix before this step is written again (rank 0, then a barrier)."""
        self.store.delete_prefix(self.prefix(name))

    def upload_rank(self, local_dir: Path, name: str, rank: int) -> int:
        """Upload what this rank wrote, its manifest last; the bytes uploaded."""
        base = self.prefix(name)
        manifest = local_dir / f"manifest_rank{rank}.json"
        total = 0
        for f in sorted(p for p in local_dir.rglob("*") if p.is_file() and p != manifest):
            total += self.store.upload_file(f, base.join(f.relative_to(local_dir).as_posix()))
        total += self.store.upload_file(manifest, base.join(manifest.name))
        return total

    def prune(self, *, keep_last: int, best_step: int | None) -> list[str]:
        names = {ckpt.step_of(Path(n)): n for n in self.names()}
        plan = ckpt.prune_plan(
            [(s, self.problem(n) is None) for s, n in names.items() if s is not None],
            keep_last=keep_last,
            best_step=best_step,
        )
        for step in plan:
            self.store.delete_prefix(self.prefix(names[step]))
            shutil.rmtree(self.local_root / names[step], ignore_errors=True)
        return [names[s] for s in plan]

    # -- reading -------------------------------------------------------------------
    def materialize(self, name: str) -> Path:
        """The checkpoint on local disk (downloaded once per node); raises when incomplete."""
        target = self.local_root / name
        with node_lock(self.local_root / f".{name}.lock"):
            if target.is_dir() and ckpt.problem(target) is None:
                return target
            why = self.problem(name)
            if why is not None:
                raise FileNotFoundError(f"{self.prefix(name)}: {why}")
            self.local_root.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=self.local_root))
            try:
                for rel, _ in self.store.walk_files(self.prefix(name)):
                    self.store.download_file(self.prefix(name).join(rel), tmp / rel)
                shutil.rmtree(target, ignore_errors=True)
                tmp.rename(target)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        return target

    def latest_good(self) -> tuple[Path, ckpt.TrainerState] | None:
        """The newest complete checkpoint, downloaded and digest-checked; others skipped loudly."""
        for name in self.names():
            why = self.problem(name)
            if why is None:
                local = self.materialize(name)
                why = ckpt.problem(local, verify_content=True)
                if why is None:
                    return local, ckpt.TrainerState.from_json((local / ckpt.STATE_FILE).read_text())
                shutil.rmtree(local, ignore_errors=True)
            log.warning(
                "skipping checkpoint %s: %s; falling back to the previous one",
                self.prefix(name),
                why,
            )
        return None

    def state(self, name: str) -> ckpt.TrainerState:
        raw = self.store.read_bytes(self.prefix(name).join(ckpt.STATE_FILE))
        return ckpt.TrainerState.from_json(raw.decode("utf-8"))
