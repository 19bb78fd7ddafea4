"""The Runtime of a local run (`whisperft train FILE` with no `--runtime`): the
resource's own fields read for one machine instead of a cluster.

- `spec.resources.workers` Ray workers; with an accelerator, `gpusPerWorker`
  GPUs each (one Ray Train worker per GPU), which this machine must have;
  `spec.resources.cpu` CPUs per worker (unset: this machine's cores divided
  among the workers, so a single worker uses them all).
- The ZeRO stage: the spec's when explicit; with `mode: auto` the operator's
  own planner decides, against this machine's GPU memory (CPU: ZeRO-0 for
  one worker, ZeRO-2 for more).
- `spec.dataset.path` as a local directory or bundled:en / bundled:sw.
- Outputs in `spec.output.location`, default `runs/<metadata.name>`;
  checkpoints in its `checkpoints/` (a run started again with the same name
  resumes from them). A bucket location (s3://, gs://) holds the same layout
  (`model/`, `ct2/`, `results.json`, `checkpoints/<name>/`); `runs/<name>` is
  then only local scratch.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from kubernetes.utils.quantity import parse_quantity

from whisperft.operator.api.resource import WhisperFineTune
from whisperft.operator.planning.resolve import plan_input
from whisperft.operator.planning.strategy import plan_memory
from whisperft.operator.render.trainconfig import resolved
from whisperft.trainer.config import ConfigError, Runtime
from whisperft.trainer.storage.uri import checkpoint_prefix, is_uri

LOCAL_RUNS_DIR = "runs"


def local_gpus() -> tuple[int, float | None]:
    """GPUs on this machine and the memory of the first, in GiB (torch only if installed)."""
    try:
        import torch
    except ImportError:
        return 0, None
    if not torch.cuda.is_available():
        return 0, None
    n = torch.cuda.device_count()
    return n, torch.cuda.get_device_properties(0).total_memory / 1024**3


def local_cpus() -> int:
    """The cores this process may run on (its affinity mask, e.g. a container's cpuset)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def local_runtime(
    resource: WhisperFineTune,
    *,
    gpus: Callable[[], tuple[int, float | None]] = local_gpus,
    machine_cpus: Callable[[], int] = local_cpus,
) -> Runtime:
    spec = resource.spec
    r = spec.resources
    if spec.dataset.claim_name:
        raise ConfigError(
            f"spec.dataset.claimName: {spec.dataset.claim_name!r} is a claim on a cluster; for a "
            "local run point at the directory instead: --set spec.dataset.claimName=null "
            "--set spec.dataset.path=DIR"
        )
    gpus_each = r.effective_gpus_per_worker
    n_gpus, gpu_gib = gpus() if gpus_each else (0, None)
    workers = r.workers * gpus_each if gpus_each else r.workers
    if gpus_each and n_gpus < workers:
        raise ConfigError(
            f"spec.resources: {r.workers} worker(s) x {gpus_each} GPU(s) on {r.accelerator} need "
            f"{workers} GPUs, this machine has {n_gpus}; for CPU workers use "
            "--set spec.resources.accelerator=null"
        )
    if r.cpu:
        cpus = float(parse_quantity(r.cpu))
        if gpus_each:
            cpus = max(1.0, cpus // gpus_each)
    else:
        # Unset: the machine's cores shared out, so one worker computes on every core.
        cpus = max(1.0, float(machine_cpus() // workers))
    plan = plan_memory(plan_input(spec, gpu_memory_gib=gpu_gib, pod_memory_gib=None))
    if not plan.allowed:
        raise ConfigError("will not fit on this machine: " + "; ".join(plan.notes))
    name = resource.metadata.name
    bucket = spec.output.location if is_uri(spec.output.location) else None
    out = Path(
        f"{LOCAL_RUNS_DIR}/{name}" if bucket or not spec.output.location else spec.output.location
    )
    deepspeed, strategy = resolved(plan)
    return Runtime(
        workers=workers,
        use_gpu=bool(gpus_each),
        cpus_per_worker=cpus,
        deepspeed=deepspeed,
        strategy=strategy,
        data_path=spec.dataset.path,
        storage_path=str(out / "checkpoints"),
        output_dir=str(out),
        output_uri=bucket,
        checkpoint_uri=checkpoint_prefix(bucket, name) if bucket else None,
    )
