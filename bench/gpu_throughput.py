"""Benchmark: training samples/s, MFU, peak memory next to the planner's prediction and
evaluation utterances/s on one GPU -> results/gpu.json. Run it as ``bench/gpu.sh``.

whisper-small and medium (plus large-v3 ZeRO-2 with checkpointing while the time
budget allows), bf16, ZeRO 0 and 2, gradient checkpointing off and on, random
weights from the published dims with the bundled multilingual model's tokenizer,
on the bundled English corpus. Each case goes through the trainer's own code, in
this process as rank 0 of 1: a TrainConfig with a one-GPU runtime,
``trainer.main.prepare_data`` and the Ray Train worker's ``trainer.worker.Worker``
(``build``, ``restore``, ``train_step``, ``evaluate``); trainer.loop's
orchestration (test decoding, checkpoints, export) is left out. FLOPs are counted
in ``whisper_flops.py``; bench/README.md says what each number is.

``--dry-run``: every configuration with tiny dimensions, one step and a short
evaluation each, on the CPU (what the integration test runs).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_memory import Case as MemoryCase
from gpu_memory import predict
from gpu_setup import machine, one_rank, random_model_dir
from planner_common import MIB, _commit, _train_config, rel, single_process_group
from whisper_flops import peak_bf16, train_flops, utilisation

from whisperft.operator.planning.whisper_sizes import SIZES, WhisperDims

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "gpu.json"
FULL = {"small": SIZES["small"], "medium": SIZES["medium"], "large-v3": SIZES["large"]}
DRY = {m: WhisperDims(f"dry-{m}", 64, 2, 2, 2, d.vocab, d.n_mels) for m, d in FULL.items()}
BATCH = {"small": 64, "medium": 32, "large-v3": 16}  # planner: at most 60 GiB
STEPS = {"small": 10, "medium": 6, "large-v3": 4}  # timed, after WARMUP
WARMUP = 2
BUNDLED = ("tiny.en", "base")
TEMPLATE = "bundled:base"  # multilingual: the tokenizer and generation config of 51865 tokens
TORCH_ADAM = {"optimizer": {"params": {"torch_adam": True}}}


@dataclass(frozen=True)
class Case:
    model: str
    stage: int
    ckpt: bool
    batch: int
    steps: int  # timed optimizer steps; 0: evaluation only (the bundled models)

    @property
    def label(self) -> str:
        return f"{self.model} b{self.batch} ZeRO-{self.stage}" + (" ckpt" if self.ckpt else "")


def cases(dry_run: bool) -> tuple[list[Case], list[Case]]:
    """(the grid, what runs while the time budget allows)."""

    def case(m: str, stage: int, ckpt: bool) -> Case:
        return Case(m, stage, ckpt, 2 if dry_run else BATCH[m], 1 if dry_run else STEPS[m])

    grid = [case(m, s, c) for m in ("small", "medium") for s in (0, 2) for c in (False, True)]
    return grid, [case("large-v3", 2, True)]


def config_for(case: Case, model: str, args: argparse.Namespace, overrides: dict[str, Any]) -> Any:
    """The TrainConfig of one case: bf16, explicit batch and checkpointing, one GPU worker."""
    training = {
        "maxSteps": WARMUP + max(case.steps, 1),
        "batchSizePerWorker": case.batch,
        "gradientCheckpointing": case.ckpt,
        "precision": "bf16",
        "evalBatchSize": 4 if args.dry_run else 32,
        "maxNewTokens": 4 if args.dry_run else 128,
        "deepspeed": {"overrides": overrides},
    }
    dataset = {"maxTrainExamples": 8 if args.dry_run else 128}
    dataset["maxEvalExamples"] = 4 if args.dry_run else 64
    return _train_config(
        case.stage,
        model=model,
        training=training,
        dataset=dataset,
        use_gpu=not args.dry_run,
        storage=str(args.work / "runs"),
    )


def build_worker(case: Case, model: str, args: argparse.Namespace) -> tuple[Any, str]:
    """The trainer's Worker, built; torch AdamW where FusedAdam cannot be built (no nvcc)."""
    from whisperft.trainer.main import prepare_data
    from whisperft.trainer.worker import Worker

    optimizer = "as the trainer"
    for overrides in ({}, TORCH_ADAM):
        cfg = config_for(case, model, args, overrides)
        prep = prepare_data(cfg, progress=False)
        run_dir = args.work / "runs" / case.label.replace(" ", "_")
        shutil.rmtree(run_dir, ignore_errors=True)
        job = prep.job(cfg, run_dir, run_dir / "out", progress=False)
        w = Worker(job)
        try:
            w.build()
            return w, optimizer
        except Exception as exc:  # a FusedAdam JIT build needs nvcc and a matching toolkit
            if args.dry_run or overrides or case.stage == 0:
                raise
            optimizer = f"torch AdamW (FusedAdam failed: {type(exc).__name__}: {str(exc)[:200]})"
            print(f"{case.label}: {optimizer}; again with torch_adam", flush=True)
            del w
            gc.collect()
    raise AssertionError("unreachable")


