"""Benchmark: the memory planner's error, measured on the CPU -> bench/results/planner.json.

Three measurements, each against the planner's prediction (relative error
``(predicted - measured) / measured`` per component):

- model states (``planner_engine``, ``planner_model_states``): the bytes real
  DeepSpeed engines hold (CPU accelerator, gloo, 1 and 2 workers, ZeRO 0-3, fp32
  and bf16, frozen encoder, LoRA), counted from their tensors at every moment
  where DeepSpeed holds the most; each component at its own peak, the total at
  the largest moment;
- DeepSpeed's own estimators (``estimate_zero2_model_states_mem_needs`` and
  ``estimate_zero3_model_states_mem_needs``) next to the planner for tiny ...
  large-v3, from parameter counts alone;
- activations (``planner_activations``): one forward and backward of Whisper
  from the torch profiler's memory events, split at the encoder's and decoder's
  boundaries.

Usage: ``python bench/planner.py [--quick]``; ``--quick`` is a subset (tiny
only) for the integration test. Writes the JSON and the Markdown table in
bench/README.md (between the ``planner-table`` markers, ``planner_report``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from planner_activations import ACT_KEYS, run_activations
from planner_common import HERE, TARGET, _commit
from planner_model_states import STATE_KEYS, check_deepspeed_defaults, run_estimators, run_states
from planner_report import markdown, worst, write_readme

RESULTS = HERE / "results" / "planner.json"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="a subset (tiny only), for the tests")
    ap.add_argument("--out", type=Path, default=RESULTS, help="result file")
    ap.add_argument("--no-readme", action="store_true", help="leave bench/README.md alone")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t0:6.0f} s] {msg}", flush=True)

    defaults = check_deepspeed_defaults()
    states = run_states(args.quick, log)
    estimators = run_estimators()
    acts = run_activations(args.quick, log)
    record: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
        },
        "commit": _commit(),
        "command": " ".join(
            ["python", "bench/planner.py", *(argv if argv is not None else sys.argv[1:])]
        ),
        "quick": args.quick,
        "target": TARGET,
        "deepspeed_defaults": defaults,
        "model_states": states,
        "estimators": estimators,
        "activations": acts,
    }
    record["summary"] = {
        "states_worst": worst(states, STATE_KEYS),
        "activations_worst_component": worst(acts, ACT_KEYS[:-1]),
        "activations_worst_total": worst(acts, ("total",)),
    }
    record["seconds"] = round(time.perf_counter() - t0, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    table = markdown(record)
    if not args.no_readme:
        write_readme(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
