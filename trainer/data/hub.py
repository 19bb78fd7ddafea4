"""Hugging Face hub datasets (format hub): a dataset id, or a local directory laid
out as a hub repository, read with `datasets.load_dataset_builder`.

    <repo>/README.md                     optional; its `configs:` YAML names the
                                         configs and their data files
    <repo>/<config>/train-00000-of-00001.parquet    one folder per config, or
    <repo>/data/train-*.parquet                     one config ("default")

Rows come out of the builder's Arrow tables (`with_format("arrow")`), never
through `datasets.Audio` decoding (torchcodec); the audio cells ({bytes, path}
structs, as the hub's parquet files hold them) are decoded by our soundfile path
in readers.py, which also skips and counts corrupt clips. Columns are found as
for a saved dataset (hf_datasets.py).

Non-streaming prepares the dataset in the datasets cache (HF_HOME, on the
checkpoint claim in a pod) and memory-maps the split. Streaming iterates the
split's files without downloading them first, so a `limit` bounds what is read.
No dataset code is ever run: datasets >= 4 has no loading scripts.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from whisperft.trainer.data.errors import DataError
from whisperft.trainer.data.example import Candidate, Skip
from whisperft.trainer.data.hf_datasets import dataset_columns, table_candidates
from whisperft.trainer.data.splits import split_aliases

if TYPE_CHECKING:
    from whisperft.operator.api.spec import DatasetSpec

log = logging.getLogger(__name__)

_BATCH = 64  # rows converted to Python at a time when not streaming
_LOCAL_PREFIXES = ("/", "./", "../", "~")
_CONFIG_NOT_FOUND = re.compile(r"BuilderConfig '.*' not found")
_CONFIG_MISSING = "Config name is missing"
# Files whose names, sizes and mtimes identify a local repository's data.
_DATA_SUFFIXES = (".parquet", ".arrow", ".jsonl", ".json", ".csv", ".tsv", ".txt", ".md")


@dataclass(frozen=True)
class HubOptions:
    """What selects the data inside a hub dataset: config, revision, streaming."""

    config: str | None = None
    revision: str | None = None
    streaming: bool = False

    @classmethod
    def of(cls, dataset: DatasetSpec) -> HubOptions | None:
        """The spec's options when its format is hub, else None."""
        if dataset.format != "hub":
            return None
        return cls(config=dataset.config, revision=dataset.revision, streaming=dataset.streaming)


def local_root(path: str | Path) -> Path | None:
    """The local repository `path` names, None for a hub id; DataError for a missing dir."""
    text = str(path)
    candidate = Path(text).expanduser()
    if candidate.is_dir():
        return candidate.resolve()
    if isinstance(path, Path) or text.startswith(_LOCAL_PREFIXES):
        raise DataError(f"{candidate}: data path does not exist (format hub: a local directory)")
    if "://" in text or text.startswith("bundled:"):
        raise DataError(
            f"{text}: format hub reads a hub dataset id (name or owner/name) or a local "
            "directory laid out as a hub repository"
        )
    return None


def _where(path: str, opts: HubOptions) -> str:
    out = path if opts.config is None else f"{path} ({opts.config})"
    return out if opts.revision is None else f"{out}@{opts.revision}"


def _config_names(path: str, opts: HubOptions) -> list[str]:
    import datasets

    try:
        return list(datasets.get_dataset_config_names(path, revision=opts.revision))
    except Exception:  # only for the message
        return []