def _sync(cuda: bool) -> None:
    if cuda:
        import torch

        torch.cuda.synchronize()


def run_case(case: Case, model: str, dims: WhisperDims, args: argparse.Namespace) -> dict[str, Any]:
    import torch

    cuda = not args.dry_run
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated() if cuda else 0
    t0 = time.perf_counter()
    with one_rank():
        w, optimizer = build_worker(case, model, args)
        build_s = time.perf_counter() - t0
        shapes: list[tuple[int, int]] = []  # (batch, decoder positions) of every forward
        hook = w.whisper.register_forward_pre_hook(
            lambda _m, _a, kw: shapes.append(tuple(kw["decoder_input_ids"].shape)),
            with_kwargs=True,
        )
        state = w.restore()
        row: dict[str, Any] = {**asdict(case), "label": case.label, "dims": asdict(dims)}
        row.update(optimizer=optimizer, precision=w.precision, build_seconds=round(build_s, 1))
        row["allocated_before_mib"] = round(base / MIB, 1)  # > 0: an earlier case leaked
        if case.steps:
            for _ in range(0 if args.dry_run else WARMUP):
                w.train_step(state)
            _sync(cuda)
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            shapes.clear()
            tic = time.perf_counter()
            losses = [w.train_step(state) for _ in range(case.steps)]
            _sync(cuda)
            seconds = time.perf_counter() - tic
            peak = float(torch.cuda.max_memory_allocated() - base) if cuda else None
            row.update(throughput(case, dims, shapes, seconds, peak, args.peak[1]))
            row["loss"] = round(losses[-1], 4)
        hook.remove()
        tic = time.perf_counter()
        ev = w.evaluate("eval")
        _sync(cuda)
        secs = time.perf_counter() - tic
        row["eval"] = {
            "split": "eval",
            "utterances": ev.n,
            "seconds": round(secs, 2),
            "utterances_per_s": round(ev.n / secs, 2),
            "capped": ev.capped,
            "batch": w.cfg.training.eval_batch_size,
            "max_new_tokens": w.cfg.training.max_new_tokens,
            "wer": round(ev.wer, 4),
        }
        with contextlib.suppress(Exception):
            w.engine.destroy()
        del w, hook, state
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return row


def throughput(
    case: Case,
    dims: WhisperDims,
    shapes: list[tuple[int, int]],
    seconds: float,
    peak: float | None,
    peak_tflops: float | None,
) -> dict[str, Any]:
    """Throughput, FLOPs, utilisation and memory of the timed steps."""
    samples = sum(b for b, _ in shapes)
    ck = case.ckpt
    model = sum(b * train_flops(dims, n, gradient_checkpointing=ck).model for b, n in shapes)
    hw = sum(b * train_flops(dims, n, gradient_checkpointing=ck).hardware for b, n in shapes)
    mean_len = round(sum(b * n for b, n in shapes) / samples)
    sps = samples / seconds
    full = train_flops(FULL[case.model], mean_len, gradient_checkpointing=ck)
    pred = predict(
        dims, MemoryCase(case.model, case.stage, ck, False, case.batch, max(n for _, n in shapes))
    )
    return {
        "timed_samples": samples,
        "train_seconds": round(seconds, 3),
        "samples_per_s": round(sps, 2),
        "label_tokens": {"mean": mean_len, "max": max(n for _, n in shapes)},
        "flops_per_sample": {"model": model / samples, "hardware": hw / samples},
        # the published dims at the same label length and 30 s (equal to the above on a GPU)
        "flops_per_sample_full_size": full.as_dict(),
        "achieved_tflops": round(model / seconds / 1e12, 3),
        "mfu": utilisation(model / samples, sps, peak_tflops),
        "hfu": utilisation(hw / samples, sps, peak_tflops),
        "memory_mib": {
            "measured_peak": round(peak / MIB, 1) if peak is not None else None,
            "predicted_peak": round(pred["peak"] / MIB, 1),
            "predicted_activations": round(pred["activations"] / MIB, 1),
            "error": rel(pred["peak"], peak) if peak is not None else None,
        },
    }


