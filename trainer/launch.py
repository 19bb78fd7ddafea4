"""Where the workers run: Ray actors on a Ray cluster, or this very process.

One worker on one machine gains nothing from a Ray cluster: the driver, Ray's
GCS and raylet, Ray Train's controller and its helper actors and the worker
are a dozen processes, three of them importing torch. Measured for the demo's
frozen-encoder job on the 2-core development machine: 7.7 GB summed RSS (6.0
GB PSS) against 3.1 GB for the Hugging Face recipe's single process, and 15 s
of start-up. So a local run of one worker uses Ray Train's local mode
(``ScalingConfig(num_workers=0)``: the same ``TorchTrainer`` and training
function, called in this process); two or more workers, ``--launch ray`` and
every run inside a RayJob (``--ray-address``) start or join a Ray cluster.

What the in-process run gives up, and what stands in for it:
- Ray Train persists a reported checkpoint into the run directory; its local
  mode only records it, so the worker writes its checkpoint there itself
  (``Worker.save``), in the same layout, committed by one rename.
- Ray Train retries a failed worker (``max_failures``); in-process, a failure
  ends the command, and running it again resumes from the last checkpoint.
- SIGTERM: the handler is installed here, in the main thread, where the loop runs.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from typing import Literal

from whisperft.trainer.config import ConfigError

Launch = Literal["auto", "ray", "in-process"]
LAUNCHES: tuple[Launch, ...] = ("auto", "ray", "in-process")

# What torch.distributed's env:// rendezvous reads; Ray Train's local mode sets up a
# one-rank process group from them (collectives then work as on a cluster).
_RANK_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def in_process(launch: str, *, ray_address: str | None, workers: int) -> bool:
    """Whether this run trains in this process (``launch`` resolved), or a ConfigError."""
    if launch not in LAUNCHES:
        raise ConfigError(f"--launch {launch!r}: expected one of {', '.join(LAUNCHES)}")
    if launch == "in-process":
        if ray_address:
            raise ConfigError("--launch in-process cannot join a Ray cluster (--ray-address)")
        if workers != 1:
            raise ConfigError(
                f"--launch in-process runs one worker; spec.resources.workers asks for "
                f"{workers} (use --launch ray, or --set spec.resources.workers=1)"
            )
        return True
    return launch == "auto" and not ray_address and workers == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def single_rank_env() -> Iterator[None]:
    """torch.distributed's env:// variables for a one-rank group on loopback, for the
    duration of an in-process run (values already set, by torchrun say, are kept)."""
    saved = {k: os.environ.get(k) for k in _RANK_ENV}
    wanted = {
        "RANK": "0",
        "LOCAL_RANK": "0",
        "WORLD_SIZE": "1",
        "LOCAL_WORLD_SIZE": "1",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(_free_port()),
    }
    for k, v in wanted.items():
        os.environ.setdefault(k, v)
    try:
        yield
    finally:
        for k, old in saved.items():
            if old is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = old
