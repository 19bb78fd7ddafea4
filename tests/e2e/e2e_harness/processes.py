"""Child processes of the control plane: started in their own process group,
logged to a file each, and always stopped (TERM, then KILL) on teardown."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path


class ProcessDied(RuntimeError):
    """A component exited: waiting on it any longer is pointless."""


# Below Linux's ephemeral range (32768+), so the many outgoing connections of
# the components (and of other jobs on the machine) never take a port we chose
# between choosing it and the component binding it.
_PORT_RANGE = (20000, 32000)


def free_port() -> int:
    """A currently free loopback TCP port outside the ephemeral range."""
    for _ in range(200):
        port = random.randrange(*_PORT_RANGE)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free loopback port in {_PORT_RANGE}")


def wait_for(what: str, check: Callable[[], bool], timeout: float, interval: float = 0.25) -> None:
    """Poll `check` until it returns True; raise TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except ProcessDied:
            raise
        except Exception as e:  # the check is allowed to fail while things start
            last = e
        time.sleep(interval)
    raise TimeoutError(
        f"timed out after {timeout:.0f}s waiting for {what}"
        + (f" (last error: {last})" if last else "")
    )


@dataclass
class Proc:
    name: str
    argv: Sequence[str]
    log_path: Path
    env: dict[str, str] | None = None
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    restarts: int = 0
    stopped: bool = False  # stopped on purpose: not a crash

    def start(self) -> Proc:
        self.stopped = False
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        log.write(f"\n===== start #{self.restarts}: {' '.join(self.argv)}\n".encode())
        log.flush()
        self.popen = subprocess.Popen(
            list(self.argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(self.env or {})},
            start_new_session=True,  # own process group, so stop() reaches its children
        )
        log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None, f"{self.name} was never started"
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def check_alive(self) -> None:
        if not self.stopped and self.popen is not None and self.popen.poll() is not None:
            raise ProcessDied(
                f"{self.name} exited with code {self.popen.returncode}; log tail:\n{self.tail()}"
            )

    def stop(self, timeout: float = 10.0, sig: int = signal.SIGTERM) -> None:
        self.stopped = True
        if self.popen is None or self.popen.poll() is not None:
            return
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            return
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout)

    def kill(self) -> None:
        """SIGKILL, no grace: a crash as the process would see it."""
        self.stop(timeout=5.0, sig=signal.SIGKILL)

    def restart(self) -> Proc:
        self.stop()
        self.restarts += 1
        return self.start()

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def peak_rss_bytes(self) -> int:
        """Peak resident set size of the process (VmHWM), while it runs."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError(f"no VmHWM for {self.name}")
