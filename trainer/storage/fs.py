"""pyarrow.fs filesystems for s3:// and gs:// URIs, configured from the environment only.

Credentials never come from the resource: the pod's environment (filled from a
Secret by a secretRef), the cloud's workload identity, or nothing (anonymous).

S3 (pyarrow.fs.S3FileSystem; the AWS SDK's default chain when no key is set,
which covers IRSA web identity and instance profiles):
  AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL   endpoint, e.g. http://127.0.0.1:8333
  AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN
  AWS_REGION, else AWS_DEFAULT_REGION          default us-east-1
  WHISPERFT_S3_ANONYMOUS=1                     unsigned requests (public buckets)
GCS (pyarrow.fs.GcsFileSystem; application default credentials, i.e. GKE
workload identity or GOOGLE_APPLICATION_CREDENTIALS, when not anonymous):
  WHISPERFT_GCS_ENDPOINT, else STORAGE_EMULATOR_HOST   e.g. http://127.0.0.1:4443
                                               (an emulator endpoint implies anonymous)
  WHISPERFT_GCS_ANONYMOUS=1                    unsigned requests
  GOOGLE_CLOUD_PROJECT                         project for bucket creation
S3 only: WHISPERFT_STORAGE_CONNECT_TIMEOUT_S / WHISPERFT_STORAGE_REQUEST_TIMEOUT_S
(GcsFileSystem has no timeout settings).
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow.fs as pafs

from whisperft.trainer.storage.uri import Scheme, StorageURI, URIError

CONNECT_TIMEOUT_S = 10.0
REQUEST_TIMEOUT_S = 60.0
DEFAULT_REGION = "us-east-1"
GCS_SDK_RETRY_S = 1.0


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes"}


@dataclass(frozen=True)
class Endpoint:
    scheme: str  # "http" or "https"
    host: str  # host[:port], what endpoint_override takes


def parse_endpoint(url: str, variable: str) -> Endpoint:
    """`http://host:port` (or a bare host:port, meaning https unless it is loopback)."""
    text = url.strip()
    if "://" not in text:
        host = text.rstrip("/")
        loopback = host.split(":")[0] in {"localhost", "127.0.0.1", "[::1]"}
        return Endpoint("http" if loopback else "https", host)
    parts = urlsplit(text)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise URIError(f"{variable}={url!r}: want http(s)://HOST[:PORT]")
    if parts.path not in ("", "/"):
        raise URIError(f"{variable}={url!r}: an endpoint has no path")
    return Endpoint(parts.scheme, parts.netloc)


@dataclass(frozen=True)
class Resolved:
    filesystem: pafs.FileSystem
    principal: str  # who the requests are made as, for error messages


def _timeouts(env: Mapping[str, str]) -> tuple[float, float]:
    return (
        float(env.get("WHISPERFT_STORAGE_CONNECT_TIMEOUT_S", CONNECT_TIMEOUT_S)),
        float(env.get("WHISPERFT_STORAGE_REQUEST_TIMEOUT_S", REQUEST_TIMEOUT_S)),
    )


def s3_filesystem(env: Mapping[str, str]) -> Resolved:
    connect, request = _timeouts(env)
    kwargs: dict[str, object] = {
        "region": env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or DEFAULT_REGION,
        "connect_timeout": connect,
        "request_timeout": request,
        # Our own retry (retry.py) is the only one, so its limits are the real ones.
        "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=1),
    }
    var = "AWS_ENDPOINT_URL_S3" if env.get("AWS_ENDPOINT_URL_S3") else "AWS_ENDPOINT_URL"
    if env.get(var):
        endpoint = parse_endpoint(env[var], var)
        kwargs.update(endpoint_override=endpoint.host, scheme=endpoint.scheme)
    key = env.get("AWS_ACCESS_KEY_ID")
    if _truthy(env.get("WHISPERFT_S3_ANONYMOUS")):
        kwargs["anonymous"] = True
        principal = "anonymous"
    elif key:
        secret = env.get("AWS_SECRET_ACCESS_KEY")
        if not secret:
            raise URIError("AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not")
        kwargs.update(access_key=key, secret_key=secret)
        if env.get("AWS_SESSION_TOKEN"):
            kwargs["session_token"] = env["AWS_SESSION_TOKEN"]
        principal = f"access key {key}"
    else:
        role = env.get("AWS_ROLE_ARN")
        principal = f"web identity role {role}" if role else "the AWS default credential chain"
    return Resolved(pafs.S3FileSystem(**kwargs), principal)


def _gcs_principal(env: Mapping[str, str]) -> str:
    path = env.get("GOOGLE_APPLICATION_CREDENTIALS")
    if path:
        try:
            email = json.loads(Path(path).read_text()).get("client_email")
        except (OSError, ValueError):
            email = None
        return f"service account {email}" if email else f"credentials file {path}"
    return "application default credentials (workload identity)"


def gcs_filesystem(env: Mapping[str, str]) -> Resolved:
    kwargs: dict[str, object] = {
        # google-cloud-cpp's own retry loop is kept short: retry.py is the policy.
        "retry_time_limit": datetime.timedelta(seconds=GCS_SDK_RETRY_S),
    }
    var = "WHISPERFT_GCS_ENDPOINT" if env.get("WHISPERFT_GCS_ENDPOINT") else "STORAGE_EMULATOR_HOST"
    anonymous = _truthy(env.get("WHISPERFT_GCS_ANONYMOUS"))
    if env.get(var):
        endpoint = parse_endpoint(env[var], var)
        kwargs.update(endpoint_override=endpoint.host, scheme=endpoint.scheme)
        anonymous = anonymous or var == "STORAGE_EMULATOR_HOST"
    if env.get("GOOGLE_CLOUD_PROJECT"):
        kwargs["project_id"] = env["GOOGLE_CLOUD_PROJECT"]
    if anonymous:
        kwargs["anonymous"] = True
    principal = "anonymous" if anonymous else _gcs_principal(env)
    return Resolved(pafs.GcsFileSystem(**kwargs), principal)


def filesystem_for(scheme: Scheme, env: Mapping[str, str] | None = None) -> Resolved:
    env = os.environ if env is None else env
    return s3_filesystem(env) if scheme == "s3" else gcs_filesystem(env)


def for_uri(uri: StorageURI, env: Mapping[str, str] | None = None) -> Resolved:
    return filesystem_for(uri.scheme, env)