def _offline_hint() -> str:
    import os

    flags = [n for n in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE") if os.environ.get(n, "0") != "0"]
    return f" ({' and '.join(flags)} set: only the local cache is searched)" if flags else ""


def open_builder(path: str | Path, opts: HubOptions) -> tuple[Any, str]:
    """The datasets builder of `path` with `opts`, and how to name it in messages."""
    import datasets

    root = local_root(path)
    ref = str(root) if root is not None else str(path)
    where = _where(ref, opts)
    if root is not None and opts.revision is not None:
        log.warning("%s: a local repository is read as it is; revision is ignored", where)
    try:
        return datasets.load_dataset_builder(ref, opts.config, revision=opts.revision), where
    except ValueError as exc:
        message = str(exc)
        if opts.config is not None and _CONFIG_NOT_FOUND.search(message):
            # `<repo>/<config>/...` with no `configs:` in the README: the config is a folder.
            if root is None or (root / opts.config).is_dir():
                try:
                    builder = datasets.load_dataset_builder(
                        ref, revision=opts.revision, data_dir=opts.config
                    )
                    return builder, where
                except Exception:
                    pass
            names = _config_names(ref, opts)
            raise DataError(
                f"{ref}: no config {opts.config!r} in the hub dataset; "
                f"configs: {names or 'none found'}",
                reason="no_config",
            ) from None
        if _CONFIG_MISSING in message:
            names = _config_names(ref, opts)
            raise DataError(
                f"{ref}: the hub dataset has several configs; set dataset.config to one of "
                f"{names or message}",
                reason="no_config",
            ) from None
        raise DataError(f"{where}: cannot open hub dataset ({message})") from exc
    except FileNotFoundError as exc:
        raise DataError(
            f"{where}: hub dataset not found{_offline_hint()} ({exc}); for a private or gated "
            "dataset set hfTokenSecretRef",
            reason="not_found",
        ) from exc
    except Exception as exc:  # ConnectionError, hub HTTP errors, unreadable README
        raise DataError(
            f"{where}: cannot reach hub dataset{_offline_hint()} ({type(exc).__name__}: {exc})",
            reason="not_found",
        ) from exc


def available_splits(builder: Any) -> list[str]:
    """The split names the builder knows without reading any data."""
    data_files = getattr(builder.config, "data_files", None)
    if data_files:
        return [str(name) for name in data_files]
    splits = builder.info.splits
    return [str(name) for name in splits] if splits else []


def split_name(builder: Any, split: str, where: str) -> str:
    """`split` or the alias it goes by in the dataset ("dev" finds "validation")."""
    names = available_splits(builder)
    if not names:
        return split  # not declared up front; the builder says so when asked
    for name in split_aliases(split):
        if name in names:
            return name
    raise DataError(f"{where}: no split {split!r} in the hub dataset; splits: {names}")


def _open_split(path: str | Path, split: str, opts: HubOptions) -> tuple[Any, str, str, Path]:
    builder, where = open_builder(path, opts)
    name = split_name(builder, split, where)
    try:
        if opts.streaming:
            dataset = builder.as_streaming_dataset(split=name)
        else:
            builder.download_and_prepare()
            dataset = builder.as_dataset(split=name)
    except DataError:
        raise
    except Exception as exc:  # unreadable files, a split the builder does not have
        raise DataError(
            f"{where} [{name}]: cannot read the hub dataset ({type(exc).__name__}: {exc})"
        ) from exc
    root = local_root(path)
    base = root if root is not None else Path.cwd()
    return dataset, where, name, base


def candidates(
    path: str | Path, split: str, skip: Skip, opts: HubOptions | None = None
) -> tuple[str, Iterator[Candidate]]:
    """The rows of one split; config, revision and split problems raise DataError now."""
    opts = opts or HubOptions()
    dataset, where, name, base = _open_split(path, split, opts)
    source = f"{where} [{name}]"
    columns = list(dataset.column_names or [])
    features = dict(dataset.features or {})
    if not columns:  # a stream whose features are not declared: look at its first row
        first = next(iter(dataset.with_format("arrow")), None)
        columns = list(first.column_names) if first is not None else []
    audio_col, text_col, speaker_col = dataset_columns(features, columns, source)
    arrow = dataset.with_format("arrow")
    # A stream yields one-row tables, so a limit stops reading at the row it is reached.
    tables = iter(arrow) if opts.streaming else arrow.iter(batch_size=_BATCH)
    rows = table_candidates(
        _read_errors(tables, source),
        where=source,
        split=split,
        audio_col=audio_col,
        text_col=text_col,
        speaker_col=speaker_col,
        base=base,
        skip=skip,
    )
    return source, rows


def _read_errors(tables: Iterator[Any], source: str) -> Iterator[Any]:
    """The tables, with a file that breaks off mid-stream named as a DataError."""
    try:
        yield from tables
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{source}: reading failed ({type(exc).__name__}: {exc})") from exc


def _resolved_commit(path: str, revision: str | None) -> str | None:
    """The hub commit a revision (default: main) points at now, or None offline."""
    try:
        from huggingface_hub import HfApi

        return HfApi().dataset_info(path, revision=revision).sha
    except Exception:
        return None


def fingerprint(path: str | Path, split: str, opts: HubOptions | None = None) -> str:
    """A cheap identity of one split: id, config, revision and split (plus the commit the
    revision resolves to when the hub answers), or for a local repository the names,
    sizes and mtimes of its data files. Nothing is downloaded."""
    opts = opts or HubOptions()
    h = hashlib.sha256()
    root = local_root(path)
    h.update(f"hub\0{opts.config}\0{opts.revision}\0{split}\0".encode())
    if root is None:
        h.update(f"{path}\0{_resolved_commit(str(path), opts.revision)}".encode())
        return h.hexdigest()[:16]
    for item in sorted(root.rglob("*")):
        rel = item.relative_to(root)
        if rel.parts[0].startswith(".") or not item.is_file():
            continue  # .git, .cache (datasets' own)
        if item.suffix in _DATA_SUFFIXES:
            st = item.stat()
            h.update(f"{rel.as_posix()}:{st.st_size}:{st.st_mtime_ns}\0".encode())
    return h.hexdigest()[:16]


def source_name(path: str | Path) -> str:
    """How the cache key names the dataset: the hub id, or the local directory."""
    root = local_root(path)
    return str(path) if root is None else str(root)
