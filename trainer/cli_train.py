"""`whisperft train FILE`: run a WhisperFineTune resource on this machine (one
worker in this process, more on a local Ray) or, in a RayJob, on the cluster
the operator made for it."""

from __future__ import annotations

import argparse
import signal
import sys
from typing import TYPE_CHECKING, Any

from whisperft.trainer.config import ConfigError, TrainConfig

if TYPE_CHECKING:
    from whisperft.client import FineTune

EPILOG = """\
FILE is a WhisperFineTune resource, the same file `kubectl apply -f` takes
(apiVersion whisperft.io/v1alpha1, kind WhisperFineTune, metadata.name, spec).
`kubectl explain wft.spec` or charts/whisperft/README.md list every field.

Read for one machine:
  spec.resources.workers   workers (CPU workers unless an accelerator is named, then
                           gpusPerWorker GPUs each, which this machine must have); one
                           trains in this process, more on a local Ray cluster (--launch)
  spec.resources.cpu       CPUs per worker (default: the machine's cores shared out)
  spec.dataset.path        a local directory, or bundled:en / bundled:sw
  spec.output.location     where the outputs go (default runs/<metadata.name>);
                           checkpoints in its checkpoints/, and a run started again resumes
  spec.training.deepspeed  explicit stage, or auto: the operator's planner decides (CPU: ZeRO-0 for one worker, else ZeRO-2)
Outputs: model/ (HF format), results.json, training.png, hypotheses.json.

Examples:
  whisperft train examples/demo.yaml
  whisperft train examples/demo.yaml --set spec.training.maxSteps=20 --set spec.resources.workers=1
  whisperft train manifests/examples/minimal.yaml --set spec.resources.accelerator=null --dry-run
Exit status: 0 done, 2 bad input (the file, a value, the data or the model), 1 anything else.
"""


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "train",
        help="run a WhisperFineTune file with Ray Train + DeepSpeed (local Ray or a RayJob's cluster)",
        description="Fine-tune Whisper as a WhisperFineTune file describes, on a local Ray.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", metavar="FILE", help="WhisperFineTune YAML (one document)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one field, e.g. spec.training.maxSteps=50 (value YAML-typed, null unsets; repeatable)",
    )
    p.add_argument(
        "--runtime",
        metavar="FILE",
        help="the runtime the operator resolved (in a RayJob); default: resolve for this machine",
    )
    p.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="join this Ray cluster ('auto' inside a RayJob); default: start a local Ray",
    )
    p.add_argument(
        "--launch",
        choices=("auto", "ray", "in-process"),
        default="auto",
        help=(
            "where the workers run: ray starts a local Ray cluster (or joins --ray-address); "
            "in-process trains one worker in this process (Ray Train's local mode: no Ray "
            "cluster, no worker retries; a rerun resumes). auto (default): in-process for "
            "one local worker, ray otherwise"
        ),
    )
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bars, logs only (the default when stderr is not a terminal)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="validate, print the resolved run (spec and runtime) and exit",
    )
    p.set_defaults(func=run_command)


def load_config(path: str, overrides: list[str], runtime_path: str | None = None) -> TrainConfig:
    """The run a file describes: parsed as strictly as the API server parses it,
    admitted as the operator admits it, resolved for this machine (or by the
    operator's runtime file in a RayJob). The Python API takes the same path."""
    from whisperft.client import FineTune

    return _resolved(FineTune.load(path, overrides), runtime_path)


def _resolved(ft: FineTune, runtime_path: str | None) -> TrainConfig:
    from whisperft.trainer.config import load_runtime

    if runtime_path:
        return TrainConfig.build(ft.resource, load_runtime(runtime_path))
    return ft.local_config()


def _dry_run(args: argparse.Namespace) -> int:
    """Print the resolved run; a file that only this machine cannot run is still valid."""
    from whisperft.client import FineTune

    ft = FineTune.load(args.file, args.overrides)
    try:
        cfg = _resolved(ft, args.runtime)
    except ConfigError as exc:
        sys.stdout.write(ft.to_yaml())
        print(f"note: valid, but not runnable on this machine as it is: {exc}", file=sys.stderr)
        return 0
    sys.stdout.write(cfg.to_yaml())
    return 0


def run_command(args: argparse.Namespace) -> int:
    try:
        if args.dry_run:
            return _dry_run(args)
        cfg = load_config(args.file, args.overrides, args.runtime)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from whisperft.trainer.data.errors import DataError
    from whisperft.trainer.main import run
    from whisperft.trainer.model.errors import ModelError
    from whisperft.trainer.preemption import Preempted
    from whisperft.trainer.storage.errors import StorageError

    try:
        # Bars only on a terminal: in a pod (kubectl logs) each frame would be a line.
        progress = not args.no_progress and sys.stderr.isatty()
        results = run(cfg, ray_address=args.ray_address, progress=progress, launch=args.launch)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Preempted as exc:
        # In-process only (a Ray worker's preemption is Ray Train's failure to handle).
        print(f"stopped: {exc}; the checkpoint is saved, run the same command to resume")
        return 128 + signal.SIGTERM
    except (DataError, ModelError) as exc:
        # Bad input found before any worker starts: the message names it. The
        # operator reads exit status 2 as "do not retry".
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except StorageError as exc:
        # A missing bucket or a denied principal will not heal on a retry; a
        # storage outage (transient, already retried with backoff) may.
        print(f"error: {exc}", file=sys.stderr)
        return 2 if exc.permanent else 1
    before, after = results.get("test_wer_before"), results.get("test_wer_after")
    print()
    if before is not None and after is not None:
        line = f"test WER {before:.2%} -> {after:.2%} on held-out split '{cfg.dataset.test_split}'"
        cer_b, cer_a = results.get("test_cer_before"), results.get("test_cer_after")
        if cer_b is not None and cer_a is not None:
            line += f" (CER {cer_b:.2%} -> {cer_a:.2%})"
        print(line)
    print(f"job wall time: {results['job_wall_seconds']:.0f} s")
    print(f"model:   {results['final_model']}")
    print(f"results: {cfg.runtime.output_dir}/results.json")
    if "plot" in results:
        print(f"plot:    {results['plot']}")
    return 0
