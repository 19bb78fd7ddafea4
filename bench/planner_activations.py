"""The activations part of the planner benchmark: one forward and backward of Whisper
(random weights from the published dims, fp32, CPU, SDPA or eager attention), the
allocations from the torch profiler's memory events: what the forward leaves allocated,
split at the encoder's and decoder's module boundaries (module hooks), and the peak of
the backward above it (``transient``). Parameter gradients are allocated before the
measurement, so only activations count (and the short-lived per-parameter gradients of
the backward, which are real transients)."""

from __future__ import annotations

import bisect
import gc
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

from planner_common import MIB, prepare, rel, whisper

from whisperft.operator.planning.activations import activations
from whisperft.operator.planning.whisper_sizes import SIZES


@dataclass(frozen=True)
class ActCase:
    model: str
    batch: int
    labels: int
    ckpt: bool = False
    frozen_encoder: bool = False
    lora: bool = False
    attn: str = "sdpa"

    @property
    def label(self) -> str:
        opts = [o for o, on in (("ckpt", self.ckpt), ("frozen-enc", self.frozen_encoder)) if on]
        opts += ["lora"] if self.lora else []
        opts += ["eager"] if self.attn == "eager" else []
        return f"{self.model} b{self.batch} T{self.labels}" + (" " + "+".join(opts) if opts else "")


def activation_cases(quick: bool) -> list[ActCase]:
    t = ActCase("tiny", 1, 32)
    if quick:
        return [
            t,
            replace(t, batch=4, ckpt=True),
            replace(t, frozen_encoder=True),
            replace(t, lora=True),
        ]
    b = ActCase("base", 2, 32)
    s = ActCase("small", 1, 32)
    return [
        t,
        replace(t, batch=4),
        replace(t, labels=128),
        replace(t, ckpt=True),
        replace(t, batch=8, ckpt=True),
        replace(t, frozen_encoder=True),
        replace(t, frozen_encoder=True, ckpt=True, batch=4),
        replace(t, lora=True),
        replace(t, lora=True, ckpt=True, batch=4),
        replace(t, lora=True, frozen_encoder=True),
        replace(t, attn="eager"),
        b,
        replace(b, labels=128),
        replace(b, ckpt=True, batch=4),
        replace(b, frozen_encoder=True),
        replace(b, lora=True),
        replace(b, lora=True, ckpt=True),
        replace(b, attn="eager", batch=1),
        s,
        replace(s, batch=2, ckpt=True),
        replace(s, frozen_encoder=True, batch=2),
        replace(s, lora=True),
    ]


def measure_activations(case: ActCase) -> dict[str, float]:
    """Allocated bytes of one forward + backward, split by the forward's module boundaries."""
    import torch
    from torch.profiler import ProfilerActivity, profile, record_function

    torch.manual_seed(0)
    model = prepare(
        whisper(SIZES[case.model], case.attn),
        frozen_encoder=case.frozen_encoder,
        lora=case.lora,
        ckpt=case.ckpt,
    )
    model.train()
    for p in model.parameters():  # gradients exist before: only activations are counted
        if p.requires_grad:
            p.grad = torch.zeros_like(p)
    open_marks: dict[str, Any] = {}
    hooks = []
    for tag, module in (("encoder", model.model.encoder), ("decoder", model.model.decoder)):

        def pre(_m: Any, _a: Any, tag: str = tag) -> None:
            open_marks[tag] = record_function(tag)
            open_marks[tag].__enter__()

        def post(_m: Any, _a: Any, _o: Any, tag: str = tag) -> None:
            open_marks.pop(tag).__exit__(None, None, None)

        hooks += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
    b, n_mels = case.batch, model.config.num_mel_bins
    gc.collect()
    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        with record_function("forward"):
            # the batch is allocated inside the measurement, as on a GPU
            x = torch.randn(b, n_mels, 3000)
            dec = torch.randint(0, 50000, (b, case.labels))
            lab = torch.randint(0, 50000, (b, case.labels))
            lab[:, :3] = -100  # the prompt prefix is not scored
            out = model(input_features=x, decoder_input_ids=dec, labels=lab)
        with record_function("backward"):
            out.loss.backward()
        del out, x, dec, lab
    seconds = time.perf_counter() - t0
    for h in hooks:
        h.remove()
    events = prof.profiler.kineto_results.events()
    spans = {
        e.name(): (e.start_ns(), e.end_ns())
        for e in events
        if e.name() in {"forward", "backward", "encoder", "decoder"}
    }
    mem = sorted(
        (e.start_ns(), i, e.nbytes()) for i, e in enumerate(events) if e.name() == "[memory]"
    )
    times = [m[0] for m in mem]
    cum: list[int] = []
    total = 0
    for _, _, n in mem:
        total += n
        cum.append(total)

    def at(t: int) -> int:
        i = bisect.bisect_right(times, t)
        return cum[i - 1] if i else 0

    f0, f1 = spans["forward"]
    _, b1 = spans["backward"]
    e1 = spans["encoder"][1]
    d1 = spans["decoder"][1]
    lo, hi = bisect.bisect_left(times, f0), bisect.bisect_right(times, b1)
    peak = max(cum[lo:hi]) - at(f0)
    held = at(f1) - at(f0)
    del model
    gc.collect()
    return {
        "encoder": at(e1) - at(f0),
        "decoder": at(d1) - at(e1),
        "logits": at(f1) - at(d1),
        "transient": peak - held,
        "total": peak,
        "seconds": round(seconds, 1),
    }


def predict_activations(case: ActCase) -> dict[str, float]:
    a = activations(
        SIZES[case.model],
        batch=case.batch,
        label_tokens=case.labels,
        precision="fp32",
        gradient_checkpointing=case.ckpt,
        frozen_encoder=case.frozen_encoder,
        lora=case.lora,
        sdpa=case.attn == "sdpa",
        device="cpu",
    )
    return {
        "encoder": a.encoder,
        "decoder": a.decoder,
        "logits": a.logits,
        "transient": a.transient,
        "total": a.total,
    }


ACT_KEYS = ("encoder", "decoder", "logits", "transient", "total")


def run_activations(quick: bool, log: Callable[[str], None]) -> list[dict[str, Any]]:
    import torch

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    rows = []
    for case in activation_cases(quick):
        meas = measure_activations(case)
        pred = predict_activations(case)
        row: dict[str, Any] = {
            "case": asdict(case),
            "label": case.label,
            "measured_mib": {k: round(meas[k] / MIB, 2) for k in ACT_KEYS},
            "predicted_mib": {k: round(pred[k] / MIB, 2) for k in ACT_KEYS},
            "error": {k: rel(pred[k], meas[k]) for k in ACT_KEYS},
            "seconds": meas["seconds"],
        }
        rows.append(row)
        log(
            f"activations {case.label}: measured {row['measured_mib']['total']} MiB, "
            f"predicted {row['predicted_mib']['total']} MiB ({meas['seconds']} s)"
        )
    return rows
