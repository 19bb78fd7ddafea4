"""A Whisper model against its CTranslate2 exports: WER, size and decode speed.

    python bench/export_ct2.py                          # bundled tiny.en -> results/export_ct2.json
    python bench/export_ct2.py --model runs/demo/model  # the demo's fine-tuned model
    python bench/export_ct2.py --limit 20               # a quick look

Each export is ``whisperft export --format ct2 --quantization Q``; each row is
``whisperft evaluate`` (``--engine hf`` or ``--engine ct2``) in its own process,
on the same split, so the WERs are the project's own and comparable. Decode
speed on this shared 2-core machine depends on what else runs; WER and size do not.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def _whisperft(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "whisperft", *args], check=True)


def _evaluate(model: str, engine: str, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    extra = ["--limit", str(args.limit)] if args.limit else []
    _whisperft(
        "evaluate", "--model", model, "--engine", engine, "--data", args.data,
        "--split", args.split, "--json", str(out), *extra,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def _bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="bundled:tiny.en", help="model reference or directory")
    p.add_argument("--data", default="bundled:en")
    p.add_argument("--split", default="test")
    p.add_argument("--limit", type=int, default=None, help="evaluate the first N utterances")
    p.add_argument("--quantization", nargs="+", default=["int8", "float16"])
    p.add_argument("--out", type=Path, default=RESULTS / "export_ct2.json")
    args = p.parse_args(argv)
    from whisperft.trainer.model import resolve_model_dir

    source = resolve_model_dir(args.model)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="whisperft-ct2-bench-") as tmp:
        d = Path(tmp)
        hf = _evaluate(str(source), "hf", args, d / "hf.json")
        rows.append(
            {"engine": "hf", "quantization": "float32", "bytes": _bytes(source), **_pick(hf)}
        )
        for q in args.quantization:
            target = d / f"ct2-{q}"
            started = time.monotonic()
            _whisperft(
                "export", str(source), "--format", "ct2", "--quantization", q, "--out", str(target)
            )
            export_s = time.monotonic() - started
            ct2 = _evaluate(str(target), "ct2", args, d / f"{q}.json")
            rows.append(
                {"engine": "ct2", "quantization": q, "bytes": _bytes(target),
                 "export_seconds": round(export_s, 1), **_pick(ct2)}
            )  # fmt: skip
    base = rows[0]
    for r in rows:
        r["wer_points_vs_hf"] = round(100 * (r["wer"] - base["wer"]), 2)
        r["size_ratio_vs_hf"] = round(r["bytes"] / base["bytes"], 3)
        r["speedup_vs_hf"] = round(r["utterances_per_s"] / base["utterances_per_s"], 2)
    report = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "commit": _commit(),
        "command": " ".join(["python", "bench/export_ct2.py", *(argv or sys.argv[1:])]),
        "model": args.model,
        "data": f"{args.data} [{args.split}]",
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for r in rows:
        print(
            f"{r['engine']:4} {r['quantization']:8} WER {100 * r['wer']:.2f}% "
            f"({r['wer_points_vs_hf']:+.2f} pt)  {r['bytes'] / 1e6:.1f} MB  "
            f"{r['utterances_per_s']:.2f} utt/s (x{r['speedup_vs_hf']})"
        )
    print(f"wrote {args.out}")
    return 0


def _pick(result: dict[str, Any]) -> dict[str, Any]:
    seconds = result["decode_seconds"]
    n = result["n_utterances"]
    return {
        "wer": result["wer"],
        "n": n,
        "capped": result["capped"],
        "decode_seconds": round(seconds, 1),
        "utterances_per_s": round(n / max(seconds, 1e-9), 3),
    }


def _commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip()


if __name__ == "__main__":
    sys.exit(main())
