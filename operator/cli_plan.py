"""`whisperft plan FILE`: the memory and disk plan of a WhisperFineTune, per node
pool, as the operator would make it, without a cluster.

Exit status: 0 every plan fits, 1 one does not (or the operator would refuse the
resource), 2 bad input. Heavy imports stay inside the command (no torch).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

EPILOG = """\
Per GPU it prints the parameters, gradients and optimizer states, the activations
of one micro-batch (encoder, decoder and logits, with and without gradient
checkpointing), the temporary buffers, the framework overhead and the headroom
left; per pod the CPU memory that offload needs; then the disk the run needs on
its checkpoint claim. With deepspeed.mode auto the strategy shown is the one the
planner picked, with the reason for each change (docs/planning.md).

Node pools come from --settings: the chart's values file (charts/whisperft/
values.yaml, or your override) or an operator settings file; without it, the
built-in defaults (L4 24 GiB, A100 80 GiB, H100 80 GiB).

exit status: 0 fits, 1 does not fit or would be refused, 2 bad input
"""


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "plan",
        help="show the memory and disk plan of a WhisperFineTune per node pool (no cluster)",
        description="Show what a WhisperFineTune needs per GPU, per pod and on disk, and whether it fits.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "file", type=Path, help="WhisperFineTune YAML (multi-document allowed; '-' for stdin)"
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument(
        "--pool", help="plan on this node pool (default: spec.resources.accelerator)"
    )
    which.add_argument("--all-pools", action="store_true", help="plan on every configured pool")
    p.add_argument("--settings", type=Path, help="chart values or operator settings YAML")
    p.add_argument("--clips", type=int, help="clips in the dataset (all splits), for the disk plan")
    p.add_argument("--json", action="store_true", help="print the same numbers as JSON")
    p.set_defaults(func=_plan)


def _load_settings(path: Path | None) -> Any:
    import yaml

    from whisperft.operator.settings import Settings, SettingsError, load_settings

    if path is None:
        return load_settings({})
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise SettingsError(f"--settings {path}: file not found") from None
    except yaml.YAMLError as exc:
        raise SettingsError(f"--settings {path}: cannot parse YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise SettingsError(f"--settings {path}: expected a mapping at the top level")
    if isinstance(
        raw.get("nodePools"), list
    ):  # the chart's values: as templates/configmap.yaml maps them
        pools = {}
        for pool in raw["nodePools"]:
            if not isinstance(pool, dict) or "accelerator" not in pool:
                raise SettingsError(
                    f"--settings {path}: every nodePools entry needs an accelerator"
                )
            pools[pool["accelerator"]] = {k: v for k, v in pool.items() if k != "accelerator"}
        defaults = raw.get("defaults") or {}
        base = Settings().to_wire()
        settings = {"nodePools": pools}
        for key, value_key in (
            ("workerDefaults", "workerResources"),
            ("cpuWorkerDefaults", "cpuWorkerResources"),
            ("headDefaults", "headResources"),
        ):
            if isinstance(defaults.get(value_key), dict):
                settings[key] = {**base[key], **defaults[value_key]}
        if raw.get("readWriteManyStorageClasses"):
            settings["readWriteManyStorageClasses"] = raw["readWriteManyStorageClasses"]
        raw = settings
    import os
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump(raw, f)
    try:
        return load_settings({"WHISPERFT_SETTINGS_FILE": f.name})
    finally:
        os.unlink(f.name)


def _gib(b: float) -> float:
    return round(b / 1024**3, 3)


def plan_report(spec: Any, settings: Any, pool: str | None, clips: int | None) -> dict[str, Any]:
    """The plan of one resource on one pool (None: CPU workers) as plain data."""
    from whisperft.operator.planning.memory import activation_bytes
    from whisperft.operator.planning.resolve import disk_plan, plan_input, resolve
    from whisperft.operator.planning.whisper_sizes import dims_for

    if pool is not None and pool != spec.resources.accelerator:
        spec = spec.model_copy(
            update={"resources": spec.resources.model_copy(update={"accelerator": pool})}
        )
    res = resolve(spec, settings)
    plan = res.plan
    inp = plan_input(
        spec,
        gpu_memory_gib=res.pool.gpu_memory_gib if res.pool else None,
        pod_memory_gib=res.worker.memory_gib,
    )
    disk = disk_plan(spec, inp, plan, clips=clips)
    out: dict[str, Any] = {
        "pool": pool or "cpu",
        "gpuMemoryGiB": plan.gpu_memory_gib,
        "podMemoryGiB": round(res.worker.memory_gib, 2),
        "verdict": plan.verdict,
        "fits": res.problem is None and (disk is None or disk.fits),
        "problem": None
        if res.problem is None
        else f"{res.problem.reason.value}: {res.problem.message}",
        "notes": plan.notes,
        "reasons": plan.reasons,
    }
    s, est, dims = plan.strategy, plan.estimate, dims_for(spec.model.name)
    if s is not None:
        out["strategy"] = {
            "microBatch": s.micro_batch,
            "gradAccum": s.grad_accum,
            "gradientCheckpointing": s.gradient_checkpointing,
            "zeroStage": s.stage,
            "offloadOptimizer": s.offload_optimizer,
            "offloadParams": s.offload_params,
            "lora": s.lora,
        }
    if s is not None and est is not None and dims is not None:
        other = activation_bytes(
            dims, inp, replace(s, gradient_checkpointing=not s.gradient_checkpointing), sdpa=False
        )
        with_gc, without_gc = (
            (est.activations_upper, other)
            if s.gradient_checkpointing
            else (other, est.activations_upper)
        )
        usable = None if plan.gpu_memory_gib is None else plan.gpu_memory_gib * 0.92
        out["perGpuGiB" if plan.gpu_memory_gib is not None else "perWorkerGiB"] = {
            "parameters": est.weights_gib,
            "gradients": est.gradients_gib,
            "optimizerStates": est.optimizer_gib,
            # Each component above is at its own peak; DeepSpeed never holds all three
            # peaks at once (ZeRO-3's gathered weights are gone by the optimizer step),
            # so the total counts the largest single moment of the three together.
            "modelStatesPeak": round(est.model_states_gib, 3),
            "activations": {
                "encoder": _gib(est.activations_upper.encoder),
                "decoder": _gib(est.activations_upper.decoder),
                "logits": _gib(est.activations_upper.logits),
                "lowerBound": round(est.activations_lower_gib, 3),
                "withCheckpointing": _gib(with_gc.total - with_gc.transient),
                "withoutCheckpointing": _gib(without_gc.total - without_gc.transient),
            },
            "temporaryBuffers": _gib(est.activations_upper.transient),
            "frameworkOverhead": est.overhead_gib,
            "total": round(est.upper_gib, 3),
            "totalLowerBound": round(est.lower_gib, 3),
            "usable": None if usable is None else round(usable, 3),
            "headroom": plan.headroom_gib,
        }
        out["hostOffloadGiBPerPod"] = est.cpu_offload_gib
        out["trainableParams"] = est.trainable_params
        out["params"] = est.total_params
    if disk is not None:
        out["disk"] = {
            "features": disk.features_gib,
            "encoderCache": disk.encoder_cache_gib,
            "modelCache": disk.model_cache_gib,
            "checkpoint": disk.checkpoint_gib,
            "checkpointsOnDisk": disk.checkpoints_on_disk,
            "export": disk.export_gib,
            "total": round(disk.known_gib, 3),
            "claim": disk.claim_gib,
            "fits": disk.fits,
            "notes": list(disk.notes),
        }
    return out


def _print_text(name: str, model: str, r: dict[str, Any]) -> None:
    where = f"{r['gpuMemoryGiB']:g} GiB GPUs" if r["gpuMemoryGiB"] else "CPU workers"
    head = "fits" if r["fits"] else "DOES NOT FIT"
    print(
        f"{name} ({model}) on {r['pool']} ({where}, {r['podMemoryGiB']:g} GiB pods): {head} [{r['verdict']}]"
    )
    if "strategy" in r:
        st = r["strategy"]
        print(
            f"  strategy: micro-batch {st['microBatch']} x {st['gradAccum']} accumulation, "
            f"checkpointing {'on' if st['gradientCheckpointing'] else 'off'}, ZeRO-{st['zeroStage']}"
            f"{', optimizer offload' if st['offloadOptimizer'] else ''}"
            f"{', parameter offload' if st['offloadParams'] else ''}{', LoRA' if st['lora'] else ''}"
        )
    mem = r.get("perGpuGiB") or r.get("perWorkerGiB")
    if mem:
        unit = "per GPU" if "perGpuGiB" in r else "per worker (host memory)"
        a = mem["activations"]
        rows = [
            ("parameters", mem["parameters"]),
            ("gradients", mem["gradients"]),
            ("optimizer states", mem["optimizerStates"]),
            ("model states, largest moment", mem["modelStatesPeak"]),
            ("activations: encoder", a["encoder"]),
            ("activations: decoder", a["decoder"]),
            ("activations: logits", a["logits"]),
            ("temporary buffers", mem["temporaryBuffers"]),
            ("framework overhead", mem["frameworkOverhead"]),
            ("total (upper bound)", mem["total"]),
            ("total (fused attention)", mem["totalLowerBound"]),
        ]
        if mem["usable"] is not None:
            rows += [("usable", mem["usable"]), ("headroom", mem["headroom"])]
        print(f"  {unit:<30} {'GiB':>9}")
        for label, v in rows:
            print(f"  {label:<30} {v:>9.3f}")
        peaks = mem["parameters"] + mem["gradients"] + mem["optimizerStates"]
        if peaks > mem["modelStatesPeak"] + 0.0005:
            print(
                "  (parameters, gradients and optimizer states are each at their own peak; "
                "the total counts the largest moment they are held together)"
            )
        print(
            f"  activations saved without / with checkpointing: "
            f"{a['withoutCheckpointing']:.3f} / {a['withCheckpointing']:.3f} GiB"
        )
        print(
            f"  CPU memory for offload per pod: {r['hostOffloadGiBPerPod']:.2f} GiB; "
            f"trainable parameters {r['trainableParams'] / 1e6:.1f}M of {r['params'] / 1e6:.1f}M"
        )
    d = r.get("disk")
    if d:
        caches = (
            "unknown" if d["features"] is None else f"{d['features'] + d['encoderCache']:.2f} GiB"
        )
        claim = "size unknown (a claim you bring)" if d["claim"] is None else f"{d['claim']:g} GiB"
        print(
            f"  disk: {d['checkpointsOnDisk']} checkpoint(s) x {d['checkpoint']:.2f} GiB, caches "
            f"{caches}, model {d['modelCache'] + d['export']:.2f} GiB; {d['total']:.2f} GiB of {claim}"
        )
        for note in d["notes"]:
            print(f"    {note}")
    for reason in r["reasons"]:
        print(f"  why: {reason}")
    for note in r["notes"]:
        print(f"  note: {note}")
    if r["problem"]:
        print(f"  refused: {r['problem']}")


def _plan(args: argparse.Namespace) -> int:
    from whisperft.operator.api.resource import SpecError, load_resources
    from whisperft.operator.settings import SettingsError

    source = "<stdin>" if str(args.file) == "-" else str(args.file)
    try:
        text = sys.stdin.read() if source == "<stdin>" else args.file.read_text(encoding="utf-8")
    except FileNotFoundError:
        print(f"whisperft plan: {source}: file not found", file=sys.stderr)
        return 2
    if args.clips is not None and args.clips < 0:
        print("whisperft plan: --clips must be 0 or more", file=sys.stderr)
        return 2
    try:
        settings = _load_settings(args.settings)
        resources = load_resources(text, source=source)
    except (SpecError, SettingsError) as exc:
        print(f"whisperft plan: {exc}", file=sys.stderr)
        return 2
    if args.pool is not None and args.pool not in settings.node_pools:
        known = ", ".join(sorted(settings.node_pools)) or "none"
        print(
            f"whisperft plan: --pool {args.pool!r}: no such node pool (configured: {known})",
            file=sys.stderr,
        )
        return 2
    reports = []
    for res in resources:
        if args.all_pools:
            pools: list[str | None] = sorted(settings.node_pools)
        else:
            pools = [args.pool or res.spec.resources.accelerator]
        for pool in pools:
            r = plan_report(res.spec, settings, pool, args.clips)
            reports.append({"name": res.metadata.name, "model": res.spec.model.name, **r})
    if args.json:
        print(json.dumps(reports, indent=2))
    else:
        for r in reports:
            _print_text(r["name"], r["model"], r)
    return 0 if all(r["fits"] for r in reports) else 1