def attempt(case: Case, model: str, dims: WhisperDims, args: argparse.Namespace) -> dict[str, Any]:
    """One case; on a GPU a failure (out of memory, say) is recorded and the grid goes on."""
    try:
        return run_case(case, model, dims, args)
    except Exception as exc:
        if args.dry_run:
            raise
        error = f"{type(exc).__name__}: {str(exc)[:300]}"
    gc.collect()
    import torch

    torch.cuda.empty_cache()
    return {**asdict(case), "label": case.label, "error": error}


def parse(argv: list[str] | None) -> argparse.Namespace:
    fmt = argparse.RawDescriptionHelpFormatter
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=fmt)
    ap.add_argument("--dry-run", action="store_true", help="tiny dimensions, one step, CPU")
    ap.add_argument("--out", type=Path, default=None, help="result file")
    ap.add_argument("--peak-tflops", type=float, help="dense bf16 peak (instead of the table)")
    ap.add_argument(
        "--template",
        default=TEMPLATE,
        help="the random models' tokenizer, processor and generation config: a model "
        "reference, or a folder holding those files and a config.json",
    )
    ap.add_argument(
        "--budget-s", type=float, default=420.0, help="optional cases start before 60%%"
    )
    ap.add_argument("--work", type=Path, help="scratch folder (default: a temporary one)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    os.environ.setdefault("DS_ACCELERATOR", "cpu" if args.dry_run else "cuda")
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    import torch
    from transformers.utils import logging as hf_logging

    from whisperft.trainer.model import ModelError, resolve_model_dir

    hf_logging.disable_progress_bar()
    if not args.dry_run and not torch.cuda.is_available():
        print("no CUDA device: run with --dry-run", file=sys.stderr)
        return 2
    found = peak_bf16(torch.cuda.get_device_name(0)) if torch.cuda.is_available() else None
    args.peak = ("--peak-tflops", args.peak_tflops) if args.peak_tflops else (found or (None, None))
    scratch = args.work is None
    args.work = (args.work or Path(tempfile.mkdtemp(prefix="whisperft-gpu-bench-"))).resolve()
    single_process_group("gloo" if args.dry_run else "nccl")
    t0 = time.perf_counter()
    template = resolve_model_dir(args.template)
    sizes = DRY if args.dry_run else FULL
    rows: list[dict[str, Any]] = []
    bundled: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    grid, optional = cases(args.dry_run)
    for i, case in enumerate([*grid, *optional]):
        late = time.perf_counter() - t0 > 0.6 * args.budget_s
        if i >= len(grid) and late and not args.dry_run:
            skipped.append({"label": case.label, "why": f"past 60% of {args.budget_s:.0f} s"})
            continue
        dims = sizes[case.model]
        model_dir = random_model_dir(dims.name, dims, template, args.work / "models")
        rows.append(attempt(case, str(model_dir), dims, args))
        print(f"[{time.perf_counter() - t0:5.0f} s] {_line(rows[-1])}", flush=True)
    for name in BUNDLED[:1] if args.dry_run else BUNDLED:
        try:
            resolve_model_dir(f"bundled:{name}")
        except ModelError as exc:  # a GPU machine without the bundled packages
            skipped.append({"label": f"bundled:{name}", "why": str(exc)})
            continue
        case = Case(f"bundled:{name}", 0, False, 1, 0)
        bundled.append(attempt(case, case.model, SIZES[name.split(".")[0]], args))
        print(f"[{time.perf_counter() - t0:5.0f} s] {_line(bundled[-1])}", flush=True)
    record = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(args.peak),
        "commit": _commit(),
        "command": " ".join(["bench/gpu.sh", *(argv if argv is not None else sys.argv[1:])]),
        "dry_run": args.dry_run,
        "flops": "whisper_flops.py: model = 3 x forward (MFU); hardware = model + the layers' "
        "forward when checkpointing (HFU); 1500 encoder positions (30 s)",
        "warmup_steps": 0 if args.dry_run else WARMUP,
        "cases": rows,
        "bundled_eval": bundled,
        "skipped": skipped,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    out = args.out or (Path(tempfile.gettempdir()) / "gpu_dry.json" if args.dry_run else RESULTS)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    if scratch:
        shutil.rmtree(args.work, ignore_errors=True)
    print(f"wrote {out} in {record['seconds']} s")
    return 0


def _line(row: dict[str, Any]) -> str:
    if "error" in row:
        return f"{row['label']}: FAILED {row['error']}"
    ev, mem = row["eval"], row.get("memory_mib", {})
    train = (
        f"{row['samples_per_s']} samples/s, MFU {row['mfu']}, peak {mem['measured_peak']} MiB "
        f"(planner {mem['predicted_peak']}), "
        if "samples_per_s" in row
        else ""
    )
    return f"{row['label']}: {train}eval {ev['utterances_per_s']} utt/s (WER {ev['wer']:.2%})"


if __name__ == "__main__":
    raise SystemExit(main())
