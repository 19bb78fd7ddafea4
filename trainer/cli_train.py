"""`whisperft train`: run one fine-tune from a TrainConfig file."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import yaml

from whisperft.trainer.config import ConfigError, TrainConfig

EPILOG = """\
The config file is the TrainConfig YAML (or JSON) that the operator also writes
into its ConfigMap; every key and default is listed by `whisperft train
--print-default-config`. Sections:
  model     name (bundled:tiny.en, bundled:base, ct2:DIR, HF dir or hub id), language, task
  data      format (commonvoice|hf|manifest), path (dir or bundled:en / bundled:sw), splits,
            duration and label-length filters, example limits, feature cache dir
  training  max_steps or epochs, batch_size_per_worker, grad_accum, learning_rate, warmup,
            schedule, precision, freeze_encoder, gradient_checkpointing, spec_augment,
            deepspeed {stage 0-3, offload_optimizer, offload_params, overrides},
            eval_every, save_every, keep_checkpoints, max_new_tokens
  scaling   workers, use_gpu, cpus_per_worker, gpus_per_worker, max_failures
  run       name, storage_path (checkpoints; a new run with the same name resumes), output_dir

Outputs in run.output_dir: model/ (HF format), results.json, training.png, hypotheses.json.

Examples:
  whisperft train --config examples/demo.yaml
  whisperft train --config my.yaml --set training.max_steps=20 --set scaling.workers=1
  whisperft train --config /etc/whisperft/train.yaml --ray-address auto   # inside a RayJob
"""


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "train",
        help="fine-tune Whisper with Ray Train + DeepSpeed (local Ray or an existing cluster)",
        description="Fine-tune Whisper from a TrainConfig file on a local Ray or an existing Ray cluster.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--config",
        "-c",
        metavar="FILE",
        help="TrainConfig YAML/JSON (defaults apply to what it omits)",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one value, e.g. training.max_steps=50 (YAML-parsed; repeatable)",
    )
    p.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="join this Ray cluster ('auto' inside a RayJob); default: start a local Ray",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")
    p.add_argument(
        "--print-default-config", action="store_true", help="print the full default config and exit"
    )
    p.add_argument(
        "--dry-run", action="store_true", help="validate the config, print it resolved, and exit"
    )
    p.set_defaults(func=run_command)


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. training.max_steps=50")
        node = raw
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {item!r}: {part} is not a section")
            node = child
        node[parts[-1]] = yaml.safe_load(value)
    return raw


def load_config(path: str | None, overrides: list[str]) -> TrainConfig:
    base = TrainConfig.load(path).model_dump(mode="json", exclude_unset=True) if path else {}
    if path is None and not overrides:
        return TrainConfig()
    return TrainConfig.from_dict(apply_overrides(base, overrides), source=path or "--set")


def run_command(args: argparse.Namespace) -> int:
    if args.print_default_config:
        sys.stdout.write(TrainConfig().to_yaml())
        return 0
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.dry_run:
        sys.stdout.write(cfg.to_yaml())
        return 0
    from whisperft.trainer.data.errors import DataError
    from whisperft.trainer.main import run
    from whisperft.trainer.model.errors import ModelError

    try:
        results = run(cfg, ray_address=args.ray_address, progress=not args.no_progress)
    except (DataError, ModelError) as exc:
        # Bad input found before any worker starts: the message names it.
        print(f"error: {exc}", file=sys.stderr)
        return 2
    before, after = results.get("wer_before"), results.get("wer_after")
    print()
    if before is not None and after is not None:
        print(f"WER {before:.2%} -> {after:.2%} on held-out split '{cfg.data.test_split}'")
    print(f"job wall time: {results['job_wall_s']:.0f} s")
    print(f"model:   {results['final_model']}")
    print(f"results: {cfg.run.output_dir}/results.json")
    if "plot" in results:
        print(f"plot:    {results['plot']}")
    print(json.dumps({k: results[k] for k in ("wer_before", "wer_after", "job_wall_s")}))
    return 0
