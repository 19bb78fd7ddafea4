"""Benchmark: the planner against ``torch.cuda.max_memory_allocated`` on one GPU -> results/gpu_memory.json.

A small grid - whisper-small and medium (random weights from the published
dims), bf16, ZeRO 0/2/3, gradient checkpointing on/off, LoRA on/off, one
worker - each run for two optimizer steps with the trainer's own DeepSpeed
JSON (``trainer/deepspeed_config.py``). Per case it records, above the memory
allocated before the engine was built:

- ``peak``: the largest allocation of the second step (forward, backward,
  optimizer step), next to the planner's model states + activations (SDPA);
- ``resident``: what stays allocated after the step (weights, optimizer
  state, DeepSpeed's persistent buffers), next to the planner's weights +
  optimizer;
- ``step_peak_above_resident``: the second step's peak minus what was
  resident before it, next to the planner's gradients + activations.

It takes a few minutes on one GPU (the first FusedAdam build excepted). With
``--dry-run`` every configuration is built with tiny dimensions and run for
one step on the CPU (no memory is measured): what the integration test runs.

    python bench/gpu_memory.py            # on a GPU machine
    python bench/gpu_memory.py --dry-run  # anywhere
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from planner_common import _commit, _free_port, _train_config, prepare, rel, whisper

from whisperft.operator.planning.activations import activations
from whisperft.operator.planning.memory import (
    LoraShape,
    PlanInput,
    Strategy,
    model_states,
    model_states_peak,
    state_moments,
)
from whisperft.operator.planning.whisper_sizes import SIZES, WhisperDims

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "gpu_memory.json"
MIB = 2**20
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")
DRY_DIMS = WhisperDims("dry", 64, 2, 2, 2)
BATCH = {"small": 8, "medium": 4}
LABELS = 128


@dataclass(frozen=True)
class Case:
    model: str
    stage: int
    ckpt: bool
    lora: bool
    batch: int
    labels: int = LABELS

    @property
    def label(self) -> str:
        opts = [o for o, on in (("ckpt", self.ckpt), ("lora", self.lora)) if on]
        return f"{self.model} b{self.batch} ZeRO-{self.stage}" + (
            " " + "+".join(opts) if opts else ""
        )


def cases() -> list[Case]:
    return [
        Case(m, stage, ckpt, lora, BATCH[m])
        for m in ("small", "medium")
        for stage in (0, 2, 3)
        for ckpt in (False, True)
        for lora in (False, True)
    ]


def predict(dims: WhisperDims, case: Case) -> dict[str, float]:
    inp = PlanInput(
        model_name=dims.name,
        train_workers=1,
        gpus_per_pod=1,
        batch_per_worker=case.batch,
        gradient_checkpointing=case.ckpt,
        precision="bf16",
        label_tokens=case.labels,
        lora=LoraShape(32, LORA_TARGETS) if case.lora else None,
        lora_mode="on" if case.lora else "off",
    )
    s = Strategy(
        micro_batch=case.batch,
        grad_accum=1,
        gradient_checkpointing=case.ckpt,
        stage=case.stage,
        lora=case.lora,
    )
    # the trainer's CUDA JSON (overlap_comm: two reduce buckets)
    _w, g, _o, _host, _t, _n = model_states(dims, inp, s, cuda=True)
    states = model_states_peak(dims, inp, s, cuda=True)
    step = state_moments(dims, inp, s, cuda=True)[0]["step"]
    a = activations(
        dims,
        batch=case.batch,
        label_tokens=case.labels,
        precision="bf16",
        gradient_checkpointing=case.ckpt,
        frozen_encoder=False,
        lora=case.lora,
    )
    return {
        "peak": states + a.total,
        "resident": step[0] + step[2],
        "step_peak_above_resident": g + a.total,
        "activations": a.total,
    }


def _engine(model: Any, case: Case, cuda: bool) -> tuple[Any, str]:
    """The trainer's DeepSpeed engine; torch AdamW when FusedAdam cannot be built here."""
    import deepspeed

    from whisperft.trainer.deepspeed_config import build_deepspeed_config

    cfg = build_deepspeed_config(
        _train_config(case.stage), world_size=1, precision="bf16", cuda=cuda
    )
    trainable = [p for p in model.parameters() if p.requires_grad]
    try:
        engine, _, _, _ = deepspeed.initialize(model=model, model_parameters=trainable, config=cfg)
        return engine, "as the trainer"
    except Exception as exc:  # a FusedAdam JIT build needs nvcc
        if not cuda:
            raise
        cfg["optimizer"]["params"]["torch_adam"] = True
        engine, _, _, _ = deepspeed.initialize(model=model, model_parameters=trainable, config=cfg)
        return engine, f"torch AdamW (FusedAdam failed: {type(exc).__name__})"


