"""Baseline WER of the bundled models on the bundled corpus, with the project's own evaluation code.

    python bench/baseline.py            # -> bench/results/baseline.md
    python bench/baseline.py --limit 10 # a quick look

Each row is ``whisperft evaluate`` (trainer/cli_evaluate.py) run in-process.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
# (model, data, language, split)
RUNS: list[tuple[str, str, str, str]] = [
    ("bundled:tiny.en", "bundled:en", "en", "test"),
    ("bundled:base", "bundled:en", "en", "test"),
    ("bundled:base", "bundled:sw", "sw", "test"),
]


def per_speaker(result: dict[str, Any]) -> dict[str, tuple[float, int]]:
    from whisperft.trainer.metrics import wer

    groups: dict[str, list[dict[str, str]]] = defaultdict(list)
    for utterance in result["utterances"]:
        described = ", ".join(utterance[k] for k in ("gender", "accents") if utterance.get(k))
        label = f"`{utterance.get('speaker', '')[:8]}`" + (f" ({described})" if described else "")
        groups[label].append(utterance)
    return {
        speaker: (
            wer(
                [u["reference"] for u in items],
                [u["hypothesis"] for u in items],
                result["language"],
            ),
            len(items),
        )
        for speaker, items in sorted(groups.items())
    }


def markdown(results: list[dict[str, Any]], command: str) -> str:
    import torch
    import transformers

    lines = [
        "# Baseline: bundled models on the bundled corpus",
        "",
        "Word error rate after Whisper normalisation (English normaliser for `en`, basic",
        "normaliser otherwise), batched greedy decoding, `max_new_tokens` "
        f"{results[0]['max_new_tokens']}; a *capped* decode hit that cap without ending (looping).",
        "Computed by the project's own evaluation code (`whisperft evaluate`).",
        "",
        f"Command: `{command}`",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on {platform.machine()} CPU, {os.cpu_count()} cores "
        f"(shared), torch {torch.__version__}, transformers {transformers.__version__}.",
        "",
        "| model | language | split | WER | n | capped | skipped | time (s) |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        skipped = sum(r["skipped"].values())
        lines.append(
            f"| {r['model']} | {r['language']} | {r['split']} | {100 * r['wer']:.1f}% | "
            f"{r['n_utterances']} | {r['capped']} | {skipped} | {r['seconds']:.0f} |"
        )
    lines += [
        "",
        "## Per test voice",
        "",
        "| model | language | voice (client_id prefix) | WER | n |",
    ]
    lines.append("| --- | --- | --- | ---: | ---: |")
    for r in results:
        for speaker, (value, n) in per_speaker(r).items():
            lines.append(
                f"| {r['model']} | {r['language']} | {speaker} | {100 * value:.1f}% | {n} |"
            )
    lines += [
        "",
        "Reading it: WER counts insertions too, so it exceeds 100% when a model writes more",
        "words than were spoken. Multilingual base barely knows espeak-ng Swahili: it splits",
        "words into syllables and hyphenated fragments (many insertions), and some decodes",
        "loop until the cap. That gap is what the demo fine-tune is for. The test voices",
        "never appear in the training split (see trainer/corpus/README.md).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from whisperft.trainer.cli_evaluate import evaluate, summary_line

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="first N utterances per run")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--out", type=Path, default=RESULTS / "baseline.md")
    parser.add_argument(
        "--json", type=Path, default=None, help="also write every result (per utterance) here"
    )
    args = parser.parse_args(argv)

    results = []
    for model, data, language, split in RUNS:
        run_args = argparse.Namespace(
            model=model,
            data=data,
            format="commonvoice",
            split=split,
            language=language,
            task="transcribe",
            batch_size=args.batch_size,
            limit=args.limit,
            max_new_tokens=128,
        )
        result = evaluate(run_args)
        print(summary_line(result), flush=True)
        results.append(result)
    command = (
        "python bench/baseline.py"
        + " ".join(["", *(sys.argv[1:] if argv is None else argv)]).rstrip()
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(markdown(results, command), encoding="utf-8")
    print(f"wrote {args.out}")
    if args.json:
        args.json.write_text(
            json.dumps(results, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
