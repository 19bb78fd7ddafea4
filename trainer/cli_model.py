"""``whisperft import-model``: convert a model reference into a Hugging Face Whisper directory."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any, get_args


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
    add_export_parser(subparsers)


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


def add_export_parser(subparsers: Any) -> None:
    # The API types, not trainer.export_ct2: the operator image parses this CLI without
    # the trainer stack.
    from whisperft.operator.api.spec import OutputSpec
    from whisperft.operator.api.types import Ct2Quantization

    quantizations = get_args(Ct2Quantization)
    default = OutputSpec.model_fields["ct2_quantization"].default

    parser = subparsers.add_parser(
        "export",
        help="export a fine-tuned model to CTranslate2, the format faster-whisper loads",
        description=(
            "Convert MODEL (a Hugging Face Whisper directory such as a run's output/model, or "
            "any reference import-model takes) with CTranslate2's own converter, adding the "
            "tokenizer, preprocessor and generation config faster-whisper reads. Check the "
            "result with `whisperft evaluate --engine ct2 --model OUT`."
        ),
    )
    parser.add_argument("model", metavar="MODEL", help="model directory or reference")
    parser.add_argument("--format", choices=("ct2",), default="ct2", help="export format")
    parser.add_argument(
        "--quantization",
        choices=quantizations,
        default=default,
        help=f"weight type (default {default}; int8 is smallest and fastest on CPU)",
    )
    parser.add_argument(
        "--out", default=None, metavar="DIR", help="target (default: ct2/ beside MODEL)"
    )
    parser.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    from whisperft.trainer.cli_evaluate import quiet_transformers
    from whisperft.trainer.export_ct2 import export_ct2
    from whisperft.trainer.model import ModelError, resolve_model_dir

    quiet_transformers()
    try:
        src = resolve_model_dir(args.model)
        out = Path(args.out) if args.out else Path(args.model).resolve().parent / "ct2"
        report = export_ct2(src, out, quantization=args.quantization)
    except ModelError as exc:
        print(f"whisperft export: error: {exc}", file=sys.stderr)
        return 2
    print(
        f"{report.out}: CTranslate2 {report.quantization}, model.bin "
        f"{report.model_bytes / 1e6:.1f} MB (source {report.source_bytes / 1e6:.1f} MB), "
        f"{report.seconds:.1f} s",
        file=sys.stderr,
    )
    print(report.out)
    return 0
