"""The DeepSpeed JSON and the LR schedule built from a TrainConfig (pure: no torch import).

DeepSpeed owns the optimizer and steps the schedule, so its checkpoints hold
the whole training state; `overrides` is merged last for expert use.

The schedule is ours (a torch LambdaLR over `lr_multiplier`), not DeepSpeed's
Warmup*LR: those hold the minimum LR for the first two optimizer steps (one
from construction, one at iteration 0), so a short run's first steps train
nothing.
"""

from __future__ import annotations

import copy
import math
from functools import partial
from typing import Any

from whisperft.trainer.config import TrainConfig
from whisperft.trainer.precision import AMP_BF16, resolve


def resolve_precision(
    cfg: TrainConfig, *, cuda: bool, bf16_supported: bool, cpu_bf16: bool = False
) -> str:
    """The precision a run actually uses (see trainer.precision.resolve)."""
    return resolve(cfg.training.precision, cuda=cuda, gpu_bf16=bf16_supported, cpu_bf16=cpu_bf16)


def total_steps(cfg: TrainConfig, *, n_train: int, world_size: int) -> int:
    """Optimizer steps for the run: max_steps, or epochs over the sharded data."""
    t = cfg.training
    if t.max_steps is not None:
        return t.max_steps
    assert t.epochs is not None
    per_step = cfg.micro_batch * cfg.grad_accum * world_size
    steps_per_epoch = max(1, n_train // per_step)
    return max(1, round(steps_per_epoch * t.epochs))


def lr_multiplier(done: int, *, schedule: str, warmup: int, total: int) -> float:
    """Factor on the peak LR for the optimizer step that follows ``done`` steps.

    ``done`` is torch LambdaLR's ``last_epoch``. Warm-up rises linearly so that
    step 1 already trains (1/warmup of the peak) and step ``warmup`` is at the
    peak; linear and cosine decay end above zero, so the last step still counts.
    """
    k = done + 1
    if warmup and k <= warmup:
        return k / warmup
    if schedule == "constant":
        return 1.0
    frac = min(max(k - warmup - 1, 0) / max(total - warmup, 1), 1.0)
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * frac))
    return 1.0 - frac


def lr_schedule(cfg: TrainConfig, *, steps: int) -> partial[float]:
    """The LambdaLR function of a run (a partial, so its checkpointed state is plain)."""
    t = cfg.training
    warmup = min(t.warmup_steps, max(steps - 1, 0))
    return partial(lr_multiplier, schedule=t.lr_schedule, warmup=warmup, total=steps)


def build_deepspeed_config(
    cfg: TrainConfig, *, world_size: int, precision: str, cuda: bool
) -> dict[str, Any]:
    t = cfg.training
    ds = cfg.runtime.deepspeed
    optimizer: dict[str, Any] = {
        "type": "AdamW",
        "params": {
            "lr": t.learning_rate,
            "betas": [t.adam_beta1, t.adam_beta2],
            "eps": t.adam_epsilon,
            "weight_decay": t.weight_decay,
        },
    }
    if not cuda or (not ds.offload_optimizer and ds.stage == 0):
        # FusedAdam needs CUDA; the CPU accelerator gets plain torch AdamW.
        optimizer["params"]["torch_adam"] = True
    zero: dict[str, Any] = {"stage": ds.stage}
    if ds.stage >= 1:
        zero.update(
            {
                "overlap_comm": cuda,
                "contiguous_gradients": True,
                "reduce_bucket_size": 5e7,
            }
        )
    if ds.stage == 2:
        zero["allgather_bucket_size"] = 5e7
    if ds.stage == 3:
        zero.update(
            {
                "stage3_prefetch_bucket_size": 5e7,
                "stage3_param_persistence_threshold": 1e5,
                # Needed so that eval can consolidate full weights on rank 0.
                "stage3_gather_16bit_weights_on_model_save": True,
            }
        )
    if ds.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": cuda}
    if ds.offload_params:
        zero["offload_param"] = {"device": "cpu", "pin_memory": cuda}

    config: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": cfg.micro_batch,
        "gradient_accumulation_steps": cfg.grad_accum,
        "train_batch_size": cfg.micro_batch * cfg.grad_accum * world_size,
        "gradient_clipping": t.max_grad_norm,
        "optimizer": optimizer,
        "zero_optimization": zero,
        "bf16": {"enabled": precision == "bf16"},
        "fp16": {"enabled": precision == "fp16", "loss_scale": 0, "initial_scale_power": 16},
        "steps_per_print": 10**9,  # we log ourselves
        "wall_clock_breakdown": False,
        "zero_allow_untested_optimizer": True,
    }
    if precision == AMP_BF16:
        # CPU mixed precision: fp32 weights and optimizer, bf16 matrix products in forward.
        config["torch_autocast"] = {"enabled": True, "dtype": "bfloat16"}
    if ds.offload_optimizer and not cuda:
        # DeepSpeedCPUAdam needs a compiled op; plain AdamW works with offload on CPU.
        config["zero_force_ds_cpu_optimizer"] = False
    return _merge(config, t.deepspeed.overrides)


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out
