"""The data readers on a bucket: the bundled corpus uploaded to SeaweedFS (S3) and
fake-gcs-server (GCS) reads back as the same examples as from disk, fetching only
the split's table and clips, through the bounded cache, with the bytes counted.
"""

from __future__ import annotations

import collections
import csv
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.fs as pafs
import pytest
from objectstore import *  # noqa: F403  (server fixtures)
from objectstore import GcsServer, S3Server

from whisperft.trainer.data import DataError, Example, corpus_root, iter_split, read_split
from whisperft.trainer.data.bundled import resolve_data_path
from whisperft.trainer.data.features import source_fingerprint
from whisperft.trainer.storage.cache import default_cache
from whisperft.trainer.storage.errors import StorageError
from whisperft.trainer.storage.objects import store_for
from whisperft.trainer.storage.uri import parse_uri

pytestmark = pytest.mark.integration
CORPUS = corpus_root() / "en"


@dataclass(frozen=True)
class Uploaded:
    scheme: str
    bucket: str
    env: dict[str, str]

    def uri(self, key: str) -> str:
        return f"{self.scheme}://{self.bucket}/{key}"


def _clips(split: str) -> list[str]:
    with (CORPUS / f"{split}.tsv").open(newline="") as f:
        return [row["path"] for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]


def _upload(server: S3Server | GcsServer, scheme: str, tmp: Path) -> Uploaded:
    bucket = f"corpus-{scheme}-{os.getpid()}"
    server.create_bucket(bucket)
    fs = server.filesystem()
    local = pafs.LocalFileSystem()
    # 1. the Common Voice release directory as it is
    pafs.copy_files(
        str(CORPUS), f"{bucket}/cv/en", source_filesystem=local, destination_filesystem=fs
    )
    # 2. a manifest: half the clips relative to it, half as absolute URIs into the release
    test_clips = _clips("test")
    sentences = _sentences("test")
    lines = []
    for i, clip in enumerate(test_clips):
        audio = f"clips/{clip}" if i % 2 else f"{scheme}://{bucket}/cv/en/clips/{clip}"
        lines.append(json.dumps({"audio": audio, "text": sentences[clip], "id": Path(clip).stem}))
    with fs.open_output_stream(f"{bucket}/manifest/test.jsonl") as f:
        f.write(("\n".join(lines) + "\n").encode())
    for i, clip in enumerate(test_clips):
        if i % 2:
            fs.copy_file(f"{bucket}/cv/en/clips/{clip}", f"{bucket}/manifest/clips/{clip}")
    # 3. an audiofolder: test/metadata.csv next to the clips
    folder = tmp / "audiofolder" / "test"
    folder.mkdir(parents=True)
    with (folder / "metadata.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file_name", "transcription"])
        for clip in test_clips:
            w.writerow([clip, sentences[clip]])
            (folder / clip).write_bytes((CORPUS / "clips" / clip).read_bytes())
    pafs.copy_files(
        str(tmp / "audiofolder"), f"{bucket}/af", source_filesystem=local, destination_filesystem=fs
    )
    return Uploaded(scheme, bucket, server.env())


def _sentences(split: str) -> dict[str, str]:
    with (CORPUS / f"{split}.tsv").open(newline="") as f:
        rows = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        return {row["path"]: row["sentence"].strip() for row in rows}


@pytest.fixture(scope="module", params=["s3", "gs"])
def uploaded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Uploaded:
    server: S3Server | GcsServer = request.getfixturevalue(
        "s3_server" if request.param == "s3" else "gcs_server"
    )
    return _upload(server, request.param, tmp_path_factory.mktemp(f"corpus-{request.param}"))


@pytest.fixture
def on_bucket(
    uploaded: Uploaded, storage_env: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Uploaded]:
    """The bucket's env applied, and an empty cache of our own (so bytes read are this test's)."""
    for k, v in uploaded.env.items():
        storage_env.setenv(k, v)
    storage_env.setenv("WHISPERFT_CACHE", str(tmp_path / "cache"))
    yield uploaded


def _read(fmt: str, path: str | Path, split: str) -> list[Example]:
    skipped: collections.Counter[str] = collections.Counter()
    out = list(iter_split(fmt, path, split, skipped=skipped))
    assert not skipped, skipped
    return out


