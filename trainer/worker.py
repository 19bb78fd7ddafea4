"""One rank's state and the steps of the recipe: build, restore, train step,
evaluate, save, publish.

One DeepSpeed engine per worker; data comes from the feature cache the driver
built, sharded by rank; evaluation is distributed for ZeRO 0-2 and done on
rank 0 from consolidated weights for ZeRO-3 (generate under ZeRO-3 partitioning
hangs when ranks decode different lengths).
"""

from __future__ import annotations

import json
import logging
import random
import resource
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from whisperft.languages import token_language
from whisperft.trainer import cache_prune, heap, lora, rng_state, safe_load
from whisperft.trainer import checkpoint as ckpt
from whisperft.trainer.checkpoint_bucket import BucketCheckpoints
from whisperft.trainer.config import TrainConfig
from whisperft.trainer.data.collator import collate, micro_batch, micro_batches_per_epoch
from whisperft.trainer.data.features import FeatureSet
from whisperft.trainer.deepspeed_config import (
    build_deepspeed_config,
    lr_schedule,
    resolve_precision,
    total_steps,
)
from whisperft.trainer.evaluation import EvalResult, decode_features, decode_order, score
from whisperft.trainer.job import WorkerJob
from whisperft.trainer.model.quiet_save import no_save_progress
from whisperft.trainer.model_prep import checked_prefix, prepare_for_training, uses_encoder_cache
from whisperft.trainer.node_lock import node_lock
from whisperft.trainer.precision import autocast, cpu_fast_bf16
from whisperft.trainer.progress import Progress, sink_from_env
from whisperft.trainer.telemetry import EVENTS_DIR, Telemetry

log = logging.getLogger("whisperft.trainer")


