"""Real object-storage servers on loopback for the tests, plus a connection-dropping proxy.

- SeaweedFS (`weed server -s3`, Apache-2.0) for S3, with two identities: one
  with every right (ADMIN) and one allowed only an unrelated bucket (NO_RIGHTS);
- fake-gcs-server (BSD-2) for GCS, reached by pyarrow's GcsFileSystem through
  an endpoint override, anonymously (it checks no credentials);
- FlakyProxy: a TCP proxy that forwards bytes and, when told, cuts the next
  connections after so many bytes upstream (a server dropping mid-upload).

hack/objectstore/build.sh builds both servers; a missing binary skips on a
developer machine and FAILS when CI is true (as tests/toolbin.py does).
Import the fixtures into a test module with ``from objectstore import *``.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs
import pytest
from toolbin import REPO_ROOT, in_ci

BUILD_SCRIPT = REPO_ROOT / "hack" / "objectstore" / "build.sh"
READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 3.0  # then SIGKILL: the data dirs are temporary anyway
REGION = "us-east-1"


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str


ADMIN = Credentials("WFTADMINKEY0000000001", "wft-admin-secret-0000000000000000000001")
NO_RIGHTS = Credentials("WFTNORIGHTS000000002", "wft-norights-secret-00000000000000000002")
# Allowed to read only this bucket, which the tests never create: everything else is denied.
NO_RIGHTS_BUCKET = "not-the-test-bucket"
MIN_FREE_BYTES = 2 << 30


@functools.cache
def objectstore_bin_dir() -> Path | None:
    override = os.environ.get("WHISPERFT_OBJECTSTORE_BIN")
    if override:
        return Path(override)
    proc = subprocess.run(
        ["bash", str(BUILD_SCRIPT), "--print-bin-dir"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    out = proc.stdout.strip()
    return Path(out) if proc.returncode == 0 and out else None


def require_server(name: str) -> Path:
    """The built `weed` / `fake-gcs-server`, else skip (developer machine) or fail (CI=true)."""
    directory = objectstore_bin_dir()
    if directory is not None and (directory / name).is_file():
        return directory / name
    message = (
        f"{name} is not built (looked in {directory}). Build it with: "
        f"bash hack/objectstore/build.sh {name} (or `make objectstore`)."
    )
    if in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(what: str, proc: subprocess.Popen[bytes], log: Path, probe: object) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    last: BaseException | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if probe():  # type: ignore[operator]
                return
        except Exception as exc:  # not up yet
            last = exc
        time.sleep(0.3)
    raise RuntimeError(
        f"{what} not ready after {READY_TIMEOUT_S}s ({last}):\n{log.read_text()[-4000:]}"
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


@dataclass(frozen=True)
class S3Server:
    endpoint: str  # http://127.0.0.1:PORT
    host: str  # 127.0.0.1:PORT
    admin: Credentials
    no_rights: Credentials
    log: Path

    def env(self, creds: Credentials | None = None, endpoint: str | None = None) -> dict[str, str]:
        """The environment a trainer gets to reach this server as `creds` (default ADMIN)."""
        c = creds or self.admin
        return {
            "AWS_ENDPOINT_URL_S3": endpoint or self.endpoint,
            "AWS_ACCESS_KEY_ID": c.access_key,
            "AWS_SECRET_ACCESS_KEY": c.secret_key,
            "AWS_REGION": REGION,
        }

    def filesystem(self) -> pafs.S3FileSystem:
        """An admin filesystem for test setup (creating buckets, planting objects)."""
        return pafs.S3FileSystem(
            access_key=self.admin.access_key,
            secret_key=self.admin.secret_key,
            endpoint_override=self.host,
            scheme="http",
            region=REGION,
            allow_bucket_creation=True,
        )

    def create_bucket(self, name: str) -> None:
        self.filesystem().create_dir(name)


def _s3_config(path: Path) -> None:
    identities = [
        {
            "name": "wft-admin",
            "credentials": [{"accessKey": ADMIN.access_key, "secretKey": ADMIN.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        },
        {
            "name": "wft-no-rights",
            "credentials": [{"accessKey": NO_RIGHTS.access_key, "secretKey": NO_RIGHTS.secret_key}],
            "actions": [f"Read:{NO_RIGHTS_BUCKET}"],
        },
    ]
    path.write_text(json.dumps({"identities": identities}, indent=1))


@contextlib.contextmanager
def run_seaweedfs(workdir: Path) -> Iterator[S3Server]:
    """`weed server -s3` on free loopback ports in `workdir`; stopped on exit."""
    weed = require_server("weed")
    data = workdir / "data"
    data.mkdir(parents=True, exist_ok=True)
    # Short of space, weed grows no volume and answers every write with an opaque
    # INTERNAL_FAILURE ("Not enough data nodes found!" in its log): say so up front.
    free = shutil.disk_usage(data).free
    if free < MIN_FREE_BYTES:
        pytest.fail(
            f"{free >> 20} MiB free under {data}: the S3 server needs {MIN_FREE_BYTES >> 20} MiB "
            "(64 MiB volumes, checkpoints of tiny.en); free some disk (old /tmp/pytest-of-*)"
        )
    config = workdir / "s3.json"
    _s3_config(config)
    p = {
        k: free_port()
        for k in ("master", "mgrpc", "volume", "vgrpc", "filer", "fgrpc", "s3", "s3grpc")
    }
    args = [
        str(weed), "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={data}",
        f"-master.port={p['master']}", f"-master.port.grpc={p['mgrpc']}",
        f"-volume.port={p['volume']}", f"-volume.port.grpc={p['vgrpc']}",
        f"-filer.port={p['filer']}", f"-filer.port.grpc={p['fgrpc']}",
        "-master.volumeSizeLimitMB=64", "-volume.max=0", "-volume.minFreeSpace=256MiB",
        "-s3", f"-s3.port={p['s3']}", f"-s3.port.grpc={p['s3grpc']}", f"-s3.config={config}",
        "-s3.port.iceberg=0", "-s3.port.lance=0", "-s3.autoCreateBucket=false",
    ]  # fmt: skip
    log = workdir / "weed.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=workdir)
    server = S3Server(
        endpoint=f"http://127.0.0.1:{p['s3']}",
        host=f"127.0.0.1:{p['s3']}",
        admin=ADMIN,
        no_rights=NO_RIGHTS,
        log=log,
    )
    try:
        # Ready when the S3 gateway answers a signed bucket listing as the admin.
        _wait(
            "weed server -s3",
            proc,
            log,
            lambda: server.filesystem().get_file_info(pafs.FileSelector("")) is not None,
        )
        yield server
    finally:
        _stop(proc)


@dataclass(frozen=True)
class GcsServer:
    endpoint: str
    host: str
    log: Path

    def env(self, endpoint: str | None = None) -> dict[str, str]:
        return {
            "STORAGE_EMULATOR_HOST": endpoint or self.endpoint,
            "GOOGLE_CLOUD_PROJECT": "whisperft-test",
        }

    def filesystem(self) -> pafs.GcsFileSystem:
        return pafs.GcsFileSystem(
            anonymous=True, endpoint_override=self.host, scheme="http", project_id="whisperft-test"
        )

    def create_bucket(self, name: str) -> None:
        self.filesystem().create_dir(name)


@contextlib.contextmanager
def run_fake_gcs(workdir: Path) -> Iterator[GcsServer]:
    binary = require_server("fake-gcs-server")
    port = free_port()
    host = f"127.0.0.1:{port}"
    storage = workdir / "gcs"
    storage.mkdir(parents=True, exist_ok=True)
    args = [
        str(binary), "-scheme", "http", "-host", "127.0.0.1", "-port", str(port),
        "-backend", "filesystem", "-filesystem-root", str(storage),
        "-public-host", host, "-external-url", f"http://{host}", "-log-level", "warn",
    ]  # fmt: skip
    log = workdir / "fake-gcs.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=workdir)

    def probe() -> bool:
        with urllib.request.urlopen(f"http://{host}/storage/v1/b", timeout=2) as r:
            return bool(r.status == 200)

    try:
        _wait("fake-gcs-server", proc, log, probe)
        yield GcsServer(endpoint=f"http://{host}", host=host, log=log)
    finally:
        _stop(proc)


class FlakyProxy:
    """TCP forwarder to `target`; `cut(after_bytes, connections)` makes it drop connections.

    While a cut is armed, a connection that has sent more than `after_bytes`
    upstream (counted from when the cut was armed) is reset (RST) on both sides,
    until `connections` of them have been cut (None: every one, forever).
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._lock = threading.Lock()
        self._after: int | None = None
        self._remaining: int | None = 0
        self._armed_at = 0  # generation
        self.cuts = 0
        self.bytes_up = 0
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._server.getsockname()[1])
        self._closed = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cut(self, after_bytes: int, connections: int | None) -> None:
        with self._lock:
            self._after, self._remaining = after_bytes, connections
            self._armed_at += 1

    def heal(self) -> None:
        with self._lock:
            self._after, self._remaining = None, 0

    def close(self) -> None:
        self._closed = True
        self._server.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            state = {"gen": -1, "sent": 0}
            threading.Thread(
                target=self._pump, args=(client, upstream, state, True), daemon=True
            ).start()
            threading.Thread(
                target=self._pump, args=(upstream, client, state, False), daemon=True
            ).start()

    def _should_cut(self, state: dict[str, int], n: int) -> bool:
        with self._lock:
            self.bytes_up += n
            if self._after is None or self._remaining == 0:
                return False
            if state["gen"] != self._armed_at:
                state["gen"], state["sent"] = self._armed_at, 0
            state["sent"] += n
            if state["sent"] <= self._after:
                return False
            if self._remaining is not None:
                self._remaining -= 1
            self.cuts += 1
            return True

    @staticmethod
    def _reset(*socks: socket.socket) -> None:
        for s in socks:
            with contextlib.suppress(OSError):
                s.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                )
            with contextlib.suppress(OSError):
                s.close()

    def _pump(
        self, src: socket.socket, dst: socket.socket, state: dict[str, int], up: bool
    ) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if up and self._should_cut(state, len(data)):
                    self._reset(src, dst)
                    return
                dst.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with run_seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server


