"""Benchmark: the demo job (or any WhisperFineTune file) end to end -> bench/results/train_<device>.json.

Records wall time, data-preparation time, training samples/s, peak RSS (and GPU
memory on CUDA) and test WER before/after, with the machine it ran on. On a GPU
machine name the GPU in the resource, e.g.:

    python bench/train_throughput.py --config examples/demo.yaml \
        --set spec.resources.accelerator=nvidia-h100-80gb --set spec.resources.workers=1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from pathlib import Path

from whisperft.trainer.cli_train import load_config
from whisperft.trainer.main import run

KEYS = (
    "test_wer_before",
    "test_wer_after",
    "job_wall_seconds",
    "prepare_seconds",
    "samples_per_second",
    "peak_rss_mb_rank0",
    "peak_gpu_mb_rank0",
    "steps",
    "precision",
)


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--config", default="examples/demo.yaml", help="WhisperFineTune file")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument(
        "--out", default=None, help="result file (default bench/results/train_<cpu|gpu>.json)"
    )
    ap.add_argument("--note", default="", help="what else the machine was doing, cache state")
    args = ap.parse_args()
    cfg = load_config(args.config, args.overrides)
    # A benchmark measures a whole run: an earlier run's checkpoints would be resumed.
    previous = Path(cfg.runtime.storage_path) / cfg.name
    if previous.exists():
        print(f"removing the earlier run's checkpoints: {previous}")
        shutil.rmtree(previous)
    t0 = time.time()
    results = run(cfg, progress=False)
    device = "gpu" if cfg.runtime.use_gpu else "cpu"
    record = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0)),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "config": args.config,
        "overrides": args.overrides,
        **({"note": args.note} if args.note else {}),
        **{k: results.get(k) for k in KEYS},
        "data": {k: v["n"] for k, v in results["data"].items()},
    }
    out = Path(args.out or Path(__file__).parent / "results" / f"train_{device}.json")
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
