"""``whisperft import-model``: convert a model reference into a Hugging Face Whisper directory."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "import-model",
        help="convert a faster-whisper/CTranslate2 or bundled model to Hugging Face format",
        description=(
            "Resolve REF (bundled:tiny.en, bundled:base, ct2:PATH, a local directory or a hub id) "
            "into a Hugging Face Whisper directory, converting CTranslate2 exports once into "
            "the cache ($WHISPERFT_CACHE/models), and print that directory."
        ),
    )
    parser.add_argument("ref", metavar="REF", help="model reference")
    parser.add_argument(
        "--out", default=None, metavar="DIR", help="also copy the result to DIR (must not exist)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from whisperft.trainer.cli_evaluate import quiet_transformers
    from whisperft.trainer.model import ModelError, resolve_model_dir
    from whisperft.trainer.model.ct2_import import REPORT_FILE

    quiet_transformers()
    started = time.monotonic()
    try:
        path = resolve_model_dir(args.ref)
    except ModelError as exc:
        print(f"whisperft import-model: error: {exc}", file=sys.stderr)
        return 2
    report_path = path / REPORT_FILE
    if report_path.is_file():
        report = json.loads(report_path.read_text(encoding="utf-8"))
        dims = report["dims"]
        print(
            f"{args.ref}: {dims['encoder_layers']}+{dims['decoder_layers']} layers, d_model "
            f"{dims['d_model']}, vocab {dims['vocab_size']}, "
            f"{'multilingual' if report['multilingual'] else 'English-only'}, "
            f"from {'/'.join(report['source_dtypes'])} ({len(report['used'])} CTranslate2 variables used, "
            f"{len(report['explained'])} explained); ready in {time.monotonic() - started:.1f} s",
            file=sys.stderr,
        )
    if args.out:
        out = Path(args.out)
        if out.exists():
            print(f"whisperft import-model: error: {out} already exists", file=sys.stderr)
            return 2
        shutil.copytree(path, out)
        path = out
    print(path)
    return 0
