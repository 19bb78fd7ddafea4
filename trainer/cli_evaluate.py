"""``whisperft evaluate``: word error rate of a model on one split of a dataset."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

FORMATS = ("commonvoice", "hf", "manifest", "hub")


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="transcribe a dataset split and print its word error rate",
        description=(
            "Transcribe one split with batched greedy decoding and print the word error rate "
            "after Whisper-style normalisation. MODEL is bundled:tiny.en, bundled:base, ct2:PATH, "
            "a local Hugging Face directory or a hub id; DATA is bundled:en, bundled:sw or a path."
        ),
    )
    parser.add_argument("--model", required=True, metavar="REF", help="model reference")
    parser.add_argument(
        "--engine",
        choices=("hf", "ct2"),
        default="hf",
        help="hf: transformers (default); ct2: CTranslate2, what faster-whisper runs (MODEL is "
        "then a directory made by `whisperft export --format ct2`)",
    )
    parser.add_argument(
        "--data", required=True, metavar="DIR", help="dataset directory or bundled:LANG"
    )
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="commonvoice",
        help="dataset layout; hub: DATA is a Hugging Face dataset id (or a local hub-layout repo)",
    )
    parser.add_argument("--config", default=None, help="hub only: the dataset's config (subset)")
    parser.add_argument("--revision", default=None, help="hub only: a branch, tag or commit")
    parser.add_argument(
        "--streaming",
        action="store_true",
        help="hub only: read the split as a stream (with --limit, only that many rows)",
    )
    parser.add_argument("--split", default="test", help="split to evaluate (default: test)")
    parser.add_argument(
        "--language",
        default=None,
        help="language code (e.g. en, sw); default: the one a whisperft-trained model was trained "
        "under, else a multilingual model detects it per utterance; English-only models use en",
    )
    parser.add_argument("--task", choices=("transcribe", "translate"), default="transcribe")
    parser.add_argument("--batch-size", type=int, default=8, metavar="N")
    parser.add_argument(
        "--limit", type=int, default=None, metavar="N", help="first N usable utterances"
    )
    parser.add_argument(
        "--max-new-tokens", type=int, default=128, metavar="N", help="decode cap per utterance"
    )
    parser.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default="auto",
        help=(
            "hf engine on the CPU: bf16 decodes under bf16 autocast; auto (default) does so "
            "where the CPU multiplies bf16 in hardware (AMX, AVX512-BF16), else fp32"
        ),
    )
    parser.add_argument(
        "--json", dest="json_out", default=None, metavar="OUT", help="write the full result here"
    )
    parser.set_defaults(func=run)


def _language(requested: str | None, multilingual: bool, model: str) -> str | None:
    from whisperft.trainer.metrics import ENGLISH
    from whisperft.trainer.model import ModelError

    if multilingual:
        return requested
    if requested is not None and requested.lower() not in ENGLISH:
        raise ModelError(
            f"{model} is an English-only model; it cannot transcribe language {requested!r}"
        )
    return "en"


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """Run the evaluation and return the JSON-ready result."""
    from whisperft.trainer.data import HubOptions, read_split
    from whisperft.trainer.metrics import normalizer_for, score_texts
    from whisperft.trainer.model import load_model
    from whisperft.trainer.transcribe import transcribe

    if (
        args.batch_size < 1
        or (args.limit is not None and args.limit < 1)
        or args.max_new_tokens < 1
    ):
        raise ValueError("--batch-size, --limit and --max-new-tokens must be positive")
    started = time.monotonic()
    engine = getattr(args, "engine", "hf")
    precision: str | None = None
    if engine == "ct2":
        from whisperft.trainer.ct2_transcribe import load_ct2, transcribe_ct2

        ct2 = load_ct2(args.model)
        multilingual, model_path = ct2.multilingual, ct2.path
        gen: dict[str, Any] = ct2.generation
        label_length = ct2.label_length
    else:
        loaded = load_model(args.model)
        multilingual, model_path = loaded.multilingual, loaded.path
        gen = loaded.model.generation_config.to_dict()
        tokenizer = loaded.processor.tokenizer

        def label_length(text: str) -> int:
            return len(tokenizer(text).input_ids)

    # A model whisperft exported decodes under the token it was trained with, and is
    # scored in the speech's own language (which may have no token of its own).
    trained_token = gen.get("language") if multilingual else None
    language = _language(args.language or trained_token, multilingual, args.model)
    speech_language = args.language or gen.get("whisperft_language") or language
    hub = (
        HubOptions(config=args.config, revision=args.revision, streaming=args.streaming)
        if args.format == "hub"
        else None
    )
    split = read_split(
        args.format,
        args.data,
        args.split,
        label_length=label_length,
        limit=args.limit,
        hub_options=hub,
    )
    decode_started = time.monotonic()
    audios = [example.audio for example in split.examples]
    if engine == "ct2":
        result = transcribe_ct2(
            ct2,
            audios,
            language=language,
            task=args.task,
            batch_size=args.batch_size,
            max_new_tokens=args.max_new_tokens,
        )
    else:
        from whisperft.trainer.precision import autocast, cpu_fast_bf16, resolve

        precision = resolve(
            getattr(args, "precision", "auto"), cuda=False, gpu_bf16=False, cpu_bf16=cpu_fast_bf16()
        )
        with autocast(precision):
            result = transcribe(
                loaded.model,
                loaded.processor,
                audios,
                language=language,
                task=args.task,
                batch_size=args.batch_size,
                max_new_tokens=args.max_new_tokens,
                progress=sys.stderr.isatty(),
            )
    references = [example.sentence for example in split.examples]
    normalise = normalizer_for(speech_language)
    scores = score_texts(references, result.texts, speech_language)
    return {
        "model": args.model,
        "engine": engine,
        "precision": precision,  # None for ct2 (its compute type is the export's)
        "model_path": str(model_path),
        "multilingual": multilingual,
        "data": args.data,
        "source": split.source,
        "format": args.format,
        "split": args.split,
        "language": speech_language,
        "language_token": language,
        "task": args.task,
        "normalizer": type(normalise).__name__,
        "wer": scores.wer,
        "cer": scores.cer,
        "n_utterances": len(references),
        "skipped": dict(sorted(split.skipped.items())),
        "capped": result.capped,
        "max_new_tokens": args.max_new_tokens,
        "decode_seconds": round(time.monotonic() - decode_started, 2),
        "seconds": round(time.monotonic() - started, 2),
        "utterances": [
            {
                "id": example.meta.get("id", str(index)),
                "speaker": example.meta.get("speaker", ""),
                **{k: example.meta[k] for k in ("gender", "accents") if example.meta.get(k)},
                "reference": example.sentence,
                "hypothesis": hypothesis,
                "reference_normalized": normalise(example.sentence).strip(),
                "hypothesis_normalized": normalise(hypothesis).strip(),
            }
            for index, (example, hypothesis) in enumerate(
                zip(split.examples, result.texts, strict=True)
            )
        ],
    }


def summary_line(result: dict[str, Any]) -> str:
    skipped = result["skipped"]
    skipped_text = (
        f"{sum(skipped.values())} skipped ({', '.join(f'{k}={v}' for k, v in skipped.items())})"
        if skipped
        else "0 skipped"
    )
    cer = f", CER {100 * result['cer']:.2f}%" if result.get("cer") is not None else ""
    return (
        f"WER {100 * result['wer']:.2f}%{cer} on {result['n_utterances']} utterances "
        f"[{result['model']} | {result['data']}:{result['split']} | language {result['language'] or 'auto'}]: "
        f"{skipped_text}, {result['capped']} capped decodes, {result['seconds']:.1f} s"
    )


def quiet_transformers() -> None:
    """The CLI prints one result line; transformers' per-call warnings and bars would bury it."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def run(args: argparse.Namespace) -> int:
    from whisperft.trainer.data import DataError
    from whisperft.trainer.model import ModelError

    quiet_transformers()
    try:
        result = evaluate(args)
    except (ModelError, DataError, ValueError) as exc:
        print(f"whisperft evaluate: error: {exc}", file=sys.stderr)
        return 2
    print(summary_line(result))
    if args.json_out:
        out = Path(args.json_out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"wrote {out}")
    return 0
