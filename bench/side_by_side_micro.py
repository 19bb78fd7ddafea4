"""Micro-benchmarks of bench/side_by_side.py: feature extraction (figure 3) and
evaluation speed (figure 4), ours against the Hugging Face recipe's default path.

Run in a subprocess of side_by_side.py (`python bench/side_by_side_micro.py --out F
--config C --set ...`), so the numbers are not disturbed by the driver's state.

- Features: the trainer's own path, ``trainer.main.prepare_data`` (read the split
  files, decode, log-mel, label ids, cache write) into an empty feature cache, minus
  the same call on the now warm cache (processor loading, opening the entries), over
  train/dev/test as the config limits them; against the recipe's path on the same
  clips: decode in ``datasets.map`` (the project's loader, as in recipe_reference.py)
  and ``WhisperFeatureExtractor`` + tokenizer per clip in ``datasets.map``. Decoding
  alone is timed as well, to split data from features.
- Evaluation: the converted model on the test split's cached features, through the
  trainer's ``evaluation.decode_features`` (what the job and ``whisperft evaluate``
  run) against ``Seq2SeqTrainer.predict`` with ``predict_with_generate`` on the same
  features, same batch and decoding cap; and the model's CTranslate2 export (int8,
  ``trainer.ct2_transcribe``, features computed inside) where ctranslate2 converts it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any


def _config(path: str, overrides: list[str], feature_dir: Path) -> Any:
    from whisperft.trainer.cli_train import load_config

    cfg = load_config(path, overrides)
    rt = cfg.runtime.model_copy(update={"feature_cache_dir": str(feature_dir)})
    return cfg.model_copy(update={"runtime": rt})


def feature_bench(cfg: Any) -> tuple[dict[str, Any], Any]:
    from datasets import Dataset, disable_progress_bars
    from recipe_reference import feature_fn
    from transformers import WhisperProcessor

    from whisperft.trainer.data import load_audio
    from whisperft.trainer.main import prepare_data

    disable_progress_bars()
    t0 = time.perf_counter()
    prep = prepare_data(cfg, progress=False)
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    prepare_data(cfg, progress=False)
    warm = time.perf_counter() - t0
    clips = sum(len(fs) for fs in prep.splits.values())
    ours_s = max(cold - warm, 1e-9)

    paths = [m["path"] for fs in prep.splits.values() for m in fs.meta]
    sentences = [s for fs in prep.splits.values() for s in fs.sentences]
    t0 = time.perf_counter()
    audios = [load_audio(p) for p in paths]
    decode_s = time.perf_counter() - t0

    processor = WhisperProcessor.from_pretrained(prep.model_dir)
    prepare = feature_fn(processor)

    t0 = time.perf_counter()
    ds = Dataset.from_dict({"path": paths, "sentence": sentences}).map(
        lambda ex: {"audio": load_audio(ex["path"])}, load_from_cache_file=False
    )
    ref_decode_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ds.map(prepare, remove_columns=["audio", "path"], load_from_cache_file=False)
    ref_features_s = time.perf_counter() - t0
    ref_s = ref_decode_s + ref_features_s
    record = {
        "clips": clips,
        "audio_seconds": round(sum(len(a) for a in audios) / 16000, 1),
        "ours": {
            "path": "trainer.main.prepare_data (decode + log-mel + labels + cache write)",
            "cold_s": round(cold, 3),
            "warm_s": round(warm, 3),
            "seconds": round(ours_s, 3),
            "clips_per_s": clips / ours_s,
        },
        "reference": {
            "path": "datasets.map: decode, then WhisperFeatureExtractor + tokenizer per clip",
            "decode_s": round(ref_decode_s, 3),
            "features_s": round(ref_features_s, 3),
            "seconds": round(ref_s, 3),
            "clips_per_s": clips / ref_s,
        },
        "decode_only": {"seconds": round(decode_s, 3), "clips_per_s": clips / decode_s},
        # Of our prepare_data time, the share that is decoding (for the time split).
        "ours_decode_share": min(1.0, decode_s / ours_s),
        "speedup": (clips / ours_s) / (clips / ref_s),
    }
    return record, (prep, audios)


def eval_bench(cfg: Any, prep: Any, audios: list[Any], *, ct2: bool) -> dict[str, Any]:
    import numpy as np
    import torch
    from datasets import Dataset
    from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments

    from whisperft.trainer.evaluation import decode_features, decode_order, score
    from whisperft.trainer.model import load_model

    t = cfg.training
    lang, task = cfg.model.language, cfg.model.task
    test = prep.splits["test"]
    n = len(test)
    loaded = load_model(cfg.model.name)
    model, processor = loaded.model, loaded.processor
    out: dict[str, Any] = {
        "utterances": n,
        "batch_size": t.eval_batch_size,
        "max_new_tokens": t.max_new_tokens,
        "torch_threads": torch.get_num_threads(),
    }

    from whisperft.trainer.precision import autocast, cpu_fast_bf16, resolve

    # In the precision the job evaluates in (bf16 autocast on a CPU with bf16 hardware).
    precision = resolve(t.precision, cuda=False, gpu_bf16=False, cpu_bf16=cpu_fast_bf16())

    def decode(indices: list[int]) -> tuple[list[str], int]:
        with autocast(precision):
            return decode_features(
                model,
                processor,
                test.features,
                indices,
                language=lang,
                task=task,
                batch_size=t.eval_batch_size,
                max_new_tokens=t.max_new_tokens,
            )

    t0 = time.perf_counter()
    order = decode_order(test.meta)  # as the job's evaluation: longest clip first
    sorted_hyps, capped = decode(order)
    sec = time.perf_counter() - t0
    hyps = [""] * n
    for h, i in zip(sorted_hyps, order, strict=True):
        hyps[i] = h
    res = score(test.sentences, hyps, [m["id"] for m in test.meta], lang, capped)
    out["ours"] = {
        "path": "trainer.evaluation.decode_features (batched greedy generate, longest first)",
        "precision": precision,
        "seconds": round(sec, 3),
        "utterances_per_s": n / sec,
        "wer": res.wer,
    }
    # The same decode in split order: what ordering by length buys.
    t0 = time.perf_counter()
    unsorted, _ = decode(list(range(n)))
    sec = time.perf_counter() - t0
    out["ours_split_order"] = {
        "seconds": round(sec, 3),
        "utterances_per_s": n / sec,
        "same_texts": unsorted == hyps,
    }

    tok = processor.tokenizer
    ds = Dataset.from_dict(
        {
            "input_features": [np.asarray(f, dtype=np.float32) for f in test.features],
            "labels": [tok(s).input_ids for s in test.sentences],
        }
    )
    from recipe_reference import SpeechSeq2SeqCollator

    prompt_len = 4 if loaded.multilingual else 2
    work = Path(tempfile.mkdtemp(prefix="sbs-eval-"))
    model.generation_config.forced_decoder_ids = None
    args = Seq2SeqTrainingArguments(
        output_dir=str(work),
        per_device_eval_batch_size=t.eval_batch_size,
        predict_with_generate=True,
        generation_max_length=t.max_new_tokens + prompt_len,
        generation_num_beams=1,
        report_to="none",
        use_cpu=not torch.cuda.is_available(),
        remove_unused_columns=False,
        label_names=["labels"],
        disable_tqdm=True,
    )
    trainer = Seq2SeqTrainer(
        model=model,
        args=args,
        data_collator=SpeechSeq2SeqCollator(processor, int(model.config.decoder_start_token_id)),
        processing_class=processor.feature_extractor,
    )
    t0 = time.perf_counter()
    pred = trainer.predict(ds)
    sec = time.perf_counter() - t0
    ids = np.where(pred.predictions < 0, tok.pad_token_id, pred.predictions)
    ref_hyps = [h.strip() for h in tok.batch_decode(ids, skip_special_tokens=True)]
    out["reference"] = {
        "path": "Seq2SeqTrainer.predict, predict_with_generate",
        "seconds": round(sec, 3),
        "utterances_per_s": n / sec,
        "wer": score(test.sentences, ref_hyps, [""] * n, lang, 0).wer,
    }
    out["speedup"] = out["ours"]["utterances_per_s"] / out["reference"]["utterances_per_s"]
    out["ct2"] = None
    if ct2:
        out["ct2"] = _ct2(loaded.path, work, test, audios[-n:], lang, task, t)
    shutil.rmtree(work, ignore_errors=True)
    return out


def _ct2(model_dir: Path, work: Path, test: Any, audios: list[Any], lang: Any, task: str, t: Any):
    from whisperft.trainer.ct2_transcribe import load_ct2, transcribe_ct2
    from whisperft.trainer.evaluation import score
    from whisperft.trainer.export_ct2 import export_ct2

    try:
        report = export_ct2(model_dir, work / "ct2", quantization="int8")
        m = load_ct2(work / "ct2")
    except Exception as exc:  # no ctranslate2, or it cannot convert this model
        return {"error": f"{type(exc).__name__}: {exc}"}
    t0 = time.perf_counter()
    tr = transcribe_ct2(
        m,
        audios,
        language=lang,
        task=task,
        batch_size=t.eval_batch_size,
        max_new_tokens=t.max_new_tokens,
    )
    sec = time.perf_counter() - t0
    return {
        "path": "CTranslate2 int8 export (trainer.ct2_transcribe; log-mel computed inside)",
        "quantization": report.quantization,
        "seconds": round(sec, 3),
        "utterances_per_s": len(audios) / sec,
        "wer": score(test.sentences, tr.texts, [""] * len(audios), lang, tr.capped).wer,
    }


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--config", default="examples/demo.yaml")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--out", required=True)
    ap.add_argument("--no-ct2", action="store_true", help="skip the CTranslate2 export")
    args = ap.parse_args()
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    feature_dir = Path(tempfile.mkdtemp(prefix="sbs-features-"))
    try:
        cfg = _config(args.config, args.overrides, feature_dir)
        features, (prep, audios) = feature_bench(cfg)
        evaluation = eval_bench(cfg, prep, audios, ct2=not args.no_ct2)
    finally:
        shutil.rmtree(feature_dir, ignore_errors=True)
    Path(args.out).write_text(
        json.dumps({"features": features, "evaluation": evaluation}, indent=2) + "\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
