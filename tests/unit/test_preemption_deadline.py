"""The SIGTERM deadline: it forces out a worker that never checks, and nothing else.

A process that handled the request (saved, stopped, returned 143) must exit with
its own status: a pending non-daemon deadline timer kept it alive for the whole
grace period and then replaced 143 with 1.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.unit

SCRIPT = textwrap.dedent(
    """
    import os, signal, sys, time
    from whisperft.trainer import preemption
    preemption.install_handler()
    os.kill(os.getpid(), signal.SIGTERM)
    while not preemption.requested():
        time.sleep(0.01)
    preemption.reset()  # the checkpoint is saved: the request is handled
    sys.exit(143)
    """
)


def test_a_handled_request_exits_with_its_own_status_at_once() -> None:
    proc = subprocess.run([sys.executable, "-c", SCRIPT], timeout=20, capture_output=True)
    assert proc.returncode == 143, proc.stderr.decode()[-2000:]


def test_an_exit_before_reset_is_not_held_back_by_the_deadline() -> None:
    script = SCRIPT.replace("preemption.reset()", "pass")
    proc = subprocess.run([sys.executable, "-c", script], timeout=20, capture_output=True)
    assert proc.returncode == 143, proc.stderr.decode()[-2000:]


def test_the_deadline_still_forces_out_a_process_that_never_checks() -> None:
    script = textwrap.dedent(
        """
        import os, signal, time
        from whisperft.trainer import preemption
        preemption.GRACE_S = 0.5
        preemption.install_handler()
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)  # busy elsewhere (loading, exporting): never checks
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], timeout=20, capture_output=True)
    assert proc.returncode == 1
