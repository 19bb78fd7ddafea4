"""The training function every Ray Train worker runs: the recipe's order of
steps (baseline, train, evaluate, save, final model), over trainer.worker.Worker.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from whisperft.trainer.job import WorkerJob
from whisperft.trainer.worker import Worker, peak_memory_mb


def _progress_bar(w: Worker, done: int) -> Any:
    """A bar the local driver draws (Ray forwards it from rank 0's process)."""
    if w.rank != 0:
        return None
    from ray.experimental.tqdm_ray import tqdm

    bar = tqdm(desc="training", total=w.steps, unit="step")
    bar.update(done)
    return bar


def train_worker(loop_config: dict[str, Any]) -> None:
    """Entry point for ``TorchTrainer(train_loop_per_worker=...)``."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    job = WorkerJob.from_loop_config(loop_config)
    w = Worker(job)
    w.build()
    state = w.restore()
    t = w.cfg.training
    if state.step == 0 and state.baseline_wer is None:
        base = w.evaluate("test")
        state.baseline_wer, state.baseline_cer = base.wer, base.cer
        state.history.append({"step": 0, "split": "test", **base.scores})
        w.say(f"baseline: test {base.describe()}")
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
        # A new best is saved even off the save interval, so "best" always has a checkpoint.
        if t.save_every and step < w.steps and (step % t.save_every == 0 or new_best):
            last_ckpt = w.save(state, {"step": step, "loss": loss, **peak_memory_mb(w.cuda)})
    if bar is not None:
        bar.close()
    # Final: eval on the held-out split, final checkpoint, final model.
    dev = w.evaluate("eval")
    final = w.evaluate("test")
    state.history.append({"step": state.step, "split": "eval", **dev.scores})
    state.history.append({"step": state.step, "split": "test", **final.scores})
    if state.best_wer is None or dev.wer <= state.best_wer:
        state.best_wer, state.best_step = dev.wer, state.step
    w.say(
        f"final: test WER {state.baseline_wer or 0:.2%} -> {final.wer:.2%} ({final.capped} capped)"
    )
    out_dir = job.output_dir
    w.save_final_model(out_dir)
    metrics = {
        "step": state.step,
        "loss": loss,
        "test_wer_before": state.baseline_wer,
        "test_wer_after": final.wer,
        "test_cer_before": state.baseline_cer,
        "test_cer_after": final.cer,
        "eval_wer": dev.wer,
        "best_eval_wer": state.best_wer,
        "best_step": state.best_step,
        "samples_per_second": (state.samples_seen - seen0) / max(train_s, 1e-9),
        "capped_after": final.capped,
        **peak_memory_mb(w.cuda),
    }
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
    last_ckpt = w.save(state, metrics)
    w.publish(
        state,
        loss=loss,
        eval_wer=dev.wer,
        test_wer_after=final.wer,
        last_checkpoint=last_ckpt,
        model_path=str(out_dir / "model"),
    )