@pytest.fixture(scope="session")
def gcs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GcsServer]:
    with run_fake_gcs(tmp_path_factory.mktemp("fake-gcs")) as server:
        yield server


def _proxy(host: str) -> Iterator[FlakyProxy]:
    h, port = host.rsplit(":", 1)
    proxy = FlakyProxy((h, int(port)))
    try:
        yield proxy
    finally:
        proxy.close()


@pytest.fixture
def s3_proxy(s3_server: S3Server) -> Iterator[FlakyProxy]:
    yield from _proxy(s3_server.host)


@pytest.fixture
def gcs_proxy(gcs_server: GcsServer) -> Iterator[FlakyProxy]:
    yield from _proxy(gcs_server.host)


@pytest.fixture
def storage_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """A monkeypatch with the storage variables of the outer environment cleared, fast retries."""
    for name in (
        "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ROLE_ARN", "STORAGE_EMULATOR_HOST",
        "WHISPERFT_GCS_ENDPOINT", "GOOGLE_APPLICATION_CREDENTIALS",
    ):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WHISPERFT_STORAGE_RETRY_BASE_S", "0.05")
    monkeypatch.setenv("WHISPERFT_STORAGE_RETRY_MAX_S", "0.2")
    monkeypatch.setenv("WHISPERFT_STORAGE_REQUEST_TIMEOUT_S", "20")
    yield monkeypatch


__all__ = [
    "ADMIN",
    "NO_RIGHTS",
    "FlakyProxy",
    "GcsServer",
    "S3Server",
    "gcs_proxy",
    "gcs_server",
    "s3_proxy",
    "s3_server",
    "storage_env",
]