class Worker:
    """State of one rank; methods are the steps of the recipe."""

    def __init__(self, job: WorkerJob) -> None:
        import torch
        from ray import train

        self.job = job
        self.cfg: TrainConfig = job.config
        ctx = train.get_context()
        self.rank, self.world = ctx.get_world_rank(), ctx.get_world_size()
        self.cuda = bool(self.cfg.runtime.use_gpu and torch.cuda.is_available())
        self.device = (
            torch.device("cuda", torch.cuda.current_device()) if self.cuda else torch.device("cpu")
        )
        self.precision = resolve_precision(
            self.cfg,
            cuda=self.cuda,
            bf16_supported=self.cuda and torch.cuda.is_bf16_supported(),
            cpu_bf16=not self.cuda and cpu_fast_bf16(),
        )
        self.run_dir = job.run_dir
        rt = self.cfg.runtime
        # Checkpoints in a bucket: run_dir is then only where a resume downloads them.
        self.bucket = (
            BucketCheckpoints(rt.checkpoint_uri, job.run_dir) if rt.checkpoint_uri else None
        )
        self.train_set = FeatureSet.open(job.train_features)
        self.eval_sets = {name: FeatureSet.open(p) for name, p in job.eval_features.items()}
        self.steps = total_steps(self.cfg, n_train=len(self.train_set), world_size=self.world)
        self.sink = sink_from_env() if self.rank == 0 else None
        self.states: Any = None
        self.lr_used = 0.0
        self.bar: Any = None
        self.lora_summary: lora.LoraSummary | None = None
        self.ct2_report: dict[str, Any] | None = None  # set by save_final_model (rank 0)
        self.telemetry = Telemetry(
            job.run_dir if self.rank == 0 else None,
            self.cfg.name,
            # Ray's metrics reach Prometheus through a Ray node's agent; in-process has none.
            prometheus=self.rank == 0 and not job.in_process,
        )

    # -- setup -------------------------------------------------------------------
    def build(self) -> None:
        import deepspeed
        import torch
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        seed = self.cfg.training.seed
        torch.manual_seed(seed + self.rank)
        np.random.seed(seed + self.rank)
        random.seed(seed + self.rank)
        model_dir = self.job.model_dir
        self.processor = WhisperProcessor.from_pretrained(model_dir)
        model = WhisperForConditionalGeneration.from_pretrained(
            model_dir, attn_implementation="sdpa"
        )
        self.multilingual = bool(getattr(model.generation_config, "is_multilingual", False))
        self.counts = prepare_for_training(model, self.cfg)
        self.prefix = checked_prefix(self.processor.tokenizer, model.generation_config, self.cfg)
        self.token_language = token_language(
            self.cfg.model.language, self.cfg.model.train_as_language
        )
        ds_config = build_deepspeed_config(
            self.cfg,
            world_size=self.world,
            precision=self.precision,
            cuda=self.cuda,
        )
        model.to(self.device)  # type: ignore[arg-type]
        trained: torch.nn.Module = model
        if uses_encoder_cache(self.cfg):
            trained = self._with_encoder_cache(model)
        if self.cfg.lora is not None:
            lora.checkpoint_only_trainable(trained)  # DeepSpeed's model states: the adapters
        from torch.optim.lr_scheduler import LambdaLR

        schedule = lr_schedule(self.cfg, steps=self.steps)
        self.engine, _, _, _ = deepspeed.initialize(
            model=trained,
            model_parameters=[p for p in trained.parameters() if p.requires_grad],
            config=ds_config,
            # An expert `scheduler` in deepspeed.overrides wins over ours.
            lr_scheduler=None
            if "scheduler" in ds_config
            else (lambda opt: LambdaLR(opt, schedule)),
        )
        if self.world == 1 and self.cfg.zero_stage == 0:
            # One rank: the all-reduce is the identity, yet DeepSpeed would still copy every
            # gradient into a flat bucket for it (as much memory again as the gradients).
            self.engine.enable_backward_allreduce = False
        self.zero3 = self.cfg.zero_stage == 3
        # ZeRO-3 evaluates a plain copy on rank 0 (see module docstring).
        self.eval_model = (
            WhisperForConditionalGeneration.from_pretrained(model_dir, attn_implementation="sdpa")
            if self.zero3 and self.rank == 0
            else None
        )
        if self.eval_model is not None and self.cfg.lora is not None:
            lora.apply(self.eval_model, self.cfg)  # the consolidated weights' names
        self.dtype = next(self.engine.module.parameters()).dtype

    def _with_encoder_cache(self, model: Any) -> Any:
        import torch.distributed as dist

        from whisperft.trainer import encoder_cache as ec

        k = ec.frozen_prefix_layers(model, self.cfg.training.train_top_encoder_layers)
        out = ec.cache_dir_for(
            self.job.encoder_cache_root,
            str(self.job.model_dir),
            str(self.job.train_features),
            k,
            precision=self.precision,
        )
        tic = time.perf_counter()
        # The states are computed in the precision the run trains in.
        with autocast(self.precision):
            if self.cfg.runtime.shared_scratch:
                ec.build_sharded(
                    model, self.train_set.features, out, k=k, rank=self.rank, world=self.world
                )
                parts = self.world
            else:
                # Pods without a shared claim: each node builds the whole cache once, as one part.
                with node_lock(out.parent / f".{out.name}.lock"):
                    ec.build_sharded(model, self.train_set.features, out, k=k, rank=0, world=1)
                parts = 1
        dist.barrier()
        cache_prune.touch(out)
        heap.release()
        self.states = ec.CachedStates(out, parts, len(self.train_set))
        self.say(
            f"frozen encoder prefix ({k} layers) cached for {len(self.train_set)} examples in {time.perf_counter() - tic:.0f} s"
        )
        return ec.TailModel(model, k)

    @property
    def whisper(self) -> Any:
        """The Whisper module inside the engine (unwrapping the encoder-cache tail)."""
        m = self.engine.module
        return getattr(m, "whisper", m)

    def restore(self) -> ckpt.TrainerState:
        import torch.distributed as dist

        # Rank 0 picks (and digest-checks) the checkpoint once; every rank then loads
        # that same one, even if a shared volume shows ranks different listings.
        box = [self._latest_good() if self.rank == 0 else None]
        if dist.is_initialized() and self.world > 1:
            dist.broadcast_object_list(box, src=0)
        found = box[0]
        if found is not None and self.bucket is not None and self.rank != 0:
            found = (self.bucket.materialize(found[0].name), found[1])
        config = self.cfg.to_wire()
        fresh = ckpt.TrainerState(
            step=0,
            micro_step=0,
            epoch=0,
            world_size=self.world,
            total_steps=self.steps,
            config=config,
        )
        if found is None:
            return fresh
        path, state = found
        why = lora.resume_problem(state.config, self.cfg)
        if why is not None:
            raise RuntimeError(f"checkpoint {path}: {why}")
        if state.world_size != self.world:
            raise RuntimeError(
                f"checkpoint {path} was written by {state.world_size} workers but this run has "
                f"{self.world}; ZeRO shards cannot be re-split, so resume with workers={state.world_size}"
            )
        # The claim is shared storage and its manifests can be rewritten with the files,
        # so digests cannot stop a pickle payload: DeepSpeed's own torch.load calls
        # (weights_only=False) are forced weights-only here. A file needing more than
        # tensors and DeepSpeed's few plain types fails the resume, naming it, rather
        # than falling back: someone else has written this storage, so its older
        # checkpoints are no safer, and the ranks may already hold part of this one.
        self._load_engine(path)
        self.apply_config_hyperparameters()
        self._restore_rng(path)
        state.total_steps = self.steps
        moved = data_position_changes(state.config, config)
        if moved:
            # Allowed (the operator applies spec changes as a new attempt on the same
            # run), but the data order after this point is not the one a straight run sees.
            self.say(
                f"warning: resuming with changed {', '.join(moved)}; "
                "training continues, but not on the exact data order of the saved run"
            )
            state.history.append({"event": "config_changed", "step": state.step, "fields": moved})
        state.config = config
        fp = self.optimizer_fingerprint()
        state.history.append(
            {"event": "resumed", "step": state.step, "from": path.name, "optim_fingerprint": fp}
        )
        self.say(f"resumed from {path.name} at step {state.step}/{self.steps}")
        return state

    def _latest_good(self) -> tuple[Path, ckpt.TrainerState] | None:
        return self.bucket.latest_good() if self.bucket else ckpt.latest_good(self.run_dir)

    def _load_engine(self, path: Path) -> None:
        with safe_load.weights_only_loads(safe_load.deepspeed_globals()):
            load_path, _ = self.engine.load_checkpoint(
                str(path),
                tag=ckpt.DS_TAG,
                custom_load_fn=lora.load_trainable if self.cfg.lora is not None else None,
            )
        if load_path is None:
            raise RuntimeError(f"DeepSpeed could not load {path / ckpt.DS_TAG}")

    def load_export_weights(
        self, state: ckpt.TrainerState, last_checkpoint: str
    ) -> ckpt.ExportChoice:
        """Put the weights the run exports into the engine: the best evaluated
        checkpoint's when an earlier one beat the final weights and is intact, else
        the final weights (already there). Call after the final checkpoint is saved:
        loading replaces the engine's whole state."""
        import torch.distributed as dist

        best = state.best_step
        if best is None or best == state.step:
            selected = "last" if best is None else "bestEval"
            return ckpt.ExportChoice(last_checkpoint, state.step, selected, None)
        name = ckpt.dir_name(best)
        path = self.run_dir / name
        box: list[str | None] = [None]
        if self.rank == 0:
            box = [self._export_problem(name)]
        if dist.is_initialized() and self.world > 1:
            dist.broadcast_object_list(box, src=0)
        if box[0] is not None:
            note = f"the best eval checkpoint (step {best}) {box[0]}; exporting the final weights"
            self.say(f"warning: {note}")
            return ckpt.ExportChoice(last_checkpoint, state.step, "last", note)
        if self.bucket is not None:
            path = self.bucket.materialize(name)
            self._load_engine(path)
            return ckpt.ExportChoice(str(self.bucket.prefix(name)), best, "bestEval", None)
        self._load_engine(path)
        return ckpt.ExportChoice(str(path), best, "bestEval", None)

    def _export_problem(self, name: str) -> str | None:
        """Why the best checkpoint cannot be exported (rank 0), or None."""
        not_kept = "was not kept (checkpoints are off: training.saveEvery is 0)"
        if self.bucket is None:
            path = self.run_dir / name
            return ckpt.problem(path, verify_content=True) if path.is_dir() else not_kept
        if name not in self.bucket.names():
            return not_kept
        try:
            return ckpt.problem(self.bucket.materialize(name), verify_content=True)
        except FileNotFoundError as exc:
            return f"is incomplete ({exc})"

    def _restore_rng(self, path: Path) -> None:
        f = path / rng_state.file_name(self.rank)
        legacy = path / f"rng_rank{self.rank}.pt"
        if f.is_file() or not legacy.is_file():
            rng_state.load(f, cuda=self.cuda)
            return
        # Written before RNG state was JSON: that file is a pickle, never loaded.
        self.say(
            f"warning: {path.name} has its RNG state only as {legacy.name}, a pickle that is "
            "not loaded; training continues with fresh RNG state (dropout and SpecAugment "
            "draws differ from the saved run's)"
        )

    def apply_config_hyperparameters(self) -> None:
        """The spec's learning rate, weight decay and Adam settings over the restored ones.

        A checkpoint restores the optimizer's param groups and the scheduler's
        base LR as they were saved, so a learning rate or weight decay changed
        for a new attempt (the operator resumes a spec edit that way) would
        otherwise never take effect. The schedule's shape (warm-up, decay, total
        steps) already comes from this run's config: LambdaLR saves no state of
        our schedule function. Adam's moments and the step count stay restored.
        """
        from torch.optim.lr_scheduler import LambdaLR

        t = self.cfg.training
        sched = self.engine.lr_scheduler
        groups = self.engine.optimizer.param_groups
        for g in groups:
            g["weight_decay"] = t.weight_decay
            g["initial_lr"] = t.learning_rate
            g["betas"] = (t.adam_beta1, t.adam_beta2)
            g["eps"] = t.adam_epsilon
        if isinstance(sched, LambdaLR):  # ours; an expert scheduler in overrides is left as is
            sched.base_lrs = [t.learning_rate] * len(groups)
            for g, lam in zip(groups, sched.lr_lambdas, strict=True):
                g["lr"] = t.learning_rate * lam(sched.last_epoch)

    def optimizer_fingerprint(self) -> float:
        """Sum of every Adam moment across ranks: equal before save and after load."""
        import torch

        opt = self.engine.optimizer
        inner = getattr(opt, "optimizer", opt)
        total = 0.0
        for st in inner.state.values():
            for key in ("exp_avg", "exp_avg_sq"):
                if key in st:
                    total += float(st[key].double().sum())
        return (
            self._mean_across_ranks(total) * self.world
            if torch.distributed.is_initialized()
            else total
        )

    # -- one optimizer step --------------------------------------------------------
    def train_step(self, state: ckpt.TrainerState) -> float:
        import torch

        t = self.cfg.training
        # from_pretrained returns eval mode and evaluation may leave it there;
        # dropout, SpecAugment and gradient checkpointing act only in train mode.
        self.engine.train()
        self.lr_used = float(self.engine.get_lr()[0])  # the scheduler moves on after the step
        losses = []
        for _ in range(self.cfg.grad_accum):
            pos, idx = micro_batch(
                len(self.train_set),
                micro_step=state.micro_step,
                batch_size=self.cfg.micro_batch,
                seed=t.seed,
                rank=self.rank,
                world_size=self.world,
            )
            source = self.states if self.states is not None else self.train_set.features
            b = collate(
                source,
                self.train_set.labels,
                idx,
                prefix_len=len(self.prefix.ids),
                pad_id=self.prefix.pad,
            )
            x = self._cut_to_context(torch.from_numpy(b.input_features), idx)
            x = x.to(self.device, self.dtype)
            dec = torch.from_numpy(b.decoder_input_ids).to(self.device)
            lab = torch.from_numpy(b.labels).to(self.device)
            if self.states is not None:
                out = self.engine(x, dec, lab)
            else:
                out = self.engine(input_features=x, decoder_input_ids=dec, labels=lab)
            self.engine.backward(out.loss)
            self.engine.step()
            losses.append(float(out.loss.detach()))
            state.micro_step += 1
            state.epoch = pos.epoch
        state.step += 1
        state.samples_seen += self.cfg.micro_batch * self.cfg.grad_accum * self.world
        heap.release()  # the step's activations and optimizer temporaries (trainer/heap.py)
        return self._mean_across_ranks(sum(losses) / len(losses))

    def _cut_to_context(self, x: Any, idx: list[int]) -> Any:
        """The batch cut to its longest clip plus training.audioContextMarginSeconds:
        mel frames (B, mels, frames), or cached encoder-prefix states (B, positions, d),
        which the stride-2 conv has halved."""
        margin = self.cfg.training.audio_context_margin_seconds
        if margin is None:
            return x
        from whisperft.trainer.audio_context import context_frames

        longest = max(float(self.train_set.meta[i].get("seconds", 30.0)) for i in idx)
        if self.states is None:
            return x[:, :, : context_frames(longest, margin, x.shape[-1])]
        return x[:, : context_frames(longest, margin, 2 * x.shape[1]) // 2, :]

    def preemption_requested(self) -> bool:
        """Whether any rank was told to stop (one all-reduce, so all ranks agree)."""
        import torch
        import torch.distributed as dist

        from whisperft.trainer import preemption

        flag = torch.tensor([1.0 if preemption.requested() else 0.0], device=self.device)
        if dist.is_initialized() and self.world > 1:
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item() > 0)

    def _mean_across_ranks(self, x: float) -> float:
        import torch
        import torch.distributed as dist

        v = torch.tensor([x], dtype=torch.float64, device=self.device)
        dist.all_reduce(v)
        return float(v.item()) / self.world

    # -- evaluation -----------------------------------------------------------------
    def evaluate(self, split: str) -> EvalResult:
        import torch.distributed as dist

        fs = self.eval_sets[split]
        all_idx = list(range(len(fs)))
        # Clips of like length share a batch, so a batch's greedy decode is not held to
        # its one long utterance; texts are put back in split order below.
        by_length = decode_order(fs.meta)
        t, m = self.cfg.training, self.cfg.model

        def decode(model: Any, indices: list[int]) -> tuple[list[str], int]:
            with autocast(self.precision):  # the arithmetic the run trains in
                return decode_features(
                    model,
                    self.processor,
                    fs.features,
                    indices,
                    language=self.token_language,
                    task=m.task,
                    batch_size=t.eval_batch_size,
                    max_new_tokens=t.max_new_tokens,
                )

        if self.zero3:
            state_dict = self.engine._zero3_consolidated_16bit_state_dict()  # collective
            result: list[Any] = [None]
            if self.rank == 0:
                assert self.eval_model is not None
                _load_consolidated(self.eval_model, state_dict)
                result = [decode(self.eval_model, by_length)]
            dist.broadcast_object_list(result, src=0)
            sorted_texts, capped = result[0]
            texts_at = dict(zip(by_length, sorted_texts, strict=True))
        else:
            mine = by_length[self.rank :: self.world]
            texts_mine, capped_mine = decode(self.whisper, mine)
            gathered: list[Any] = [None] * self.world
            dist.all_gather_object(gathered, (mine, texts_mine, capped_mine))
            texts_at = {}
            capped = 0
            for idx, txts, c in gathered:
                texts_at.update(zip(idx, txts, strict=True))
                capped += c
        heap.release()
        texts = [texts_at[i] for i in all_idx]
        ids = [m_.get("id", str(i)) for i, m_ in enumerate(fs.meta)]
        # Scored in the speech's own language (normaliser, CER), whatever token decoded it.
        return score(fs.sentences, texts, ids, m.language, capped)

    # -- checkpoints ------------------------------------------------------------------
    def save(self, state: ckpt.TrainerState, metrics: dict[str, Any]) -> str:
        from ray import train

        if self.bucket is not None:
            return self._save_to_bucket(state, metrics)
        name = ckpt.dir_name(state.step)
        existing = self.run_dir / name
        if existing.is_dir() and ckpt.problem(existing) is None:
            # A finished run started again: its final checkpoint already holds this step.
            train.report(metrics)
            return str(existing)
        if self.job.in_process:
            self._save_in_place(state, name)
            train.report(metrics)
        else:
            with tempfile.TemporaryDirectory(prefix="whisperft-ckpt-") as tmp:
                d = Path(tmp)
                self._write_checkpoint(d, state)
                train.report(
                    metrics,
                    checkpoint=train.Checkpoint.from_directory(str(d)),
                    checkpoint_dir_name=name,
                )
        if self.rank == 0:
            ckpt.prune(
                self.run_dir,
                keep_last=self.cfg.training.keep_checkpoints,
                best_step=state.best_step,
            )
        return str(self.run_dir / name)

    def _save_in_place(self, state: ckpt.TrainerState, name: str) -> None:
        """In-process (Ray Train's local mode persists nothing): written beside the
        run's checkpoints and committed by one rename, so a cut-off save leaves only
        a hidden partial directory, never a checkpoint that looks complete."""
        import shutil

        partial = self.run_dir / f".{name}.partial"
        for stale in self.run_dir.glob(".*.partial"):  # saves cut off earlier (one writer here)
            shutil.rmtree(stale, ignore_errors=True)
        partial.mkdir(parents=True)
        self._write_checkpoint(partial, state)
        target = self.run_dir / name
        if target.exists():  # an incomplete one (a complete one returned early in save)
            shutil.rmtree(target)
        partial.rename(target)

    def _write_checkpoint(self, d: Path, state: ckpt.TrainerState) -> None:
        """This rank's part of a checkpoint into the local directory ``d``, manifest last."""
        self.engine.save_checkpoint(
            str(d),
            tag=ckpt.DS_TAG,
            save_latest=False,
            # LoRA: the adapters and their optimizer state only, not the frozen base.
            exclude_frozen_parameters=self.cfg.lora is not None,
        )
        rng_state.write(d / rng_state.file_name(self.rank), cuda=self.cuda)
        fingerprint = self.optimizer_fingerprint()
        if self.rank == 0:
            (d / ckpt.STATE_FILE).write_text(
                json.dumps(
                    {**json.loads(state.to_json()), "optim_fingerprint": fingerprint}, indent=2
                )
            )
        ckpt.write_manifest(d, self.rank)

    def _save_to_bucket(self, state: ckpt.TrainerState, metrics: dict[str, Any]) -> str:
        import torch.distributed as dist
        from ray import train

        assert self.bucket is not None
        name = ckpt.dir_name(state.step)
        multi = dist.is_initialized() and self.world > 1
        box: list[str | None] = [self.bucket.problem(name) if self.rank == 0 else None]
        if multi:
            dist.broadcast_object_list(box, src=0)
        if box[0] is None:
            train.report(metrics)  # a finished run started again: this step is already there
            return str(self.bucket.prefix(name))
        if self.rank == 0:
            self.bucket.clear(name)  # what a cut-off upload of this step left
        if multi:
            dist.barrier()
        with tempfile.TemporaryDirectory(prefix="whisperft-ckpt-") as tmp:
            d = Path(tmp)
            self._write_checkpoint(d, state)
            self.bucket.upload_rank(d, name, self.rank)
        if multi:
            dist.barrier()  # every rank's manifest is up before anything is pruned
        train.report(metrics)
        if self.rank == 0:
            self.bucket.prune(
                keep_last=self.cfg.training.keep_checkpoints, best_step=state.best_step
            )
            self.upload_events()
        return str(self.bucket.prefix(name))

    def upload_events(self) -> None:
        """Bucket runs: the TensorBoard files beside the checkpoints there (rank 0)."""
        events = self.telemetry.events_dir
        if self.bucket is None or events is None or not events.is_dir():
            return
        self.telemetry.flush()
        for f in sorted(p for p in events.iterdir() if p.is_file()):
            self.bucket.store.upload_file(f, self.bucket.uri.join(EVENTS_DIR, f.name))

    def save_final_model(self, out_dir: Path) -> None:
        state_dict = self.engine._zero3_consolidated_16bit_state_dict() if self.zero3 else None
        if self.rank != 0:
            return
        target = out_dir / "model"
        target.mkdir(parents=True, exist_ok=True)
        module = self.whisper
        if self.cfg.lora is not None:
            # Merged on a CPU copy of the base: the engine's model keeps its adapters.
            weights = lora.adapter_weights(state_dict, self.engine.module)
            module, self.lora_summary = lora.export(self.job.model_dir, self.cfg, weights, out_dir)
            module.generation_config = self.whisper.generation_config
            state_dict = None
        with no_save_progress():
            if state_dict is not None:
                module.save_pretrained(
                    target, state_dict=_whisper_keys(state_dict), safe_serialization=True
                )
            else:
                module.save_pretrained(target, safe_serialization=True)
        self.processor.save_pretrained(target)
        gen = module.generation_config
        if self.multilingual:
            # Decode the exported model under the token it was trained with, by default.
            gen.language, gen.task = self.token_language, self.cfg.model.task
        # The speech's own language (for normaliser and CER), when it has no token of its own.
        gen.whisperft_language = self.cfg.model.language
        gen.save_pretrained(target)
        out = self.cfg.spec.output
        if "ct2" in out.formats:
            from whisperft.trainer.export_ct2 import export_ct2

            report = export_ct2(
                target, out_dir / "ct2", quantization=out.ct2_quantization, replace=True
            )
            self.ct2_report = asdict(report)
            self.say(
                f"exported ct2/ ({report.quantization}, model.bin "
                f"{report.model_bytes / 1e6:.1f} MB) in {report.seconds:.0f} s"
            )

    # -- reporting ----------------------------------------------------------------------
    def publish(self, state: ckpt.TrainerState, **kw: Any) -> None:
        if self.sink is None:
            return
        self.sink.publish(
            Progress(
                step=state.step,
                total_steps=self.steps,
                epoch=state.micro_step / max(1, self._micro_per_epoch()),
                test_wer_before=state.baseline_wer,
                best_eval_wer=state.best_wer,
                best_step=state.best_step,
                **kw,
            )
        )

    def _micro_per_epoch(self) -> int:
        return micro_batches_per_epoch(len(self.train_set), self.world, self.cfg.micro_batch)

    def say(self, msg: str) -> None:
        if self.rank == 0:
            # Not print(): Ray Train patches it to log as well as print when stdout is
            # redirected (as in every Ray worker), and each line would appear twice.
            sys.stdout.write(f"[whisperft] {msg}\n")
            sys.stdout.flush()


