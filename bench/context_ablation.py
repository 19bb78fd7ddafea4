"""The quality recipe's levers, one at a time: the encoder on the full 30-s window or
on each batch cut to its clips, the number of steps, AdamW's beta2/eps, SpecAugment.

Each case trains bundled tiny.en on the bundled English corpus in this one process
with the trainer's own pieces (feature cache, collator, data order, LR schedule,
the cut of trainer/audio_context.py), bf16 autocast where the CPU has bf16
hardware, batch 16, lr 1e-4 linear with 4 warm-up steps, and scores the held-out
test split decoded from 30-s windows. No DeepSpeed and no Ray: what is compared is
the recipe, not the runtime (bench/side_by_side.py measures the whole job).

    python bench/context_ablation.py                      # the grid in bench/README.md
    python bench/context_ablation.py --case cut:120:0.999 --case full:40:0.98
    python bench/context_ablation.py --quick --out /tmp/ablation.json   # tests

A case is CONTEXT:STEPS:BETA2[:specaug] (eps is 1e-8 with beta2 0.999, else 1e-6).
Writes --out (default bench/results/context_ablation.json).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
GRID = [
    "full:40:0.98",
    "cut:40:0.98",
    "cut:120:0.98",
    "cut:120:0.999",
    "cut:120:0.98:specaug",
    "cut:200:0.999",
]


@dataclass(frozen=True)
class Case:
    context: str  # full | cut
    steps: int
    beta2: float
    spec_augment: bool = False

    @property
    def eps(self) -> float:
        return 1e-8 if self.beta2 >= 0.999 else 1e-6

    @classmethod
    def parse(cls, text: str) -> Case:
        parts = text.split(":")
        if len(parts) not in (3, 4) or parts[0] not in ("full", "cut"):
            raise argparse.ArgumentTypeError(f"{text!r}: expected CONTEXT:STEPS:BETA2[:specaug]")
        if len(parts) == 4 and parts[3] != "specaug":
            raise argparse.ArgumentTypeError(f"{text!r}: the fourth part can only be specaug")
        return cls(parts[0], int(parts[1]), float(parts[2]), len(parts) == 4)


def run_case(case: Case, *, quick: bool) -> dict[str, Any]:
    import torch
    from torch.optim.lr_scheduler import LambdaLR
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    from whisperft.trainer.audio_context import allow_short_inputs, context_frames
    from whisperft.trainer.cli_train import load_config
    from whisperft.trainer.data.collator import collate, micro_batch
    from whisperft.trainer.deepspeed_config import lr_schedule
    from whisperft.trainer.evaluation import decode_features, decode_order, score
    from whisperft.trainer.main import prepare_data
    from whisperft.trainer.precision import autocast, cpu_fast_bf16, resolve

    batch = 4 if quick else 16
    sets = [
        "spec.resources.workers=1",
        f"spec.training.maxSteps={case.steps}",
        f"spec.training.batchSizePerWorker={batch}",
        "spec.training.learningRate=1e-4",
        "spec.training.warmupSteps=4",
    ]
    if quick:
        sets += ["spec.dataset.maxTrainExamples=8", "spec.dataset.maxEvalExamples=4"]
    cfg = load_config(str(REPO / "examples" / "demo.yaml"), sets)
    prep = prepare_data(cfg, progress=False)
    train, test = prep.splits["train"], prep.splits["test"]
    seconds = [float(m.get("seconds", 30.0)) for m in train.meta]
    precision = resolve("auto", cuda=False, gpu_bf16=False, cpu_bf16=cpu_fast_bf16())
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration.from_pretrained(
        prep.model_dir, attn_implementation="sdpa"
    )
    processor = WhisperProcessor.from_pretrained(prep.model_dir)
    model.config.use_cache = False
    model.config.apply_spec_augment = case.spec_augment
    if case.spec_augment:
        model.config.mask_time_prob = max(model.config.mask_time_prob, 0.05)
        model.config.mask_feature_prob = max(model.config.mask_feature_prob, 0.05)
    allow_short_inputs(model)
    opt = torch.optim.AdamW(
        model.parameters(), lr=1e-4, betas=(0.9, case.beta2), eps=case.eps, weight_decay=0.0
    )
    sched = LambdaLR(opt, lr_schedule(cfg, steps=case.steps))
    model.train()
    train_s, losses = 0.0, []
    for step in range(case.steps):
        _, idx = micro_batch(
            len(train), micro_step=step, batch_size=batch, seed=0, rank=0, world_size=1
        )
        b = collate(
            train.features,
            train.labels,
            idx,
            prefix_len=len(prep.prefix.ids),
            pad_id=prep.prefix.pad,
        )
        x = torch.from_numpy(b.input_features)
        if case.context == "cut":
            x = x[..., : context_frames(max(seconds[i] for i in idx), 1.0, x.shape[-1])]
        tic = time.perf_counter()
        with autocast(precision):
            out = model(
                input_features=x,
                decoder_input_ids=torch.from_numpy(b.decoder_input_ids),
                labels=torch.from_numpy(b.labels),
            )
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        train_s += time.perf_counter() - tic
        losses.append(float(out.loss.detach()))
    model.eval()
    order = decode_order(test.meta)
    with autocast(precision):
        texts, capped = decode_features(
            model,
            processor,
            test.features,
            order,
            language=cfg.model.language,
            task="transcribe",
            batch_size=16,
            max_new_tokens=96,
        )
    hyps = [""] * len(test)
    for text, i in zip(texts, order, strict=True):
        hyps[i] = text
    result = score(test.sentences, hyps, [m["id"] for m in test.meta], "en", capped)
    return {
        **asdict(case),
        "eps": case.eps,
        "precision": precision,
        "test_wer": result.wer,
        "capped": capped,
        "train_seconds": round(train_s, 1),
        "seconds_per_step": round(train_s / case.steps, 3),
        "final_loss": losses[-1],
        "test_utterances": len(test),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="bench/context_ablation.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--case", action="append", type=Case.parse, help="one case (repeatable)")
    ap.add_argument("--quick", action="store_true", help="2-step cases on 8 clips (tests)")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "context_ablation.json"))
    args = ap.parse_args(argv)
    cases = args.case or ([Case("cut", 2, 0.999)] if args.quick else [Case.parse(c) for c in GRID])
    rows = []
    t0 = time.time()
    for case in cases:
        row = run_case(case, quick=args.quick)
        rows.append(row)
        print(
            f"[ablation] {case.context:4} {case.steps:4d} steps beta2 {case.beta2}"
            f"{' specaug' if case.spec_augment else ''}: test WER {row['test_wer']:.2%}, "
            f"{row['seconds_per_step']:.2f} s/step",
            flush=True,
        )
    record = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0)),
        "seconds": round(time.time() - t0, 1),
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "quick": args.quick,
        "cases": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
