"""whisperft against the Hugging Face Whisper recipe, run alternately on this machine.

Each pair runs ours (`python -m whisperft train examples/demo.yaml --no-progress` with
--set overrides that make it the reference's job) and then the reference
(bench/recipe_reference.py: Seq2SeqTrainer, WhisperFeatureExtractor in datasets.map,
predict_with_generate), A B A B ..., for every variant:

  frozen  ours: freezeEncoder, trainTopEncoderLayers 0, cacheEncoderOutputs (the speed point)
          reference: --freeze-encoder (model.freeze_encoder())
  full    ours: freezeEncoder false, plus the quality recipe (--quality-set, default
          examples/demo.yaml's: 120 steps on batches cut to their clips);
          reference: full fine-tune, 40 steps (the quality point)

Same model (converted bundled tiny.en), data (bundled English corpus), steps, global
batch (ours: workers x batchSizePerWorker, one worker by default, which trains in the
`whisperft train` process itself; the reference: one process), learning rate,
linear schedule, warm-up, greedy decoding cap and batch, and the same scorer
(whisperft.trainer.metrics). Our feature cache starts empty on every run (a fresh
WHISPERFT_CACHE holding only the converted models), as the reference computes its
features every time. Wall time and the peak RSS of the whole process tree (children
included: Ray's processes and workers, where a run has them) are measured here by
polling psutil: summed RSS, which counts a shared library's pages once per process
that maps them, and PSS, which splits them among those processes.

Also: feature extraction and evaluation micro-benchmarks (bench/side_by_side_micro.py),
1 Ray worker against 2 (frozen variant, same global batch) and our job's time split
from its log. Writes side_by_side.json, side_by_side.md, summary.json and PNG plots
to --out (default bench/results/).

  python bench/side_by_side.py                 # 3 pairs at the issue's settings
  python bench/side_by_side.py --quick --out /tmp/sbs   # 1 pair, 2 steps, 8 clips (tests)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from side_by_side_report import machine, timeline, write_outputs

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
FULL = {
    "max_steps": 40,
    "global_batch": 16,
    "workers": 1,
    "learning_rate": 1e-4,
    "warmup_steps": 4,
    "max_train_examples": None,
    "max_eval_examples": 100,
    "eval_batch_size": 16,
    "max_new_tokens": 96,
    "save_every": 20,
}
QUICK = {
    **FULL,
    "max_steps": 2,
    "global_batch": 4,
    "warmup_steps": 1,
    "max_train_examples": 8,
    "max_eval_examples": 4,
    "eval_batch_size": 4,
    "save_every": 0,
}
# The quality point is our own recipe, examples/demo.yaml's: on top of the reference's
# settings it trains 120 steps on batches cut to their clips (trainer/audio_context.py),
# in fp32: bf16 autocast is faster per step but its WER wanders by a few words run to run.
QUALITY_SET = [
    "spec.training.maxSteps=120",
    "spec.training.audioContextMarginSeconds=1.0",
    "spec.training.precision=fp32",
]
OFFLINE = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "RAY_USAGE_STATS_ENABLED": "0",
    "TOKENIZERS_PARALLELISM": "false",
    "PYTHONUNBUFFERED": "1",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="bench/side_by_side.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--pairs", type=int, default=None, help="A B pairs per variant (default 3)")
    ap.add_argument(
        "--variants", default=None, help="comma list of frozen,full (default both; quick: frozen)"
    )
    ap.add_argument("--quick", action="store_true", help="1 pair, frozen only, 2 steps, 8 clips")
    ap.add_argument("--out", default=str(BENCH / "results"), help="result folder")
    ap.add_argument("--work", default=None, help="scratch folder (default: a temp dir, removed)")
    ap.add_argument("--keep-work", action="store_true", help="keep the scratch folder")
    ap.add_argument("--config", default="examples/demo.yaml", help="our WhisperFineTune file")
    ap.add_argument(
        "--scaling",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also run ours with 1 worker per pair (default on; quick: off)",
    )
    ap.add_argument(
        "--quality-set",
        action="append",
        default=None,
        metavar="KEY=VALUE",
        help=(
            "extra --set for our full variant, the quality point's recipe (repeatable; default: "
            "what examples/demo.yaml changes, " + " ".join(QUALITY_SET) + ")"
        ),
    )
    ap.add_argument("--no-micro", action="store_true", help="skip the figure 3/4 micro-benchmarks")
    ap.add_argument("--no-ct2", action="store_true", help="skip the CTranslate2 decode")
    ap.add_argument("--warm-features", action="store_true", help="reuse our feature cache")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per run")
    for k, v in FULL.items():
        ap.add_argument("--" + k.replace("_", "-"), type=type(v) if v else int, default=None)
    args = ap.parse_args(argv)
    base = QUICK if args.quick else FULL
    for k, v in base.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    args.pairs = (args.pairs or 1) if args.quick else (args.pairs or 3)
    args.variants = (args.variants or ("frozen" if args.quick else "frozen,full")).split(",")
    if args.scaling is None:
        args.scaling = not args.quick
    if args.quality_set is None:
        args.quality_set = [] if args.quick else list(QUALITY_SET)
    if args.global_batch % args.workers:
        ap.error("--global-batch must be a multiple of --workers")
    return args


def settings(args: argparse.Namespace) -> dict[str, Any]:
    return {k: getattr(args, k) for k in FULL}


def _null(v: Any) -> str:
    return "null" if v is None else str(v)


def ours_overrides(
    s: dict[str, Any], variant: str, workers: int, name: str, out: Path
) -> list[str]:
    frozen = variant == "frozen"
    sets = {
        "metadata.name": name,
        "spec.output.location": str(out),
        "spec.resources.workers": workers,
        "spec.resources.cpu": "null",  # the machine's cores shared among the workers
        "spec.training.deepspeed.mode": "auto",
        "spec.training.deepspeed.stage": "null",
        "spec.training.precision": "auto",  # bf16 autocast on AMX; the quality point sets fp32
        "spec.training.maxSteps": s["max_steps"],
        "spec.training.batchSizePerWorker": s["global_batch"] // workers,
        "spec.training.gradAccum": 1,
        "spec.training.learningRate": s["learning_rate"],
        "spec.training.warmupSteps": s["warmup_steps"],
        "spec.training.lrSchedule": "linear",
        "spec.training.freezeEncoder": str(frozen).lower(),
        "spec.training.trainTopEncoderLayers": 0,
        "spec.training.cacheEncoderOutputs": str(frozen).lower(),
        "spec.training.evalEvery": 0,
        "spec.training.saveEvery": s["save_every"],
        "spec.training.evalBatchSize": s["eval_batch_size"],
        "spec.training.maxNewTokens": s["max_new_tokens"],
        "spec.dataset.maxTrainExamples": _null(s["max_train_examples"]),
        "spec.dataset.maxEvalExamples": _null(s["max_eval_examples"]),
    }
    return [f"{k}={v}" for k, v in sets.items()]


def reference_args(s: dict[str, Any], variant: str, out_json: Path, out_dir: Path) -> list[str]:
    a = [
        "--out",
        str(out_json),
        "--output-dir",
        str(out_dir),
        "--max-steps",
        str(s["max_steps"]),
        "--batch-size",
        str(s["global_batch"]),
        "--learning-rate",
        str(s["learning_rate"]),
        "--warmup-steps",
        str(s["warmup_steps"]),
        "--lr-scheduler-type",
        "linear",
        "--eval-batch-size",
        str(s["eval_batch_size"]),
        "--max-new-tokens",
        str(s["max_new_tokens"]),
        "--save-steps",
        str(s["save_every"]),
    ]
    for k in ("max_train_examples", "max_eval_examples"):
        if s[k] is not None:
            a += ["--" + k.replace("_", "-"), str(s[k])]
    return a + (["--freeze-encoder"] if variant == "frozen" else [])


def measure(cmd: list[str], env: dict[str, str], log: Path, timeout: float) -> dict[str, Any]:
    """Run ``cmd``; wall time, peak RSS of the process and all its descendants, and
    every output line with the second it arrived (for the time split)."""
    import psutil

    lines: list[tuple[float, str]] = []
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append((time.perf_counter() - t0, line.rstrip("\n")))

    th = threading.Thread(target=reader, daemon=True)
    th.start()
    peak = peak_pss = 0
    root = psutil.Process(proc.pid)
    polls = 0
    while proc.poll() is None:
        total = pss = 0
        try:
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            procs = []
        # PSS (shared pages split among their processes) costs a few ms a process to
        # read, so once a second; RSS (shared pages counted in every process) each poll.
        with_pss = polls % 4 == 0
        polls += 1
        for p in procs:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                if with_pss:
                    info = p.memory_full_info()
                    total += info.rss
                    pss += info.pss
                else:
                    total += p.memory_info().rss
        peak = max(peak, total)
        peak_pss = max(peak_pss, pss)
        if time.perf_counter() - t0 > timeout:
            proc.kill()
            break
        time.sleep(0.25)
    rc = proc.wait()
    wall = time.perf_counter() - t0
    th.join(timeout=10)
    log.write_text("".join(f"{t:9.3f} {line}\n" for t, line in lines))
    return {
        "command": shlex.join(cmd),
        "rc": rc,
        "wall_s": round(wall, 3),
        "peak_rss_mb_tree": round(peak / 2**20, 1),
        "peak_pss_mb_tree": round(peak_pss / 2**20, 1),
        "log": str(log),
        "_lines": lines,
    }


def run_ours(
    args: argparse.Namespace, work: Path, variant: str, pair: int, workers: int
) -> dict[str, Any]:
    name = f"sbs-{variant}-{pair}-{workers}w"
    out = work / name
    env = {**os.environ, **OFFLINE}
    if not args.warm_features:  # an empty feature and encoder cache, the converted models kept
        cache = work / f"cache-{name}"
        cache.mkdir(parents=True, exist_ok=True)
        real = Path(os.environ.get("WHISPERFT_CACHE") or Path.home() / ".cache" / "whisperft")
        (real / "models").mkdir(parents=True, exist_ok=True)
        (cache / "models").symlink_to(real / "models")
        env["WHISPERFT_CACHE"] = str(cache)
    sets = ours_overrides(settings(args), variant, workers, name, out)
    if variant == "full":
        sets += args.quality_set  # later --set wins
    cmd = [sys.executable, "-m", "whisperft", "train", args.config, "--no-progress"]
    for s in sets:
        cmd += ["--set", s]
    r = measure(cmd, env, work / f"{name}.log", args.timeout)
    lines = r.pop("_lines")
    rec: dict[str, Any] = {"side": "ours", "variant": variant, "pair": pair, "workers": workers}
    rec.update(r)
    res_file = out / "results.json"
    if r["rc"] != 0 or not res_file.is_file():
        rec["error"] = "\n".join(line for _, line in lines[-30:])
        return rec
    res = json.loads(res_file.read_text())
    rec.update(
        {
            "test_wer_before": res.get("test_wer_before"),
            "test_wer_after": res.get("test_wer_after"),
            "eval_wer": res.get("eval_wer"),
            "train_samples_per_s": res.get("samples_per_second"),
            "job_wall_s": res.get("job_wall_seconds"),
            "prepare_s": res.get("prepare_seconds"),
            "peak_rss_mb_rank0": res.get("peak_rss_mb_rank0"),
            "steps": res.get("steps"),
            "data": {k: v["n"] for k, v in res.get("data", {}).items()},
            "phases_s": timeline(lines, r["wall_s"], res),
        }
    )
    if not args.keep_work:
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
        shutil.rmtree(work / f"cache-{name}", ignore_errors=True)
    return rec


def run_reference(args: argparse.Namespace, work: Path, variant: str, pair: int) -> dict[str, Any]:
    name = f"ref-{variant}-{pair}"
    out_json = work / f"{name}.json"
    cmd = [
        sys.executable,
        str(BENCH / "recipe_reference.py"),
        *reference_args(settings(args), variant, out_json, work / name),
    ]
    r = measure(cmd, {**os.environ, **OFFLINE}, work / f"{name}.log", args.timeout)
    lines = r.pop("_lines")
    rec: dict[str, Any] = {"side": "reference", "variant": variant, "pair": pair, "workers": 1}
    rec.update(r)
    if r["rc"] != 0 or not out_json.is_file():
        rec["error"] = "\n".join(line for _, line in lines[-30:])
        return rec
    ref = json.loads(out_json.read_text())
    rec.update(
        {
            k: ref.get(k)
            for k in (
                "test_wer_before",
                "test_wer_after",
                "eval_wer",
                "train_samples_per_s",
                "hf_train_samples_per_second",
                "eval_utterances_per_s",
                "peak_rss_mb_self",
                "steps",
                "data",
                "phases_s",
            )
        }
    )
    rec["job_wall_s"] = ref.get("wall_s")
    if not args.keep_work:
        shutil.rmtree(work / name, ignore_errors=True)
    return rec


def run_micro(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    sets = ours_overrides(settings(args), "frozen", args.workers, "sbs-micro", work / "micro")
    out = work / "micro.json"
    cmd = [sys.executable, str(BENCH / "side_by_side_micro.py"), "--out", str(out)]
    cmd += ["--config", args.config, *(["--no-ct2"] if args.no_ct2 else [])]
    for s in sets:
        cmd += ["--set", s]
    r = measure(cmd, {**os.environ, **OFFLINE}, work / "micro.log", args.timeout)
    lines = r.pop("_lines")
    if r["rc"] != 0 or not out.is_file():
        return {"error": "\n".join(line for _, line in lines[-30:]), "command": r["command"]}
    return {**json.loads(out.read_text()), "command": r["command"], "wall_s": r["wall_s"]}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = shlex.join(
        ["python", "bench/side_by_side.py", *(sys.argv[1:] if argv is None else argv)]
    )
    work = Path(args.work or tempfile.mkdtemp(prefix="side-by-side-"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    runs: list[dict[str, Any]] = []

    def done(rec: dict[str, Any]) -> None:
        runs.append(rec)
        wer = rec.get("test_wer_after")
        print(
            f"[side-by-side] {rec['side']:9} {rec['variant']:6} pair {rec['pair']} "
            f"{rec['workers']}w: rc {rec['rc']}, wall {rec['wall_s']:.1f} s, "
            f"peak tree RSS {rec['peak_rss_mb_tree']:.0f} MB, test WER "
            f"{'-' if wer is None else f'{wer:.2%}'}",
            flush=True,
        )

    for pair in range(args.pairs):
        for variant in args.variants:
            done(run_ours(args, work, variant, pair, args.workers))
            done(run_reference(args, work, variant, pair))
        if args.scaling:  # figure 5: the other of 1 and 2 workers, same global batch
            done(run_ours(args, work, "frozen", pair, 2 if args.workers == 1 else 1))
    micro = None if args.no_micro else run_micro(args, work)
    record = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0)),
        "seconds": round(time.time() - t0, 1),
        "command": command,
        "quick": args.quick,
        "machine": machine(),
        "settings": settings(args),
        "variants": args.variants,
        "quality_set": args.quality_set,
        "pairs": args.pairs,
        "scaling": args.scaling,
        "runs": runs,
        "micro": micro,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = write_outputs(record, out)
    print(json.dumps(summary, indent=2))
    if not args.keep_work and not args.work:
        shutil.rmtree(work, ignore_errors=True)
    failed = [r for r in runs if r["rc"] != 0 or "error" in r]
    for r in failed:
        print(
            f"[side-by-side] FAILED {r['side']} {r['variant']} pair {r['pair']}:\n{r.get('error')}"
        )
    return 1 if failed or (micro is not None and "error" in micro) else 0


if __name__ == "__main__":
    raise SystemExit(main())
