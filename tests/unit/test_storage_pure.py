"""trainer/storage without a server: URI parsing, error classification, backoff, env."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from whisperft.trainer.storage.errors import StorageError, classify
from whisperft.trainer.storage.fs import Endpoint, filesystem_for, parse_endpoint
from whisperft.trainer.storage.retry import RetryPolicy, with_retry
from whisperft.trainer.storage.uri import StorageURI, URIError, is_uri, parse_uri

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "scheme", "bucket", "key"),
    [
        ("s3://my-bucket", "s3", "my-bucket", ""),
        ("s3://my-bucket/", "s3", "my-bucket", ""),
        ("s3://my-bucket/a/b/", "s3", "my-bucket", "a/b"),
        ("gs://data_1/cv//en/./train.tsv", "gs", "data_1", "cv/en/train.tsv"),
        ("gcs://data/x", "gs", "data", "x"),
        ("S3://data/X", "s3", "data", "X"),
    ],
)
def test_parse_uri(text: str, scheme: str, bucket: str, key: str) -> None:
    uri = parse_uri(text)
    assert (uri.scheme, uri.bucket, uri.key) == (scheme, bucket, key)
    assert parse_uri(str(uri)) == uri
    assert uri.path == (f"{bucket}/{key}" if key else bucket)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("s3://", "no bucket"),
        ("s3:///key", "no bucket"),
        ("s3://ab/key", "not a valid bucket name"),
        ("gs://Upper/key", "not a valid bucket name"),
        ("s3://bucket/a/../b", "'..'"),
        ("s3://bucket/k?versionId=1", "query"),
        ("/data/cv", "not a bucket URI"),
        ("http://host/x", "not a bucket URI"),
    ],
)
def test_parse_uri_refuses(text: str, fragment: str) -> None:
    with pytest.raises(URIError, match=None) as info:
        parse_uri(text)
    assert fragment in str(info.value)
    assert repr(text) in str(info.value) or text in str(info.value)


def test_is_uri() -> None:
    assert is_uri("s3://b/k") and is_uri("gs://bkt") and is_uri("GCS://bkt")
    assert not is_uri("bundled:en") and not is_uri("/tmp/x") and not is_uri("file:///x")
    assert not is_uri(None) and not is_uri(3)


def test_join_relative_parent() -> None:
    root = parse_uri("s3://bkt/runs/demo")
    ckpt = root.join("checkpoints", "step_10/")
    assert str(ckpt) == "s3://bkt/runs/demo/checkpoints/step_10"
    assert ckpt.relative_to(root) == "checkpoints/step_10"
    assert ckpt.parent.parent == root
    assert ckpt.name == "step_10"
    assert StorageURI("gs", "bkt", "").join("a") == StorageURI("gs", "bkt", "a")
    with pytest.raises(URIError):
        root.join("../other")
    with pytest.raises(URIError):
        parse_uri("s3://bkt/runsx/a").relative_to(root)
    with pytest.raises(URIError):
        parse_uri("gs://bkt/runs/demo/a").relative_to(root)


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        (
            "When initiating multiple part upload for key 'a' in bucket 'nobucket': AWS Error "
            "NO_SUCH_BUCKET during CreateMultipartUpload operation: The specified bucket does not exist",
            "no_bucket",
        ),
        ("Bucket 'x' not found. To create buckets, enable the allow_bucket_creation option.", "no_bucket"),
        ("When getting information for bucket 'b': AWS Error ACCESS_DENIED during HeadBucket operation", "denied"),
        ("AWS Error INVALID_ACCESS_KEY_ID during GetObject operation", "bad_credentials"),
        ("AWS Error SIGNATURE_DOES_NOT_MATCH during PutObject operation", "bad_credentials"),
        ("google::cloud::Status(PERMISSION_DENIED: Permanent error", "denied"),
        ("google::cloud::Status(UNAVAILABLE: Retry policy exhausted", "transient"),
        ("AWS Error NETWORK_CONNECTION during PutObject operation: curlCode: 56, Failure when receiving data from the peer", "transient"),
        ("AWS Error UNKNOWN (HTTP status 503) during GetObject operation", "transient"),
        ("AWS Error SLOW_DOWN during PutObject operation", "transient"),
        ("AWS Error UNKNOWN (HTTP status 400) during CreateBucket operation: InvalidBucketName", "error"),
    ],
)  # fmt: skip
def test_classify(message: str, kind: str) -> None:
    assert classify(OSError(message)) == kind


def test_classify_exception_types() -> None:
    assert classify(FileNotFoundError("Path does not exist 'b/k'")) == "not_found"
    assert classify(ConnectionResetError("peer")) == "transient"
    assert classify(TimeoutError()) == "transient"
    assert classify(ValueError("odd")) == "error"


def test_storage_error_names_uri_and_principal() -> None:
    err = StorageError(
        "s3://bkt/x", "access key AKIA1", "denied", "ACCESS_DENIED", operation="read"
    )
    text = str(err)
    assert "s3://bkt/x" in text and "access key AKIA1" in text and "permission denied" in text
    assert err.permanent
    assert not StorageError("s3://b/x", "anonymous", "transient", "reset", attempts=5).permanent
    assert "after 5 attempts" in str(
        StorageError("s3://b/x", "anonymous", "transient", "reset", attempts=5)
    )


def test_backoff_is_capped_exponential() -> None:
    policy = RetryPolicy(max_attempts=8, base_delay_s=0.5, max_delay_s=4.0)
    top = [policy.delay(n, rand=lambda: 1.0) for n in range(1, 8)]
    assert top == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0]
    assert policy.delay(3, rand=lambda: 0.25) == 0.5
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
    env = {"WHISPERFT_STORAGE_MAX_ATTEMPTS": "3", "WHISPERFT_STORAGE_RETRY_MAX_S": "9"}
    assert RetryPolicy.from_env(env) == RetryPolicy(max_attempts=3, max_delay_s=9.0)


def _flaky(failures: list[BaseException]) -> tuple[list[int], Callable[[], str]]:
    calls: list[int] = []

    def fn() -> str:
        calls.append(1)
        if failures:
            raise failures.pop(0)
        return "done"

    return calls, fn


def test_with_retry_retries_transient_then_succeeds() -> None:
    calls, fn = _flaky([OSError("Curl error code 56"), OSError("HTTP status 503")])
    slept: list[float] = []
    policy = RetryPolicy(max_attempts=5, base_delay_s=0.1, max_delay_s=1.0)
    out = with_retry(
        fn,
        uri="s3://b/k",
        principal="anonymous",
        operation="read",
        policy=policy,
        sleep=slept.append,
    )
    assert out == "done" and len(calls) == 3 and len(slept) == 2
    assert all(0 <= s <= 0.2 for s in slept)


def test_with_retry_gives_up_after_the_limit() -> None:
    calls, fn = _flaky([OSError("connection reset by peer")] * 10)
    policy = RetryPolicy(max_attempts=4, base_delay_s=0.0, max_delay_s=0.0)
    with pytest.raises(StorageError) as info:
        with_retry(
            fn,
            uri="gs://b/k",
            principal="anonymous",
            operation="upload",
            policy=policy,
            sleep=lambda s: None,
        )
    assert len(calls) == 4 and info.value.attempts == 4 and info.value.kind == "transient"
    assert "gs://b/k (upload)" in str(info.value)


@pytest.mark.parametrize(
    "message", ["AWS Error ACCESS_DENIED", "AWS Error NO_SUCH_BUCKET", "weird"]
)
def test_with_retry_does_not_retry_permanent(message: str) -> None:
    calls, fn = _flaky([OSError(message)] * 3)
    with pytest.raises(StorageError) as info:
        with_retry(
            fn,
            uri="s3://b/k",
            principal="access key K",
            operation="read",
            policy=RetryPolicy(),
            sleep=lambda s: None,
        )
    assert len(calls) == 1 and info.value.attempts == 1 and "access key K" in str(info.value)


def test_with_retry_passes_not_found_through() -> None:
    calls, fn = _flaky([FileNotFoundError("Path does not exist 'b/k'")])
    with pytest.raises(FileNotFoundError):
        with_retry(
            fn,
            uri="s3://b/k",
            principal="p",
            operation="read",
            policy=RetryPolicy(),
            sleep=lambda s: None,
        )
    assert len(calls) == 1


def test_parse_endpoint() -> None:
    assert parse_endpoint("http://127.0.0.1:8333", "V") == Endpoint("http", "127.0.0.1:8333")
    e = parse_endpoint("https://storage.example.com/", "V")
    assert (e.scheme, e.host) == ("https", "storage.example.com")
    assert parse_endpoint("localhost:4443", "V").scheme == "http"
    assert parse_endpoint("minio.internal:9000", "V").scheme == "https"
    with pytest.raises(URIError, match="AWS_ENDPOINT_URL"):
        parse_endpoint("ftp://x", "AWS_ENDPOINT_URL")
    with pytest.raises(URIError, match="no path"):
        parse_endpoint("http://x:1/bucket", "V")


def test_principal_from_env() -> None:
    s3 = {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:1",
        "AWS_ACCESS_KEY_ID": "AK1",
        "AWS_SECRET_ACCESS_KEY": "s",
    }
    assert filesystem_for("s3", s3).principal == "access key AK1"
    assert filesystem_for("s3", {"WHISPERFT_S3_ANONYMOUS": "1"}).principal == "anonymous"
    assert filesystem_for("s3", {"AWS_ROLE_ARN": "arn:aws:iam::1:role/r"}).principal.endswith(
        "role/r"
    )
    assert "default credential chain" in filesystem_for("s3", {}).principal
    with pytest.raises(URIError, match="AWS_SECRET_ACCESS_KEY"):
        filesystem_for("s3", {"AWS_ACCESS_KEY_ID": "AK1"})
    assert (
        filesystem_for("gs", {"STORAGE_EMULATOR_HOST": "http://127.0.0.1:1"}).principal
        == "anonymous"
    )
    assert "workload identity" in filesystem_for("gs", {}).principal
