"""The training function every Ray Train worker runs: the recipe's order of
steps (baseline, train, evaluate, save, final model), over trainer.worker.Worker.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from whisperft.trainer import preemption
from whisperft.trainer.checkpoint import FINAL_METRICS
from whisperft.trainer.job import WorkerJob
from whisperft.trainer.worker import Worker, peak_memory_mb


def _progress_bar(w: Worker, done: int) -> Any:
    """A bar the local driver draws (Ray forwards it from rank 0's process; an
    in-process run draws its own)."""
    if w.rank != 0:
        return None
    if w.job.in_process:
        from tqdm.auto import tqdm
    else:
        from ray.experimental.tqdm_ray import tqdm

    bar = tqdm(desc="training", total=w.steps, unit="step")
    bar.update(done)
    return bar


def local_inputs(job: WorkerJob) -> WorkerJob:
    """The job with model and features on this node: the driver's when this pod sees
    them (a shared claim, one machine), else prepared here once per node."""
    if job.config.runtime.shared_scratch or job.train_features.exists():
        return job
    from whisperft.trainer.main import prepare_data
    from whisperft.trainer.node_lock import node_lock

    root = job.encoder_cache_root
    with node_lock(root / ".prepare.lock"):
        prep = prepare_data(job.config, progress=False)
    return prep.job(
        job.config, job.run_dir, job.output_dir, job.progress, in_process=job.in_process
    )


def train_worker(loop_config: dict[str, Any]) -> None:
    """Entry point for ``TorchTrainer(train_loop_per_worker=...)``."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    job = local_inputs(WorkerJob.from_loop_config(loop_config))
    w = Worker(job)
    w.build()
    state = w.restore()
    t = w.cfg.training
    if state.step == 0 and state.baseline_wer is None:
        base = w.evaluate("test")
        state.baseline_wer, state.baseline_cer = base.wer, base.cer
        state.history.append({"step": 0, "split": "test", **base.scores})
        w.say(f"baseline: test {base.describe()}")
        w.telemetry.scalars(0, {"test_wer": base.wer})
    w.say(
        f"training {w.counts['trainable'] / 1e6:.1f}M of {w.counts['total'] / 1e6:.1f}M parameters, "
        f"{w.steps} steps, {w.world} workers, ZeRO-{w.cfg.zero_stage}, {w.precision}"
    )
    last_ckpt: str | None = None
    # Throughput counts optimizer steps only, not evaluation or checkpoint writes.
    train_s, seen0 = 0.0, state.samples_seen
    loss = float("nan")
    bar = _progress_bar(w, state.step) if job.progress else None
    while state.step < w.steps:
        tic = time.perf_counter()
        loss = w.train_step(state)
        train_s += time.perf_counter() - tic
        step = state.step
        if bar is not None:
            bar.update(1)
        if step % t.log_every == 0 or step == w.steps:
            sps = (state.samples_seen - seen0) / max(train_s, 1e-9)
            state.history.append(
                {
                    "step": step,
                    "loss": loss,
                    "lr": w.lr_used,
                    "samples_per_second": sps,
                    "train_mode": w.engine.module.training,
                }
            )
            w.say(
                f"step {step}/{w.steps}  loss {loss:.4f}  lr {w.lr_used:.2e}  {sps:.2f} samples/s"
            )
            w.publish(state, loss=loss, samples_per_second=sps, last_checkpoint=last_ckpt)
            w.telemetry.scalars(
                step, {"loss": loss, "learning_rate": w.lr_used, "samples_per_second": sps}
            )
        if step < w.steps and w.preemption_requested():
            # Stopped from outside (spot reclaim, drain): save this step, say so, stop.
            state.history.append({"event": "preempted", "step": step})
            last_ckpt = w.save(state, {"step": step, "loss": loss, **peak_memory_mb(w.cuda)})
            w.say(f"preempted at step {step}/{w.steps}: checkpoint saved, stopping")
            w.publish(state, loss=loss, last_checkpoint=last_ckpt, preempted_at_step=step)
            if w.sink is not None:
                w.sink.flush(timeout_s=10.0)
            preemption.mark_done()
            raise preemption.Preempted(f"preempted at step {step}")
        new_best = False
        if t.eval_every and step % t.eval_every == 0 and step < w.steps:
            ev = w.evaluate("eval")
            state.history.append({"step": step, "split": "eval", **ev.scores})
            new_best = state.best_wer is None or ev.wer < state.best_wer
            if new_best:
                state.best_wer, state.best_step = ev.wer, step
            w.say(
                f"eval @ step {step}: {ev.describe()} (best WER {state.best_wer:.2%} @ {state.best_step})"
            )
            w.publish(state, loss=loss, eval_wer=ev.wer, last_checkpoint=last_ckpt)
            w.telemetry.scalars(step, {"eval_wer": ev.wer})
        # A new best is saved even off the save interval, so "best" always has a checkpoint.
        if t.save_every and step < w.steps and (step % t.save_every == 0 or new_best):
            last_ckpt = w.save(state, {"step": step, "loss": loss, **peak_memory_mb(w.cuda)})
    if bar is not None:
        bar.close()
    # Final: evaluate the last weights and checkpoint them (the resume point), then
    # export the best evaluated weights and score those on the held-out split.
    dev = w.evaluate("eval")
    state.history.append({"step": state.step, "split": "eval", **dev.scores})
    if state.best_wer is None or dev.wer <= state.best_wer:
        state.best_wer, state.best_step = dev.wer, state.step
    metrics: dict[str, Any] = {
        "step": state.step,
        "loss": loss,
        "test_wer_before": state.baseline_wer,
        "test_cer_before": state.baseline_cer,
        "eval_wer": dev.wer,
        "best_eval_wer": state.best_wer,
        "best_step": state.best_step,
        "samples_per_second": (state.samples_seen - seen0) / max(train_s, 1e-9),
        "precision": w.precision,
        **peak_memory_mb(w.cuda),
    }
    last_ckpt = w.save(state, dict(metrics))
    choice = w.load_export_weights(state, last_ckpt)
    final = w.evaluate("test")
    state.history.append({"step": choice.step, "split": "test", **final.scores})
    w.say(
        f"final: test WER {state.baseline_wer or 0:.2%} -> {final.wer:.2%} ({final.capped} capped),"
        f" exporting step {choice.step} ({'best eval WER' if choice.selected == 'bestEval' else 'last'})"
    )
    w.telemetry.scalars(state.step, {"eval_wer": dev.wer, "test_wer": final.wer})
    w.telemetry.close()
    w.upload_events()
    out_dir = job.output_dir
    bucket_out = w.cfg.runtime.output_uri
    w.save_final_model(out_dir)
    formats = list(w.cfg.spec.output.formats)
    metrics.update(
        {
            "test_wer_after": final.wer,
            "test_cer_after": final.cer,
            "capped_after": final.capped,
            "exported": {**choice.as_dict(), "formats": formats},
            # LoRA: rank, trainable parameters and adapter bytes (rank 0 exported them).
            "lora": w.lora_summary.as_dict() if w.lora_summary is not None else None,
            "ct2": w.ct2_report,
            **peak_memory_mb(w.cuda),
        }
    )
    if w.rank == 0:
        (out_dir / "hypotheses.json").write_text(
            json.dumps(
                [
                    {"id": i, "reference": r, "hypothesis": h}
                    for i, r, h in zip(final.ids, final.references, final.hypotheses, strict=False)
                ],
                indent=1,
            )
        )
        tmp = out_dir / f".{FINAL_METRICS}.partial"
        tmp.write_text(json.dumps({"metrics": metrics, "history": state.history}, indent=1))
        tmp.replace(out_dir / FINAL_METRICS)
        if bucket_out:
            from whisperft.trainer.outputs import upload_model

            upload_model(out_dir, bucket_out, formats)
            w.say(f"uploaded the model to {bucket_out}")
    w.publish(
        state,
        loss=loss,
        eval_wer=dev.wer,
        test_wer_after=final.wer,
        last_checkpoint=last_ckpt,
        model_path=f"{bucket_out.rstrip('/')}/model" if bucket_out else str(out_dir / "model"),
        model_step=choice.step,
        model_checkpoint=choice.checkpoint,
        model_selected=choice.selected,
        model_formats=formats,
    )
    if w.sink is not None and not w.sink.flush(timeout_s=30.0):
        w.say("warning: the final status report was not delivered within 30 s")
