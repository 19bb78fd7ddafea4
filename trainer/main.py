"""The driver: resolve model and data, cache features, run TorchTrainer, write results.

Locally one worker trains in this process (Ray Train's local mode, see
trainer/launch.py) and more start their own Ray; in a RayJob it joins the
cluster (``ray_address="auto"``). Either way checkpoints go to
``<runtime.storagePath>/<name>``, so a new run with the same name resumes.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from whisperft.languages import token_language
from whisperft.trainer import cache_prune, outputs
from whisperft.trainer import checkpoint as ckpt
from whisperft.trainer.checkpoint_bucket import BucketCheckpoints
from whisperft.trainer.config import Runtime, TrainConfig
from whisperft.trainer.data.collator import micro_batches_per_epoch
from whisperft.trainer.data.errors import DataError
from whisperft.trainer.data.features import (
    FeatureSet,
    build_feature_set,
    cache_key,
    label_ids,
)
from whisperft.trainer.data.log_mel import LogMel
from whisperft.trainer.job import WorkerJob
from whisperft.trainer.model.sources import cache_root
from whisperft.trainer.model_prep import Prefix, checked_prefix
from whisperft.trainer.storage.objects import totals as storage_totals

log = logging.getLogger("whisperft.trainer")

# What the workers' final report carries into results.json, by the same names.
RESULT_METRICS = (
    "test_wer_before",
    "test_wer_after",
    "test_cer_before",
    "test_cer_after",
    "eval_wer",
    "best_eval_wer",
    "best_step",
    "capped_after",
    "lora",  # None for a full fine-tune
    "precision",  # what training.precision resolved to: fp32, bf16, fp16, amp-bf16 (CPU autocast)
)


@dataclass
class Prepared:
    model_dir: Path
    prefix: Prefix
    splits: dict[str, FeatureSet]  # train / eval / test
    features_root: Path

    def job(
        self,
        cfg: TrainConfig,
        run_dir: Path,
        output_dir: Path,
        progress: bool,
        *,
        in_process: bool = False,
    ) -> WorkerJob:
        """What the workers get: this model and these features."""
        return WorkerJob(
            config=cfg,
            model_dir=self.model_dir,
            train_features=self.splits["train"].path,
            eval_features={"eval": self.splits["eval"].path, "test": self.splits["test"].path},
            run_dir=run_dir,
            encoder_cache_root=self.features_root,
            output_dir=output_dir,
            progress=progress,
            in_process=in_process,
        )


def prepare_data(cfg: TrainConfig, *, progress: bool = True) -> Prepared:
    """Model dir and cached features for the three splits (driver side, once)."""
    from transformers import GenerationConfig, WhisperProcessor

    from whisperft.trainer.data import HubOptions, iter_split, resolve_data_path, split_identity
    from whisperft.trainer.model import resolve_model_dir

    rt = cfg.runtime
    model_dir = resolve_model_dir(cfg.model.name, cache_dir=rt.model_cache_dir)
    processor = WhisperProcessor.from_pretrained(model_dir)
    gen = GenerationConfig.from_pretrained(model_dir)
    # Before any feature is computed: a model found only now (a path) must have the language.
    prefix = checked_prefix(processor.tokenizer, gen, cfg)
    d = cfg.dataset
    hub = HubOptions.of(d)  # format hub: data_path is a hub id or a hub-layout directory
    data_path: str | Path = rt.data_path if hub else resolve_data_path(rt.data_path)
    features_root = (
        Path(rt.feature_cache_dir) if rt.feature_cache_dir else cache_root() / "features"
    )
    fe = processor.feature_extractor
    extract = LogMel(fe)

    def labels_for(sentence: str) -> list[int]:
        return label_ids(processor.tokenizer, prefix.ids, prefix.eot, sentence)

    splits: dict[str, FeatureSet] = {}
    wanted = {
        "train": (d.train_split, d.max_train_examples),
        "eval": (d.eval_split, d.max_eval_examples),
        "test": (d.test_split, d.max_eval_examples),
    }
    for role, (split, limit) in wanted.items():
        key = cache_key(
            {
                **split_identity(d.format, data_path, split, hub),  # source, fingerprint
                "format": d.format,
                "split": split,
                "limit": limit,
                "min_s": d.min_duration_seconds,
                "max_s": d.max_duration_seconds,
                "max_tokens": d.max_label_tokens,
                "prefix": list(prefix.ids),
                "features": fe.to_dict(),
                **extract.identity(),
                "vocab": len(processor.tokenizer),
            }
        )
        skipped: Counter[str] = Counter()
        examples = iter_split(
            d.format,
            data_path,
            split,
            skipped=skipped,
            min_duration_s=d.min_duration_seconds,
            max_duration_s=d.max_duration_seconds,
            label_length=lambda s: len(labels_for(s)),
            max_label_tokens=d.max_label_tokens,
            limit=limit,
            hub_options=hub,
        )
        bar = _bar(f"features {role} ({split})") if progress else None
        splits[role] = build_feature_set(
            cache_root=features_root,
            key=key,
            examples=examples,
            skipped=skipped,
            extract=extract,
            labels_for=labels_for,
            progress=bar,
            description=f"{data_path} [{split}]",
        )
    bound = rt.cache_max_gib
    cache_prune.prune(
        features_root,
        keep=[fs.path for fs in splits.values()],
        max_bytes=int(bound * 2**30) if bound is not None else None,
    )
    return Prepared(model_dir=model_dir, prefix=prefix, splits=splits, features_root=features_root)


def _bar(desc: str) -> Any:
    from tqdm.auto import tqdm

    return lambda it: tqdm(it, desc=desc, unit="clip", leave=False)


def worker_setup() -> None:
    """Ray worker setup hook (every worker process, in its main thread): SIGTERM asks
    for a preemption checkpoint instead of killing the worker mid-step."""
    from whisperft.trainer import preemption

    preemption.install_handler()


def quiet_local_workers() -> None:
    """Ray worker setup hook for local mode, where no dashboard runs.

    Ray Train's placement-group cleaner asks the state API (served by the
    dashboard) once a second whether the controller lives and warns on every
    failure. Locally the whole Ray instance dies with the driver, so the
    cleaner has nothing to do and its warnings are noise.
    """
    logging.getLogger(
        "ray.train.v2._internal.execution.controller.placement_group_cleaner"
    ).setLevel(logging.ERROR)
    worker_setup()


def run(
    cfg: TrainConfig,
    *,
    ray_address: str | None = None,
    progress: bool = True,
    launch: str = "auto",
) -> dict[str, Any]:
    """Fine-tune per ``cfg``; returns (and writes) the results dict.

    ``launch`` (trainer.launch): ``auto`` trains one local worker in this process
    and starts (or, with ``ray_address``, joins) a Ray cluster otherwise.
    """
    from whisperft.trainer.launch import in_process

    s = cfg.runtime
    here = in_process(launch, ray_address=ray_address, workers=s.workers)  # ConfigError first
    import ray
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from whisperft.trainer.loop import train_worker
    from whisperft.trainer.plots import plot_history

    t0 = time.perf_counter()
    storage = Path(s.storage_path).resolve()
    out_dir = Path(s.output_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    run_dir = storage / cfg.name
    if not progress:
        # Hugging Face's own bars too ("Loading weights"): each frame is a log line.
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    for location in (s.output_uri, s.checkpoint_uri):
        if location:  # before any feature is computed: a missing bucket is bad input
            outputs.check_writable(location)
    prep = prepare_data(cfg, progress=progress)
    t_data = time.perf_counter() - t0
    read = storage_totals()
    if read.objects_read:
        sys.stdout.write(
            f"[whisperft] read {read.bytes_read / 1e6:.1f} MB in {read.objects_read} objects "
            "from buckets while preparing the data\n"
        )
    try:  # here, before Ray starts, rather than as a traceback from every worker
        micro_batches_per_epoch(len(prep.splits["train"]), s.workers, cfg.micro_batch)
    except ValueError as exc:
        raise DataError(
            f"{s.data_path} [{cfg.dataset.train_split}]: {exc}", reason="too_few"
        ) from None
    env = {
        "DS_ACCELERATOR": "cuda" if s.use_gpu else "cpu",
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"),
        "OMP_NUM_THREADS": str(max(1, int(s.cpus_per_worker))),
        **({} if progress else {"HF_HUB_DISABLE_PROGRESS_BARS": "1"}),
        **{k: v for k, v in os.environ.items() if k.startswith("WHISPERFT_")},
    }
    if here:
        pass  # Ray Train's local mode: no Ray cluster, the loop runs below in this process
    elif not ray.is_initialized():
        if ray_address:
            ray.init(
                address=ray_address,
                runtime_env={
                    "env_vars": env,
                    "worker_process_setup_hook": "whisperft.trainer.main.worker_setup",
                },
                log_to_driver=True,
            )
        else:
            ray.init(
                num_cpus=max(int(s.workers * s.cpus_per_worker), 1) + 1,
                include_dashboard=False,
                runtime_env={
                    "env_vars": env,
                    "worker_process_setup_hook": "whisperft.trainer.main.quiet_local_workers",
                },
                logging_level=logging.WARNING,
            )
    job = prep.job(cfg, run_dir, out_dir, progress, in_process=here)
    scaling = (
        ScalingConfig(num_workers=0, use_gpu=s.use_gpu)  # local mode: this process trains
        if here
        else ScalingConfig(
            num_workers=s.workers,
            use_gpu=s.use_gpu,
            resources_per_worker={
                "CPU": s.cpus_per_worker,
                **({"GPU": s.gpus_per_worker} if s.use_gpu else {}),
            },
        )
    )
    trainer = TorchTrainer(
        train_worker,
        train_loop_config=job.as_loop_config(),
        scaling_config=scaling,
        torch_config=TorchConfig(backend="nccl" if s.use_gpu else "gloo"),
        run_config=RunConfig(
            name=cfg.name,
            storage_path=str(storage),
            failure_config=FailureConfig(max_failures=s.max_failures),
            # Retention is ours (last K plus best, see checkpoint.prune).
            checkpoint_config=CheckpointConfig(num_to_keep=None),
        ),
    )
    (out_dir / ckpt.FINAL_METRICS).unlink(missing_ok=True)  # an earlier run's, never this one's
    if s.output_uri:
        outputs.clear_final_metrics(s.output_uri)
    result = _fit_in_process(trainer, threads=s.cpus_per_worker) if here else trainer.fit()
    wall = time.perf_counter() - t0
    checkpoints, state = _checkpoints_after(s, run_dir)
    final = outputs.final_metrics(out_dir, s.output_uri)
    metrics = {**(result.metrics or {}), **final.get("metrics", {})}
    history = final.get("history") or (state.history if state else [])
    results: dict[str, Any] = {
        "config": cfg.to_wire(),
        "model_source": str(prep.model_dir),
        "language": cfg.model.language,
        "language_token": token_language(cfg.model.language, cfg.model.train_as_language),
        "data": {
            role: {
                "path": str(fs.path),
                "n": len(fs),
                "audio_seconds": round(fs.total_audio_s, 1),
                "skipped": fs.skipped,
            }
            for role, fs in prep.splits.items()
        },
        "steps": metrics.get("step"),
        # WERs and CERs are fractions; each names its split.
        **{k: metrics.get(k) for k in RESULT_METRICS},
        "samples_per_second": metrics.get("samples_per_second"),
        "peak_rss_mb_rank0": metrics.get("peak_rss_mb"),
        "peak_gpu_mb_rank0": metrics.get("peak_gpu_mb"),
        "prepare_seconds": round(t_data, 1),
        # The driver's own bucket traffic: the data it read (features are cached after that).
        "storage": {"bytes_read": read.bytes_read, "objects_read": read.objects_read},
        "job_wall_seconds": round(wall, 1),
        "checkpoints": checkpoints,
        # None only when checkpoints are off (saveEvery 0): a new best is always saved.
        "best_checkpoint": next(
            (p for p in checkpoints if ckpt.step_of(Path(p)) == metrics.get("best_step")), None
        ),
        "final_model": f"{s.output_uri.rstrip('/')}/model"
        if s.output_uri
        else str(out_dir / "model"),
        # Which weights model/ (and ct2/) hold: the best evaluated checkpoint's, or the last.
        "exported": metrics.get("exported"),
        "ct2": metrics.get("ct2"),
        "history": history,
    }
    if history:
        results["plot"] = str(plot_history(history, out_dir / "training.png", title=cfg.name))
    (out_dir / outputs.RESULTS).write_text(json.dumps(results, indent=2))
    if s.output_uri:
        outputs.upload_results(out_dir, s.output_uri)
    return results


def _fit_in_process(trainer: Any, *, threads: float) -> Any:
    """``trainer.fit()`` in Ray Train's local mode: a one-rank process group on
    loopback, the worker's thread count and SIGTERM handler set here (Ray's worker
    setup does both for an actor)."""
    import signal
    import threading

    import torch

    from whisperft.trainer import preemption
    from whisperft.trainer.launch import single_rank_env

    # The Python API runs here too (a notebook): its SIGTERM handler and thread count
    # are put back afterwards.
    main_thread = threading.current_thread() is threading.main_thread()
    handler = signal.getsignal(signal.SIGTERM) if main_thread else None
    preemption.reset()
    preemption.install_handler()
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, int(threads)))
    try:
        with single_rank_env():
            return trainer.fit()
    finally:
        # Handled (saved and stopped) or never asked: either way no deadline may
        # outlive the run, or it would end a notebook's kernel GRACE_S later.
        preemption.reset()
        torch.set_num_threads(before)
        if main_thread:  # None: set outside Python, so the default is the nearest
            signal.signal(signal.SIGTERM, handler if handler is not None else signal.SIG_DFL)


def _checkpoints_after(s: Runtime, run_dir: Path) -> tuple[list[str], ckpt.TrainerState | None]:
    """The run's checkpoints (newest first) and the newest one's state, wherever they are."""
    if s.checkpoint_uri:
        bucket = BucketCheckpoints(s.checkpoint_uri, run_dir)
        names = bucket.names()
        good = next((n for n in names if bucket.problem(n) is None), None)
        return [str(bucket.prefix(n)) for n in names], bucket.state(good) if good else None
    # The final checkpoint was just written and size-checked; its digests need no second read.
    found = ckpt.latest_good(run_dir, verify_content=False)
    return [str(p) for p in ckpt.list_checkpoints(run_dir)], found[1] if found else None