def _same(local: list[Example], remote: list[Example]) -> None:
    assert len(remote) == len(local) > 0
    for a, b in zip(local, remote, strict=True):
        assert (a.sentence, a.meta["id"]) == (b.sentence, b.meta["id"])
        assert np.array_equal(a.audio, b.audio)


def test_commonvoice_release_in_a_bucket_reads_like_local(on_bucket: Uploaded) -> None:
    uri = on_bucket.uri("cv/en")
    local = _read("commonvoice", CORPUS, "test")
    remote = _read("commonvoice", uri, "test")
    _same(local, remote)
    assert remote[0].meta["path"].startswith(f"{uri}/clips/")
    # Only test.tsv and the test clips came over the network: not train/dev, not validated.tsv.
    clip_bytes = sum((CORPUS / "clips" / c).stat().st_size for c in _clips("test"))
    table_bytes = (CORPUS / "test.tsv").stat().st_size
    store = store_for(parse_uri(uri))
    cache = default_cache()
    assert cache.stats.bytes_from_bucket == clip_bytes
    assert cache.stats.misses == len(local) and cache.stats.hits == 0
    corpus_bytes = sum(p.stat().st_size for p in CORPUS.rglob("*") if p.is_file())
    read = store.counters.bytes_read
    assert read >= clip_bytes + table_bytes
    assert read < 0.3 * corpus_bytes, (read, corpus_bytes)
    # A second pass is served from the local cache.
    before = store.counters.bytes_read
    _same(local, _read("commonvoice", uri, "test"))
    assert cache.stats.hits == len(local)
    assert store.counters.bytes_read == before


def test_manifest_with_relative_paths_and_uris(on_bucket: Uploaded) -> None:
    local = _read("commonvoice", CORPUS, "test")
    remote = _read("manifest", on_bucket.uri("manifest"), "test")
    _same(local, remote)
    paths = {e.meta["path"].rsplit("/clips/", 1)[0] for e in remote}
    assert paths == {on_bucket.uri("manifest"), on_bucket.uri("cv/en")}
    # The manifest object itself can be the data path.
    _same(local, _read("manifest", on_bucket.uri("manifest/test.jsonl"), "test"))


def test_audiofolder_in_a_bucket(on_bucket: Uploaded) -> None:
    local = _read("commonvoice", CORPUS, "test")
    remote = _read("hf", on_bucket.uri("af"), "test")
    assert [e.sentence for e in remote] == [e.sentence for e in local]
    for a, b in zip(local, remote, strict=True):
        assert np.array_equal(a.audio, b.audio)


def test_cache_bound_holds_while_reading(
    on_bucket: Uploaded, storage_env: pytest.MonkeyPatch
) -> None:
    bound = 200_000
    storage_env.setenv("WHISPERFT_STORAGE_CACHE_BYTES", str(bound))
    split = read_split("commonvoice", on_bucket.uri("cv/en"), "dev")
    assert len(split.examples) == len(_clips("dev"))
    cache = default_cache()
    assert cache.max_bytes == bound and cache.size_bytes <= bound and cache.stats.evictions > 0
    on_disk = sum(p.stat().st_size for p in cache.root.iterdir() if p.is_file())
    assert on_disk <= bound


def test_fingerprint_follows_the_objects(on_bucket: Uploaded) -> None:
    mirror = resolve_data_path(on_bucket.uri("cv/en"))
    first = source_fingerprint(mirror, "test")
    assert source_fingerprint(mirror, "test") == first
    assert source_fingerprint(mirror, "train") != first
    store = store_for(parse_uri(on_bucket.uri("cv/en")))
    uri = parse_uri(on_bucket.uri("cv/en/test.tsv"))
    original = store.read_bytes(uri)
    try:
        store.write_bytes(uri, original + b"\n")
        assert source_fingerprint(mirror, "test") != first
    finally:
        store.write_bytes(uri, original)


def test_missing_prefix_and_missing_bucket(on_bucket: Uploaded) -> None:
    with pytest.raises(DataError, match="does not exist"):
        _read("commonvoice", on_bucket.uri("nothing/here"), "test")
    missing = f"{on_bucket.scheme}://no-such-corpus-bucket/cv"
    with pytest.raises(StorageError) as info:
        _read("commonvoice", missing, "test")
    assert info.value.kind == "no_bucket" and missing in str(info.value)
