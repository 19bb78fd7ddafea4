"""The model-states part of the planner benchmark: real DeepSpeed engines (CPU
accelerator, gloo; two workers are two spawned processes) built with the trainer's own
DeepSpeed JSON, ZeRO 0-3, fp32 and bf16, frozen encoder and LoRA. Bytes are counted
from the engine's tensors, each storage once (``census``), at every moment where
DeepSpeed holds more than at the one before:

- ``forward``: in the forward of ``proj_out``, the last module (ZeRO-3 has gathered
  what it keeps gathered);
- ``end_of_backward``: when the backward's gradient epilogue starts (ZeRO-1/2 still
  hold their reduce buckets, ``setup_buckets``);
- ``allreduce``: ZeRO-0's engine has flattened the gradients into one bucket for the
  all-reduce (``buffered_allreduce_fallback``);
- ``after_backward``: after ``engine.backward``;
- ``grad_conversion``: ZeRO-1/2/3 have flattened the 16-bit gradient partition and
  converted it to fp32 (``flat.to(fp32)``), both still alive;
- ``optimizer_step``: the inner optimizer's ``step`` starts (fp32 gradients, Adam's
  m and v).

The forward runs every Whisper module on 8 mel frames: model states do not depend
on the input length, and a 2-core machine cannot afford 1500 positions in emulated
bf16.
"""

from __future__ import annotations

import gc
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from planner_common import MIB, _free_port, _train_config, prepare, whisper

from whisperft.operator.planning.whisper_sizes import SIZES


@dataclass(frozen=True)
class StateCase:
    model: str
    stage: int
    precision: str  # fp32 or bf16
    frozen_encoder: bool = False
    lora: bool = False

    @property
    def label(self) -> str:
        extra = " frozen-enc" if self.frozen_encoder else ""
        extra += " lora" if self.lora else ""
        return f"{self.model} ZeRO-{self.stage} {self.precision}{extra}"


def state_cases(quick: bool) -> list[StateCase]:
    stages = (0, 1, 2, 3)
    precisions = ("bf16",) if quick else ("fp32", "bf16")
    cases = [StateCase("tiny", s, p) for p in precisions for s in stages]
    if not quick:
        cases += [
            StateCase("tiny", 2, "bf16", frozen_encoder=True),
            StateCase("tiny", 3, "bf16", frozen_encoder=True),
            StateCase("tiny", 0, "bf16", lora=True),
            StateCase("tiny", 2, "bf16", lora=True),
            StateCase("tiny", 3, "bf16", lora=True),
            StateCase("base", 2, "bf16"),
            StateCase("base", 3, "bf16"),
        ]
    return cases


