"""Preemption: a worker told to stop (spot reclaim, node drain) checkpoints first.

Two ways the news arrives, both ending in `requested()`:
- SIGTERM to the Ray worker process (installed by `install_handler`, the
  workers' process setup hook: Ray runs the training function in a thread, and
  only the main thread may set a signal handler);
- the worker pod's preStop hook (`python -m whisperft.trainer.preemption`),
  which Kubernetes runs before it sends any signal: it creates FLAG in the pod's
  /tmp and waits, within the grace period, until the trainer has saved (DONE).

The training loop checks after every optimizer step, all ranks agree through
one all-reduce, the checkpoint is written, status says so (the operator then
starts the next attempt without spending a restart), and the ranks stop.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType

log = logging.getLogger(__name__)
FLAG_ENV = "WHISPERFT_PREEMPT_FLAG"
DEFAULT_FLAG = "/tmp/whisperft-preempt"
GRACE_S = 110  # preStop waits at most this; the pod's grace period is PREEMPT_GRACE_S

_requested = threading.Event()
_deadline: threading.Timer | None = None


class Preempted(RuntimeError):
    """Raised by every rank once the preemption checkpoint is saved."""


def flag_path() -> Path | None:
    """The preStop flag file; only in pods (the renderer sets FLAG_ENV), never locally."""
    value = os.environ.get(FLAG_ENV)
    return Path(value) if value else None


def done_path() -> Path | None:
    flag = flag_path()
    return flag.with_name(flag.name + ".done") if flag else None


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    if _requested.is_set():
        return
    _requested.set()
    # A worker that is not training (loading, exporting) never checks: it still goes,
    # just later than Ray's own handler would have made it. A daemon, cancelled by
    # reset(): a process that handled the request exits with its own status at once.
    global _deadline
    _deadline = threading.Timer(GRACE_S, lambda: os._exit(1))
    _deadline.daemon = True
    _deadline.start()


def install_handler() -> None:
    """SIGTERM asks for a checkpoint instead of killing the worker at once.

    Ray's worker main loop installs its own SIGTERM handler (exit at once) after the
    process setup hook runs, through ray._private.utils.set_sigterm_handler; that
    call is redirected here so ours is the one that stays. Without that internal
    function (another Ray), ours is set directly and Ray's may replace it: the
    preStop flag still works in pods."""
    try:
        import ray._private.utils as ray_utils

        if hasattr(ray_utils, "set_sigterm_handler"):
            original = ray_utils.set_sigterm_handler
            ray_utils.set_sigterm_handler = lambda handler: original(_on_sigterm)
    except ImportError:
        pass
    try:
        signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread
        log.warning("SIGTERM handler not installed (not the main thread)")


def reset() -> None:
    """Forget an earlier request, handled (saved and stopping) or from a run before."""
    global _deadline
    if _deadline is not None:
        _deadline.cancel()
        _deadline = None
    _requested.clear()


def requested() -> bool:
    flag = flag_path()
    return _requested.is_set() or (flag is not None and flag.exists())


def mark_done() -> None:
    """Tell a waiting preStop hook the checkpoint is saved."""
    done = done_path()
    if done is None:
        return
    try:
        done.write_text(str(time.time()))
    except OSError as exc:
        log.warning("could not write %s: %s", done, exc)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m whisperft.trainer.preemption",
        description="preStop hook: ask the trainer in this pod to checkpoint, wait until it has.",
    )
    p.add_argument("--wait", type=float, default=GRACE_S, help="seconds to wait at most")
    args = p.parse_args(argv)
    flag, done = flag_path() or Path(DEFAULT_FLAG), done_path() or Path(DEFAULT_FLAG + ".done")
    flag.write_text(str(time.time()))
    deadline = time.monotonic() + args.wait
    while time.monotonic() < deadline:
        if done.exists():
            return 0
        time.sleep(0.5)
    print(f"no checkpoint within {args.wait:.0f} s; stopping anyway", file=sys.stderr)
    return 0  # a failing preStop hook only delays the kill; never block it


if __name__ == "__main__":
    raise SystemExit(main())