def run_case(case: Case, *, dry_run: bool) -> dict[str, Any]:
    import torch

    cuda = not dry_run
    dims = DRY_DIMS if dry_run else SIZES[case.model]
    device = torch.device("cuda" if cuda else "cpu")
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated() if cuda else 0
    torch.manual_seed(0)
    model = prepare(whisper(dims), frozen_encoder=False, lora=case.lora, ckpt=case.ckpt)
    model.train()
    engine, optimizer = _engine(model, case, cuda)
    b = case.batch if not dry_run else 2
    x = torch.randn(b, dims.n_mels, 3000, device=device, dtype=torch.bfloat16)
    ids = torch.randint(0, dims.vocab - 1, (b, case.labels), device=device)
    steps = 1 if dry_run else 2
    before_step = 0
    t0 = time.perf_counter()
    for i in range(steps):
        if cuda and i == steps - 1:
            torch.cuda.synchronize()
            before_step = torch.cuda.memory_allocated() - base
            torch.cuda.reset_peak_memory_stats()
        out = engine(input_features=x, decoder_input_ids=ids, labels=ids)
        engine.backward(out.loss)
        engine.step()
        del out
    seconds = time.perf_counter() - t0
    keys = ("peak", "resident", "step_peak_above_resident")
    measured: dict[str, float] = {}
    if cuda:
        torch.cuda.synchronize()
        peak = float(torch.cuda.max_memory_allocated() - base)
        measured = {
            "peak": peak,
            "resident": float(torch.cuda.memory_allocated() - base),
            "step_peak_above_resident": peak - before_step,
        }
    pred = predict(dims, replace_batch(case, b))
    del engine, model, x, ids
    gc.collect()
    return {
        "case": asdict(case),
        "label": case.label,
        "optimizer": optimizer,
        "seconds": round(seconds, 1),
        "measured_mib": {k: round(measured[k] / MIB, 1) if k in measured else None for k in keys},
        "predicted_mib": {k: round(pred[k] / MIB, 1) for k in (*keys, "activations")},
        "error": {k: rel(pred[k], measured[k]) if k in measured else None for k in keys},
    }


def replace_batch(case: Case, batch: int) -> Case:
    return Case(case.model, case.stage, case.ckpt, case.lora, batch, case.labels)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--dry-run", action="store_true", help="tiny dimensions, one step, CPU")
    ap.add_argument("--out", type=Path, default=None, help="result file")
    args = ap.parse_args(argv)
    import deepspeed
    import torch

    if not args.dry_run and not torch.cuda.is_available():
        print("no CUDA device: run with --dry-run", file=sys.stderr)
        return 2
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(_free_port()),
        RANK="0",
        LOCAL_RANK="0",
        WORLD_SIZE="1",
        LOCAL_WORLD_SIZE="1",
    )
    deepspeed.init_distributed(dist_backend="gloo" if args.dry_run else "nccl")
    t0 = time.perf_counter()
    rows = []
    for case in cases():
        row = run_case(case, dry_run=args.dry_run)
        rows.append(row)
        print(
            f"[{time.perf_counter() - t0:5.0f} s] {row['label']}: measured {row['measured_mib']}, "
            f"predicted {row['predicted_mib']}",
            flush=True,
        )
    record = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "torch": torch.__version__,
            "deepspeed": deepspeed.__version__,
        },
        "commit": _commit(),
        "command": " ".join(
            ["python", "bench/gpu_memory.py", *(argv if argv is not None else sys.argv[1:])]
        ),
        "dry_run": args.dry_run,
        "cases": rows,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    dry_out = Path(os.environ.get("TMPDIR", "/tmp")) / "gpu_memory_dry.json"
    out = args.out or (dry_out if args.dry_run else RESULTS)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
