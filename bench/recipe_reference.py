"""The Hugging Face Whisper fine-tuning recipe, as a standalone reference for bench/side_by_side.py.

Written here from the recipe's documented steps (the transformers
speech-recognition example and the "fine-tune Whisper" blog), not copied:

  1. load the splits with `datasets` (train / dev / test of a Common Voice layout);
  2. `WhisperFeatureExtractor` (log-mel) and the tokenizer (labels) in `datasets.map`;
  3. a data collator that pads the features, pads the labels with -100 and drops a
     leading decoder-start token (the model adds it back when it shifts the labels);
  4. `Seq2SeqTrainer` with `Seq2SeqTrainingArguments` (max_steps, batch, gradient
     accumulation, learning rate, warm-up, linear schedule, `predict_with_generate`,
     `generation_max_length`), optionally with `model.freeze_encoder()`;
  5. WER of the `predict_with_generate` outputs on the held-out test split, before and
     after training, scored by the project's own scorer (whisperft.trainer.metrics.
     score_texts, Whisper's English normaliser) so both sides are scored identically.

Audio: `datasets.Audio` decodes through torchcodec (FFmpeg) in datasets >= 4, which is
not installed here; the clips are decoded with the project's soundfile + soxr loader
(whisperft.trainer.data.load_audio, 16 kHz mono float32) inside a `datasets.map`
instead, the step the recipe's `cast_column("audio", Audio(16000))` does lazily.

Every phase is timed (start-up, data, features, evaluation before, training,
evaluation on dev, evaluation after, saving) and the figures go to --out as JSON.
Same defaults as the project's demo job (examples/demo.yaml): bundled tiny.en,
bundled English corpus, 40 steps at global batch 16, lr 1e-4, linear schedule with
4 warm-up steps, greedy decoding capped at 96 new tokens, batch 16, 100 test clips.

  python bench/recipe_reference.py --out /tmp/ref.json                  # full fine-tune
  python bench/recipe_reference.py --freeze-encoder --out /tmp/ref.json # frozen encoder
  python bench/recipe_reference.py --quick --out /tmp/ref.json          # 2 steps, 8 clips
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

T_START = time.perf_counter()

QUICK = {
    "max_steps": 2,
    "batch_size": 4,
    "warmup_steps": 1,
    "max_train_examples": 8,
    "max_eval_examples": 4,
    "eval_batch_size": 4,
    "save_steps": 0,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="bench/recipe_reference.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--model", default="bundled:tiny.en", help="model reference (as whisperft)")
    ap.add_argument("--data", default="bundled:en", help="Common Voice directory or bundled:en")
    ap.add_argument("--language", default="en", help="spoken language (scorer's normaliser)")
    ap.add_argument("--train-split", default="train")
    ap.add_argument("--eval-split", default="dev")
    ap.add_argument("--test-split", default="test")
    ap.add_argument("--max-steps", type=int, default=40, help="optimizer steps")
    ap.add_argument(
        "--batch-size", type=int, default=16, help="per_device_train_batch_size (one process)"
    )
    ap.add_argument("--grad-accum", type=int, default=1, help="gradient_accumulation_steps")
    ap.add_argument("--learning-rate", type=float, default=1e-4)
    ap.add_argument("--warmup-steps", type=int, default=4)
    ap.add_argument("--lr-scheduler-type", default="linear")
    ap.add_argument("--max-grad-norm", type=float, default=1.0)
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--freeze-encoder",
        "--freeze_encoder",
        action="store_true",
        help="model.freeze_encoder(): train the decoder only",
    )
    ap.add_argument("--max-train-examples", type=int, default=None, help="first N train clips")
    ap.add_argument(
        "--max-eval-examples",
        type=int,
        default=None,
        help="first N dev and test clips (as whisperft's maxEvalExamples)",
    )
    ap.add_argument("--eval-batch-size", type=int, default=16, help="per_device_eval_batch_size")
    ap.add_argument(
        "--max-new-tokens",
        type=int,
        default=96,
        help="decoding cap; generation_max_length = this + the decoder prompt",
    )
    ap.add_argument(
        "--save-steps", type=int, default=20, help="checkpoint every N steps (0: at the end only)"
    )
    ap.add_argument("--save-total-limit", type=int, default=2)
    ap.add_argument("--no-eval-before", action="store_true", help="skip the test WER before")
    ap.add_argument("--output-dir", default=None, help="Trainer output_dir (default: a temp dir)")
    ap.add_argument("--out", default=None, help="write the figures here (JSON); else stdout")
    ap.add_argument(
        "--quick",
        action="store_true",
        help="2 steps, batch 4, 8 train and 4 dev/test clips, batch-4 decoding (for tests)",
    )
    args = ap.parse_args(argv)
    if args.quick:
        for k, v in QUICK.items():
            setattr(args, k, v)
    return args


@dataclass
class Timer:
    phases: dict[str, float]

    def __call__(self, name: str) -> _Phase:
        return _Phase(self, name)


class _Phase:
    def __init__(self, timer: Timer, name: str) -> None:
        self.timer, self.name = timer, name

    def __enter__(self) -> None:
        self.t0 = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        dt = time.perf_counter() - self.t0
        self.timer.phases[self.name] = round(self.timer.phases.get(self.name, 0.0) + dt, 3)


def read_split(root: Path, split: str, limit: int | None) -> dict[str, list[str]]:
    """Columns path / sentence of a Common Voice split TSV (plain tab split, as released)."""
    from whisperft.trainer.data.commonvoice import split_file

    tsv = split_file(root, split)
    lines = tsv.read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    ip, isent = header.index("path"), header.index("sentence")
    paths, sentences = [], []
    for line in lines[1:]:
        if not line.strip():
            continue
        f = line.split("\t")
        paths.append(str(tsv.parent / "clips" / f[ip]))
        sentences.append(f[isent].strip())
        if limit is not None and len(paths) >= limit:
            break
    return {"path": paths, "sentence": sentences}


class SpeechSeq2SeqCollator:
    """Pads log-mel features (feature extractor) and labels (tokenizer, pad -> -100)."""

    def __init__(self, processor: Any, decoder_start_token_id: int) -> None:
        self.processor = processor
        self.decoder_start_token_id = decoder_start_token_id

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        inputs = [{"input_features": f["input_features"]} for f in features]
        batch = self.processor.feature_extractor.pad(inputs, return_tensors="pt")
        label_feats = [{"input_ids": f["labels"]} for f in features]
        labels_batch = self.processor.tokenizer.pad(label_feats, return_tensors="pt")
        labels = labels_batch["input_ids"].masked_fill(labels_batch.attention_mask.ne(1), -100)
        # The model prepends the decoder-start token when it shifts labels right.
        if (labels[:, 0] == self.decoder_start_token_id).all().item():
            labels = labels[:, 1:]
        batch["labels"] = labels
        return batch


def feature_fn(processor: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The recipe's `datasets.map` step: one example's log-mel features and label ids."""
    import numpy as np

    fe, tok = processor.feature_extractor, processor.tokenizer

    def prepare(batch: dict[str, Any]) -> dict[str, Any]:
        audio = np.asarray(batch["audio"], dtype=np.float32)
        batch["input_features"] = fe(audio, sampling_rate=16000).input_features[0]
        batch["labels"] = tok(batch["sentence"]).input_ids
        return batch

    return prepare


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    timer = Timer({})
    with timer("startup"):
        import numpy as np
        import torch
        from datasets import Dataset
        from transformers import (
            Seq2SeqTrainer,
            Seq2SeqTrainingArguments,
            TrainerCallback,
            WhisperForConditionalGeneration,
            WhisperProcessor,
        )
        from transformers.utils import logging as hf_logging

        from whisperft.trainer.data import load_audio, resolve_data_path
        from whisperft.trainer.metrics import score_texts
        from whisperft.trainer.model import resolve_model_dir

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        model_dir = resolve_model_dir(args.model)
        processor = WhisperProcessor.from_pretrained(model_dir)
        model = WhisperForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32)
        if args.freeze_encoder:
            model.freeze_encoder()
        gen = model.generation_config
        multilingual = bool(getattr(gen, "is_multilingual", False))
        if multilingual:
            processor.tokenizer.set_prefix_tokens(language=args.language, task="transcribe")
            gen.language, gen.task = args.language, "transcribe"
        gen.forced_decoder_ids = None
        prompt_len = 4 if multilingual else 2  # <|sot|> [<|lang|> <|task|>] <|notimestamps|>
    startup_s = time.perf_counter() - T_START  # with the interpreter's own imports

    root = resolve_data_path(args.data)
    with timer("data"):
        raw = {
            "train": read_split(root, args.train_split, args.max_train_examples),
            "eval": read_split(root, args.eval_split, args.max_eval_examples),
            "test": read_split(root, args.test_split, args.max_eval_examples),
        }
        # The recipe's cast_column("audio", Audio(sampling_rate=16000)), decoded here
        # by the project's soundfile loader (datasets' Audio needs torchcodec/FFmpeg).
        ds = {
            k: Dataset.from_dict(v).map(
                lambda ex: {"audio": load_audio(ex["path"])}, desc=None, load_from_cache_file=False
            )
            for k, v in raw.items()
        }
    prepare, tok = feature_fn(processor), processor.tokenizer

    with timer("features"):
        ds = {
            k: d.map(prepare, remove_columns=["audio", "path"], load_from_cache_file=False)
            for k, d in ds.items()
        }
    n = {k: len(d) for k, d in ds.items()}
    refs = {k: list(raw[k]["sentence"]) for k in raw}

    out_dir = Path(args.output_dir or tempfile.mkdtemp(prefix="recipe-reference-"))
    if out_dir.exists():
        shutil.rmtree(out_dir)  # a rerun must not resume from an earlier run's checkpoints
    step_s: list[float] = []

    class StepClock(TrainerCallback):
        """Optimizer-step time only (forward, backward, step), as whisperft counts samples/s."""

        def on_step_begin(self, *a: Any, **k: Any) -> None:
            self.t0 = time.perf_counter()

        def on_step_end(self, *a: Any, **k: Any) -> None:
            step_s.append(time.perf_counter() - self.t0)

    targs = Seq2SeqTrainingArguments(
        output_dir=str(out_dir),
        max_steps=args.max_steps,
        per_device_train_batch_size=args.batch_size,
        gradient_accumulation_steps=args.grad_accum,
        learning_rate=args.learning_rate,
        warmup_steps=args.warmup_steps,
        lr_scheduler_type=args.lr_scheduler_type,
        weight_decay=args.weight_decay,
        max_grad_norm=args.max_grad_norm,
        per_device_eval_batch_size=args.eval_batch_size,
        predict_with_generate=True,
        generation_max_length=args.max_new_tokens + prompt_len,
        generation_num_beams=1,
        eval_strategy="no",  # dev is evaluated once at the end, as whisperft's evalEvery 0
        save_strategy="steps" if args.save_steps else "no",
        save_steps=args.save_steps or 500,
        save_total_limit=args.save_total_limit,
        logging_steps=5,
        report_to="none",
        use_cpu=not torch.cuda.is_available(),
        seed=args.seed,
        dataloader_num_workers=0,
        remove_unused_columns=False,
        label_names=["labels"],
        disable_tqdm=True,
    )
    trainer = Seq2SeqTrainer(
        model=model,
        args=targs,
        train_dataset=ds["train"],
        data_collator=SpeechSeq2SeqCollator(processor, int(model.config.decoder_start_token_id)),
        processing_class=processor.feature_extractor,
        callbacks=[StepClock()],
    )

    def test_wer(split: str, phase: str) -> dict[str, Any]:
        t0 = time.perf_counter()
        with timer(phase):
            pred = trainer.predict(ds[split], metric_key_prefix=split)
        seconds = time.perf_counter() - t0
        ids = np.where(pred.predictions < 0, tok.pad_token_id, pred.predictions)
        hyps = [t.strip() for t in tok.batch_decode(ids, skip_special_tokens=True)]
        scores = score_texts(refs[split], hyps, args.language)
        return {
            "wer": scores.wer,
            "n": len(hyps),
            "seconds": round(seconds, 3),
            "utterances_per_s": len(hyps) / seconds if seconds > 0 else None,
            "hypotheses": hyps,
        }

    before = None if args.no_eval_before else test_wer("test", "eval_before")
    with timer("training"):
        train_out = trainer.train()
    dev = test_wer("eval", "eval_dev")
    after = test_wer("test", "eval_after")
    with timer("saving"):
        trainer.save_model(str(out_dir / "model"))
        processor.save_pretrained(str(out_dir / "model"))
    wall = time.perf_counter() - T_START
    global_batch = args.batch_size * args.grad_accum
    steps = int(train_out.global_step)
    step_total = sum(step_s)
    record: dict[str, Any] = {
        "recipe": "huggingface-seq2seqtrainer",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join(["python", "bench/recipe_reference.py", *(argv or sys.argv[1:])]),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
        },
        "settings": {
            k: getattr(args, k)
            for k in (
                "model",
                "data",
                "max_steps",
                "batch_size",
                "grad_accum",
                "learning_rate",
                "warmup_steps",
                "lr_scheduler_type",
                "freeze_encoder",
                "max_train_examples",
                "max_eval_examples",
                "eval_batch_size",
                "max_new_tokens",
                "save_steps",
                "quick",
            )
        },
        "data": n,
        "steps": steps,
        "global_batch": global_batch,
        "wall_s": round(wall, 3),
        "phases_s": {"startup": round(startup_s, 3), **timer.phases},
        # Optimizer steps only, like whisperft's samples_per_second.
        "train_samples_per_s": steps * global_batch / step_total if step_total > 0 else None,
        # Hugging Face's own figure (train_runtime: the whole train() call).
        "hf_train_samples_per_second": train_out.metrics.get("train_samples_per_second"),
        "train_loss": train_out.metrics.get("train_loss"),
        "test_wer_before": before["wer"] if before else None,
        "test_wer_after": after["wer"],
        "eval_wer": dev["wer"],
        "eval_utterances_per_s": after["utterances_per_s"],
        "peak_rss_mb_self": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "total_params": sum(p.numel() for p in model.parameters()),
        "hypotheses_after": after["hypotheses"],
        "output_dir": str(out_dir),
    }
    text = json.dumps(record, indent=2) + "\n"
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
        wb = record["test_wer_before"]
        print(
            f"reference: test WER {'-' if wb is None else f'{wb:.2%}'} -> "
            f"{record['test_wer_after']:.2%}, wall {wall:.1f} s, "
            f"{record['train_samples_per_s'] or 0:.2f} samples/s -> {args.out}"
        )
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
