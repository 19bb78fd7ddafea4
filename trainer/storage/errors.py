"""Storage errors: which failures are worth retrying, and one clear error for the rest.

pyarrow.fs reports every S3/GCS failure as an OSError (FileNotFoundError for a
missing key) whose text carries the SDK's error name: ``AWS Error
ACCESS_DENIED during ...`` from the AWS SDK, ``PERMISSION_DENIED``/
``UNAVAILABLE`` status codes from google-cloud-cpp, curl's transport errors.
The classification reads those names; anything it does not know is treated as
permanent (reported at once, not retried into a long hang).
"""

from __future__ import annotations

import re
from typing import Literal

Kind = Literal["transient", "no_bucket", "denied", "bad_credentials", "not_found", "error"]

# (kind, pattern) checked in order; the first match wins.
_RULES: tuple[tuple[Kind, re.Pattern[str]], ...] = (
    (
        "no_bucket",
        re.compile(
            r"NO_SUCH_BUCKET|NoSuchBucket|bucket does not exist|Bucket '[^']*' not found|bucket .* not found",
            re.I,
        ),
    ),
    (
        "bad_credentials",
        re.compile(
            r"INVALID_ACCESS_KEY_ID|InvalidAccessKeyId|SIGNATURE_DOES_NOT_MATCH|SignatureDoesNotMatch"
            r"|UNAUTHENTICATED|INVALID_CLIENT_TOKEN_ID|AuthorizationHeaderMalformed|(HTTP status|response code|status code)[ :=]*401",
            re.I,
        ),
    ),
    (
        "denied",
        re.compile(
            r"ACCESS_DENIED|AccessDenied|PERMISSION_DENIED|Forbidden|(HTTP status|response code|status code)[ :=]*403",
            re.I,
        ),
    ),
    (
        "transient",
        re.compile(
            r"Curl error|NETWORK_CONNECTION|connection (reset|refused|closed|aborted)|reset by peer"
            r"|Broken pipe|timed? ?out|TIMEOUT|UNAVAILABLE|DEADLINE_EXCEEDED|SLOW_DOWN|SlowDown"
            r"|SERVICE_UNAVAILABLE|INTERNAL_FAILURE|InternalError"
            r"|Failure when receiving data|Couldn't connect|Empty reply|RESOURCE_EXHAUSTED|ABORTED"
            r"|(HTTP status|response code|status code)[ :=]*5\d\d",
            re.I,
        ),
    ),
)


def classify(exc: BaseException) -> Kind:
    """The kind of a storage failure (see the module docstring)."""
    if isinstance(exc, StorageError):
        return exc.kind
    text = f"{type(exc).__name__}: {exc}"
    for kind, pattern in _RULES:
        if pattern.search(text):
            return kind
    if isinstance(exc, FileNotFoundError):
        return "not_found"
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return "transient"
    return "error"


_WHAT: dict[Kind, str] = {
    "transient": "kept failing with a transient error",
    "no_bucket": "the bucket does not exist",
    "denied": "permission denied",
    "bad_credentials": "the credentials were refused",
    "not_found": "no such object",
    "error": "storage error",
}

_HINT: dict[Kind, str] = {
    "no_bucket": "create the bucket or fix the location",
    "denied": "grant this principal access to the bucket, or use another principal",
    "bad_credentials": "check the access key and secret (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, "
    "the secretRef they come from) or the GCS service account",
    "transient": "the server or the network is unhealthy; try again later",
}


class StorageError(OSError):
    """One failure on one URI, naming the principal that tried; `kind` says which (see classify)."""

    def __init__(
        self,
        uri: str,
        principal: str,
        kind: Kind,
        detail: str,
        *,
        operation: str = "",
        attempts: int = 1,
    ) -> None:
        self.uri = uri
        self.principal = principal
        self.kind: Kind = kind
        self.detail = detail
        self.operation = operation
        self.attempts = attempts
        what = _WHAT[kind]
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        op = f" ({operation})" if operation else ""
        hint = f"; {_HINT[kind]}" if kind in _HINT else ""
        super().__init__(f"{uri}{op}: {what}{tries}, as {principal}{hint}: {detail}")

    @property
    def permanent(self) -> bool:
        return self.kind != "transient"