class ShortInput:
    """Runs every Whisper module on an 8-frame input (model states do not depend on its length)."""

    @staticmethod
    def module(model: Any) -> Any:
        import torch
        from torch import nn

        class Short(nn.Module):
            def __init__(self, whisper: Any) -> None:
                super().__init__()
                self.whisper = whisper

            def forward(self, mel: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
                w = (
                    self.whisper.get_base_model()
                    if hasattr(self.whisper, "get_base_model")
                    else self.whisper
                )
                enc = w.model.encoder
                h = nn.functional.gelu(enc.conv1(mel))
                h = nn.functional.gelu(enc.conv2(h)).permute(0, 2, 1)
                pos = torch.arange(h.shape[1], device=h.device)
                h = h + enc.embed_positions(pos)
                for layer in enc.layers:
                    h = layer(h, None)
                h = enc.layer_norm(h)
                out = w.model.decoder(input_ids=ids, encoder_hidden_states=h).last_hidden_state
                logits = w.proj_out(out)
                return nn.functional.cross_entropy(logits.float().flatten(0, 1), ids.flatten())

        return Short(model)


def _storage(t: Any) -> tuple[int, int] | None:
    if t is None or t.numel() == 0 or t.is_meta:  # DeepSpeed keeps shape-only meta tensors
        return None
    s = t.untyped_storage()
    return (s.data_ptr(), s.nbytes())


def census(
    engine: Any,
    module: Any,
    debug: dict[str, int] | None = None,
    extra_gradients: tuple[Any, ...] = (),
) -> dict[str, int]:
    """Bytes per component of every tensor the engine holds, each storage counted once.

    weights: the module's parameters (ZeRO-3: their ds_tensor partitions and any
    still gathered); gradients: parameters' .grad and every optimizer attribute
    whose path names a gradient (partitions, buckets, fp32 partition .grad);
    optimizer: the inner optimizer's state and fp32 master partitions;
    other: anything else the optimizer object holds.
    """
    import torch

    seen: dict[int, str] = {}
    out = {"weights": 0, "gradients": 0, "optimizer": 0, "other": 0}
    other: dict[str, int] = {}  # what the optimizer's attributes hold, by path

    def add(t: Any, kind: str) -> None:
        st = _storage(t)
        if st is None or st[0] in seen:
            return
        seen[st[0]] = kind
        out[kind] += st[1]

    params = list(module.parameters())
    for p in params:
        add(p.data, "weights")
        add(getattr(p, "ds_tensor", None), "weights")
    for p in params:
        add(p.grad, "gradients")
    for t in extra_gradients:
        add(t, "gradients")
    opt = engine.optimizer
    inner = getattr(opt, "optimizer", opt)
    for state in inner.state.values():
        for v in state.values():
            if isinstance(v, torch.Tensor):
                add(v, "optimizer")
    for group in inner.param_groups:
        for p in group["params"]:
            add(p.grad, "gradients")
            add(p.data, "optimizer")  # fp32 master partitions (module params are counted above)
    visited: set[int] = set()

    def walk(obj: Any, path: str, depth: int) -> None:
        if depth > 8 or id(obj) in visited:
            return
        visited.add(id(obj))
        if isinstance(obj, torch.Tensor):
            low = path.lower()
            kind = "other"
            if any(w in low for w in ("grad", "ipg", "bucket")):
                kind = "gradients"  # gradient partitions, reduce buckets
            elif "fp32" in low:
                kind = "optimizer"  # fp32 master partitions
            before = out[kind]
            add(obj, kind)
            if out[kind] > before:
                other[f"{kind}:{path}"] = other.get(f"{kind}:{path}", 0) + out[kind] - before
            add(obj.grad, "gradients")
            return
        if isinstance(obj, dict):
            for k, v in list(obj.items()):
                walk(v, f"{path}.{k}" if isinstance(k, str) else path, depth + 1)
        elif isinstance(obj, (list, tuple)):
            for v in obj:
                walk(v, path, depth + 1)
        elif isinstance(obj, torch.nn.Module | torch.optim.Optimizer):
            return
        elif type(obj).__module__.startswith("deepspeed") and hasattr(obj, "__dict__"):
            for k, v in list(vars(obj).items()):
                walk(v, f"{path}.{k}", depth + 1)

    walk(opt, "opt", 0)
    if debug is not None:
        debug.update(other)
    return out


def _watch_grad_conversion(opt: Any, seen: Callable[..., None]) -> None:
    """ZeRO-1/2 flatten a partition's 16-bit gradients and convert the copy to fp32
    (``flat.to(fp32)``) while both still exist: count that moment too."""
    import torch

    for name in ("flatten", "flatten_dense_tensors_aligned"):
        original = getattr(opt, name, None)
        if original is None:
            continue

        def wrapper(*a: Any, _orig: Any = original, **k: Any) -> Any:
            flat = _orig(*a, **k)
            if isinstance(flat, torch.Tensor):

                def to(*ta: Any, **tk: Any) -> Any:
                    converted = torch.Tensor.to(flat, *ta, **tk)
                    seen(flat, converted)
                    return converted

                flat.to = to  # type: ignore[method-assign]
            return flat

        setattr(opt, name, wrapper)


def _watch_allreduce_flatten(engine: Any, seen: Callable[..., None]) -> None:
    """ZeRO-0's all-reduce (``buffered_allreduce_fallback``) flattens the gradients into
    one bucket of up to ``MEMORY_OPT_ALLREDUCE_SIZE`` elements: count the moment it exists."""
    import torch

    original = engine.flatten

    def wrapper(*a: Any, **k: Any) -> Any:
        flat = original(*a, **k)
        if isinstance(flat, torch.Tensor):
            seen(flat)
        return flat

    engine.flatten = wrapper


def _watch_epilogue(opt: Any, seen: Callable[[], None]) -> None:
    """ZeRO-1/2/3 reduce the last bucket and release the buckets in the gradient epilogue:
    count what is held when it starts."""
    original = getattr(opt, "independent_gradient_partition_epilogue", None)
    if original is None:
        return

    def wrapper(*a: Any, **k: Any) -> Any:
        seen()
        return original(*a, **k)

    opt.independent_gradient_partition_epilogue = wrapper
    release = getattr(opt, "_release_ipg_buffers", None)
    if release is None:
        return

    def before_release(*a: Any, **k: Any) -> Any:
        seen()  # the gradients are out of the buckets, the buckets not yet released
        return release(*a, **k)

    opt._release_ipg_buffers = before_release


def _engine_states(case: StateCase, world: int) -> dict[str, Any]:
    """Build one engine as the trainer does, run two steps, count its tensors at each moment."""
    import deepspeed
    import torch

    from whisperft.trainer.deepspeed_config import build_deepspeed_config

    torch.manual_seed(0)
    model = prepare(
        whisper(SIZES[case.model]), frozen_encoder=case.frozen_encoder, lora=case.lora, ckpt=False
    )
    trainable = [p for p in model.parameters() if p.requires_grad]
    short = ShortInput.module(model)
    cfg = build_deepspeed_config(
        _train_config(case.stage), world_size=world, precision=case.precision, cuda=False
    )
    engine, _, _, _ = deepspeed.initialize(model=short, model_parameters=trainable, config=cfg)
    opt = engine.optimizer
    inner = getattr(opt, "optimizer", opt)
    seen: dict[str, list[dict[str, int]]] = {
        "forward": [],
        "optimizer_step": [],
        "grad_conversion": [],
        "end_of_backward": [],
        "allreduce": [],
    }
    original = inner.step

    def step(*a: Any, **k: Any) -> Any:
        seen["optimizer_step"].append(census(engine, short))
        return original(*a, **k)

    inner.step = step
    _watch_grad_conversion(
        opt, lambda *ts: seen["grad_conversion"].append(census(engine, short, None, ts))
    )
    _watch_epilogue(opt, lambda: seen["end_of_backward"].append(census(engine, short)))
    if case.stage == 0:
        _watch_allreduce_flatten(
            engine, lambda *ts: seen["allreduce"].append(census(engine, short, None, ts))
        )
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    # after DeepSpeed's own pre-forward hook: ZeRO-3 has gathered proj_out (the largest tensor)
    base.proj_out.register_forward_pre_hook(
        lambda *_: seen["forward"].append(census(engine, short))
    )
    dtype = torch.bfloat16 if case.precision == "bf16" else torch.float32
    mel = torch.randn(1, model.config.num_mel_bins, 8, dtype=dtype)
    ids = torch.randint(0, 50000, (1, 4))
    after_backward: dict[str, int] = {}
    for i in range(2):  # the first step creates Adam's state; the second is measured
        if i == 1:
            for counts_seen in seen.values():
                counts_seen.clear()
        loss = engine(mel, ids)
        engine.backward(loss)
        if i == 1:
            after_backward = census(engine, short)
        engine.step()
    moments = {"after_backward": after_backward}
    for name, counted in seen.items():  # each watched moment: its largest occurrence
        if counted:
            moments[name] = max(counted, key=lambda c: sum(c.values()))

    def numel(p: Any) -> int:  # ZeRO-3 leaves an empty tensor and records the real size
        return int(getattr(p, "ds_numel", p.numel()))

    counts = {
        "trainable_params": sum(numel(p) for p in trainable),
        "total_params": sum(numel(p) for p in model.parameters()),
    }
    inner.step = original
    engine.destroy()  # hooks and buffers, so the next case starts clean
    return {**counts, "moments": moments}


def _states_worker(rank: int, world: int, port: int, cases: list[StateCase], out_dir: str) -> None:
    """One rank: build each engine, run two steps, count its tensors."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_WORLD_SIZE=str(world),
    )
    import deepspeed
    import torch

    torch.set_num_threads(1)
    deepspeed.init_distributed(dist_backend="gloo")
    results = []
    for case in cases:
        results.append(
            {"case": asdict(case), "workers": world, "rank": rank, **_engine_states(case, world)}
        )
        gc.collect()
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(results))
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


def measure_states(cases: list[StateCase], world: int) -> list[dict[str, Any]]:
    """Counts for every case on ``world`` gloo processes (torch.multiprocessing spawn), per
    moment the largest over the ranks (the GPU that runs out first)."""
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_states_worker, args=(world, _free_port(), cases, tmp), nprocs=world, join=True)
        ranks = [json.loads(Path(tmp, f"rank{r}.json").read_text()) for r in range(world)]
    rows: list[dict[str, Any]] = ranks[0]
    for i, row in enumerate(rows):
        for name, counts in row["moments"].items():
            per_rank = [rk[i]["moments"][name] for rk in ranks]
            row["moments"][name] = max(per_rank, key=lambda c: sum(c.values()))
            row.setdefault("per_rank_totals_mib", {})[name] = [
                round(sum(c.values()) / MIB, 1) for c in per_rank
            ]
            del counts
    return rows