def _whisper_keys(state_dict: dict[str, Any]) -> dict[str, Any]:
    """Consolidated keys without the encoder-cache wrapper's prefix, in fp32."""
    return {k.removeprefix("whisper."): v.float() for k, v in state_dict.items()}


# What fixes which examples a step sees (data.collator.micro_batch); a change breaks exact resume.
_DATA_POSITION_FIELDS = (
    ("training", "batchSizePerWorker"),
    ("training", "gradAccum"),
    ("training", "seed"),
    ("dataset", "path"),
    ("dataset", "trainSplit"),
    ("dataset", "maxTrainExamples"),
    ("dataset", "minDurationSeconds"),
    ("dataset", "maxDurationSeconds"),
)


def data_position_changes(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Dotted spec fields of data-order settings that differ between a checkpoint and this run."""

    def get(config: dict[str, Any], section: str, key: str) -> Any:
        return ((config.get("spec") or {}).get(section) or {}).get(key)

    return [
        f"spec.{section}.{key}"
        for section, key in _DATA_POSITION_FIELDS
        if get(saved, section, key) != get(current, section, key)
    ]


def _load_consolidated(model: Any, state_dict: dict[str, Any]) -> None:
    """Load ZeRO-3's consolidated weights; only the tied output projection may be absent."""
    result = model.load_state_dict(_whisper_keys(state_dict), strict=False)
    missing = set(result.missing_keys) - {"proj_out.weight"}
    if missing or result.unexpected_keys:
        raise RuntimeError(
            f"consolidated ZeRO-3 weights do not match the model: missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(result.unexpected_keys)[:5]}"
        )


def peak_memory_mb(cuda: bool) -> dict[str, float]:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    out = {"peak_rss_mb": round(rss, 1)}
    if cuda:
        import torch

        out["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out
