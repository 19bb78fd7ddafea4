"""trainer/storage against real servers on loopback: SeaweedFS (S3) and fake-gcs-server (GCS).

Committed uploads, the bounded cache, and the failures: a bucket that does not
exist, wrong credentials, a principal without rights, and a server that drops
connections mid-transfer (retried, then one clear error; never a prefix that
counts as complete when it is not).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from objectstore import *  # noqa: F403  (server fixtures)
from objectstore import NO_RIGHTS, FlakyProxy, GcsServer, S3Server

from whisperft.trainer.storage import commit
from whisperft.trainer.storage.cache import ObjectCache
from whisperft.trainer.storage.errors import StorageError
from whisperft.trainer.storage.objects import Store, store_for
from whisperft.trainer.storage.retry import MAX_ATTEMPTS
from whisperft.trainer.storage.uri import StorageURI, parse_uri

pytestmark = pytest.mark.integration


@dataclass
class Bucket:
    scheme: str
    name: str
    env: dict[str, str]

    def uri(self, key: str = "") -> StorageURI:
        return parse_uri(f"{self.scheme}://{self.name}/{key}")


_COUNTER = iter(range(10**6))


def _bucket_name(prefix: str) -> str:
    return f"{prefix}-{os.getpid()}-{next(_COUNTER)}"


@pytest.fixture(params=["s3", "gs"])
def bucket(request: pytest.FixtureRequest, storage_env: pytest.MonkeyPatch) -> Iterator[Bucket]:
    """A fresh bucket on either server, its env applied to this process."""
    server: S3Server | GcsServer = request.getfixturevalue(
        "s3_server" if request.param == "s3" else "gcs_server"
    )
    name = _bucket_name("wft")
    server.create_bucket(name)
    env = server.env()
    for k, v in env.items():
        storage_env.setenv(k, v)
    yield Bucket(request.param, name, env)


def _tree(root: Path, sizes: dict[str, int]) -> Path:
    for rel, size in sizes.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))
    return root


def test_upload_commit_download_roundtrip(bucket: Bucket, tmp_path: Path) -> None:
    src = _tree(tmp_path / "src", {"model.bin": 300_000, "ds/mp_rank_00.pt": 5000, "meta.json": 12})
    dest = bucket.uri("runs/demo/checkpoints/step_000010")
    marker = commit.upload_tree(src, dest)
    assert set(marker["files"]) == {"model.bin", "ds/mp_rank_00.pt", "meta.json"}
    assert commit.completed(dest) == marker
    assert commit.complete_prefixes(dest.parent) == [dest]
    out = tmp_path / "out"
    commit.download_tree(dest, out)
    for rel in marker["files"]:
        assert (out / rel).read_bytes() == (src / rel).read_bytes()
    store = store_for(dest)
    assert store.counters.bytes_written >= 305_012


def test_a_prefix_without_its_marker_or_with_a_short_object_is_not_complete(
    bucket: Bucket, tmp_path: Path
) -> None:
    src = _tree(tmp_path / "src", {"a.bin": 1000, "b.bin": 2000})
    root = bucket.uri("ckpts")
    good, torn, short = root.join("step_1"), root.join("step_2"), root.join("step_3")
    commit.upload_tree(src, good)
    store = store_for(root)
    store.upload_file(src / "a.bin", torn.join("a.bin"))  # cut off before the marker
    commit.upload_tree(src, short)
    store.write_bytes(short.join("b.bin"), b"truncated")  # an object that no longer matches
    assert commit.completed(torn) is None
    assert commit.completed(short) is None
    assert commit.complete_prefixes(root) == [good]
    with pytest.raises(FileNotFoundError, match="not a complete upload"):
        commit.download_tree(torn, tmp_path / "x")


def test_missing_bucket_is_one_clear_error(bucket: Bucket, tmp_path: Path) -> None:
    src = _tree(tmp_path / "src", {"a.bin": 10})
    missing = parse_uri(f"{bucket.scheme}://no-such-bucket-{os.getpid()}/runs/x")
    start = time.monotonic()
    with pytest.raises(StorageError) as info:
        commit.upload_tree(src, missing)
    err = info.value
    assert err.kind == "no_bucket" and err.attempts == 1
    assert str(missing) in str(err)
    principal = (
        "anonymous" if bucket.scheme == "gs" else f"access key {bucket.env['AWS_ACCESS_KEY_ID']}"
    )
    assert principal in str(err)
    assert time.monotonic() - start < 5  # not retried into a long wait


def test_s3_wrong_credentials_are_not_retried(
    s3_server: S3Server, storage_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    name = _bucket_name("wft")
    s3_server.create_bucket(name)
    for k, v in s3_server.env().items():
        storage_env.setenv(k, v)
    storage_env.setenv("AWS_ACCESS_KEY_ID", "WFTWRONGKEY000000000")
    storage_env.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    src = _tree(tmp_path / "src", {"a.bin": 10})
    dest = parse_uri(f"s3://{name}/ckpt")
    with pytest.raises(StorageError) as info:
        commit.upload_tree(src, dest)
    err = info.value
    assert err.kind in {"denied", "bad_credentials"} and err.attempts == 1
    assert "access key WFTWRONGKEY000000000" in str(err) and str(dest) in str(err)
    storage_env.setenv("AWS_ACCESS_KEY_ID", s3_server.admin.access_key)
    storage_env.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret-for-a-real-key")
    with pytest.raises(StorageError) as info:
        store_for(dest).read_bytes(dest.join("a.bin"))
    assert info.value.attempts == 1 and s3_server.admin.access_key in str(info.value)


def test_s3_principal_without_rights_is_named(
    s3_server: S3Server, storage_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    name = _bucket_name("wft")
    s3_server.create_bucket(name)
    admin = Store.from_env("s3", s3_server.env())
    admin.write_bytes(parse_uri(f"s3://{name}/data/train.tsv"), b"client_id\tpath\tsentence\n")
    for k, v in s3_server.env(NO_RIGHTS).items():
        storage_env.setenv(k, v)
    uri = parse_uri(f"s3://{name}/data/train.tsv")
    for op in (
        lambda: store_for(uri).read_bytes(uri),
        lambda: store_for(uri).write_bytes(uri, b"x"),
    ):
        with pytest.raises(StorageError) as info:
            op()
        assert info.value.kind == "denied" and info.value.attempts == 1
        assert f"access key {NO_RIGHTS.access_key}" in str(info.value) and str(uri) in str(
            info.value
        )
    # the object is untouched by the refused write
    assert admin.read_bytes(uri) == b"client_id\tpath\tsentence\n"


def _through_proxy(
    storage_env: pytest.MonkeyPatch, server: S3Server, proxy: FlakyProxy, name: str
) -> None:
    for k, v in server.env(endpoint=proxy.endpoint).items():
        storage_env.setenv(k, v)


def test_s3_dropped_connections_mid_upload_are_retried(
    s3_server: S3Server, s3_proxy: FlakyProxy, storage_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    name = _bucket_name("wft")
    s3_server.create_bucket(name)
    _through_proxy(storage_env, s3_server, s3_proxy, name)
    src = _tree(tmp_path / "src", {"model.bin": 2_000_000, "config.json": 100})
    dest = parse_uri(f"s3://{name}/out/model")
    s3_proxy.cut(after_bytes=256 * 1024, connections=2)  # the first two tries die mid-body
    commit.upload_tree(src, dest)
    assert s3_proxy.cuts == 2
    assert commit.completed(dest) is not None
    out = tmp_path / "back"
    commit.download_tree(dest, out)
    assert (out / "model.bin").read_bytes() == (src / "model.bin").read_bytes()


def test_s3_server_that_keeps_dropping_gives_one_error_and_no_good_checkpoint(
    s3_server: S3Server, s3_proxy: FlakyProxy, storage_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    name = _bucket_name("wft")
    s3_server.create_bucket(name)
    _through_proxy(storage_env, s3_server, s3_proxy, name)
    root = parse_uri(f"s3://{name}/ckpts")
    small = _tree(tmp_path / "v1", {"model.bin": 50_000})
    commit.upload_tree(small, root.join("step_1"))
    big = _tree(tmp_path / "v2", {"model.bin": 1_500_000, "z.json": 10})
    s3_proxy.cut(after_bytes=200 * 1024, connections=None)  # every connection, from now on
    for target in (root.join("step_2"), root.join("step_1")):  # a new one, and an overwrite
        with pytest.raises(StorageError) as info:
            commit.upload_tree(big, target)
        err = info.value
        assert err.kind == "transient" and err.attempts == MAX_ATTEMPTS
        assert str(target.join("model.bin")) in str(err) and "access key" in str(err)
    s3_proxy.heal()
    # Neither the cut-off new checkpoint nor the half-overwritten old one counts as good.
    assert commit.complete_prefixes(root) == []
    assert s3_proxy.cuts >= 2 * MAX_ATTEMPTS


def test_gcs_dropped_connections_mid_download_are_retried(
    gcs_server: GcsServer, gcs_proxy: FlakyProxy, storage_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    name = _bucket_name("wft")
    gcs_server.create_bucket(name)
    for k, v in gcs_server.env().items():
        storage_env.setenv(k, v)
    src = _tree(tmp_path / "src", {"model.bin": 1_000_000})
    dest = parse_uri(f"gs://{name}/out/model")
    commit.upload_tree(src, dest)
    storage_env.setenv("STORAGE_EMULATOR_HOST", gcs_proxy.endpoint)
    # Requests go upstream; cut each connection once it has sent a little more than one
    # request, so reads die part-way until the two cuts are spent.
    gcs_proxy.cut(after_bytes=600, connections=2)
    out = tmp_path / "back"
    commit.download_tree(dest, out)
    assert (out / "model.bin").read_bytes() == (src / "model.bin").read_bytes()
    assert gcs_proxy.cuts == 2


def test_cache_is_bounded_lru_and_counts_bytes(bucket: Bucket, tmp_path: Path) -> None:
    store = store_for(bucket.uri())
    objects = [bucket.uri(f"clips/{i}.bin") for i in range(4)]
    payload = {u: os.urandom(10_000 + i) for i, u in enumerate(objects)}
    for u, data in payload.items():
        store.write_bytes(u, data)
    cache = ObjectCache(tmp_path / "cache", max_bytes=25_000)  # room for two
    assert cache.read(objects[0], store=store) == payload[objects[0]]
    assert cache.read(objects[1], store=store) == payload[objects[1]]
    assert cache.read(objects[0], store=store) == payload[objects[0]]  # hit; 1 is now oldest
    assert (cache.stats.hits, cache.stats.misses) == (1, 2)
    cache.read(objects[2], store=store)  # evicts 1
    assert cache.stats.evictions == 1 and cache.size_bytes <= 25_000
    cache.read(objects[0], store=store)
    assert cache.stats.hits == 2
    cache.read(objects[1], store=store)  # was evicted: read again
    assert cache.stats.misses == 4
    assert cache.stats.bytes_from_bucket == 10_000 + 10_001 + 10_002 + 10_001
    assert sum(p.stat().st_size for p in (tmp_path / "cache").iterdir()) <= 25_000
    # A changed object is not served stale.
    store.write_bytes(objects[0], b"new content")
    assert cache.read(objects[0], store=store) == b"new content"
    # A new cache over the same directory starts from what is on disk, still bounded.
    again = ObjectCache(tmp_path / "cache", max_bytes=12_000)
    assert again.size_bytes <= 12_000
