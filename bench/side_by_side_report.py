"""bench/side_by_side.py's figures: medians, pair-by-pair ratios, our job's time split
from its log, summary.json, the Markdown table and the PNG plots."""

from __future__ import annotations

import json
import os
import platform
import re
import statistics
import subprocess
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SUMMARY_KEYS = (
    "quality_point",
    "speed_point",
    "peak_memory_ratio",
    "train_samples_per_s_ratio",
    "feature_speedup",
    "eval_speedup",
    "scaling_efficiency_2w",
    "machine",
    "commit",
    "missing",
)
POINTS = {"quality_point": "full", "speed_point": "frozen"}


def machine() -> dict[str, Any]:
    import psutil

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "ram_gb": round(psutil.virtual_memory().total / 1e9, 1),
        "python": platform.python_version(),
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10
        )
        sha = out.stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        return (sha + ("-dirty" if dirty else "")) if sha else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _first(lines: list[tuple[float, str]], pattern: str, after: float = -1.0) -> float | None:
    rx = re.compile(pattern)
    return next((t for t, line in lines if t > after and rx.search(line)), None)


def _last(lines: list[tuple[float, str]], pattern: str) -> float | None:
    rx = re.compile(pattern)
    found = [t for t, line in lines if rx.search(line)]
    return found[-1] if found else None


def timeline(lines: list[tuple[float, str]], wall: float, res: dict[str, Any]) -> dict[str, Any]:
    """Our job's time split from the second each log line arrived (Ray forwards the
    workers' lines with up to about a second of delay) and results.json:

    startup    interpreter and imports (wall - job_wall_seconds), Ray start and the
               worker group, model loading, the encoder cache and the DeepSpeed engine
               (up to rank 0's last DeepSpeed line before the baseline, or the encoder
               cache line), less the encoder cache's own seconds
    data, features  prepare_seconds (decoding and log-mel run interleaved per clip;
               split by the micro-benchmark's decode share when there is one)
    encoder_cache   the worker's own "cached ... in N s"
    eval_before     end of the build to the baseline line
    training        baseline line to the last step line (mid-run checkpoints included)
    evaluation      last step to the final line: dev evaluation, the final checkpoint,
                    the test evaluation
    saving          the final line to the exit: final model, results, plot, Ray shutdown
    """
    job = res.get("job_wall_seconds") or wall
    prep = res.get("prepare_seconds") or 0.0
    t_run = max(0.0, wall - job)
    group = _first(lines, r"Started training worker group")
    cache_t = _first(lines, r"\[whisperft\] frozen encoder prefix .* cached")
    cache_s = 0.0
    if cache_t is not None:
        m = re.search(r"cached for \d+ examples in (\d+(?:\.\d+)?) s", _line_at(lines, cache_t))
        cache_s = float(m.group(1)) if m else 0.0
    baseline = _first(lines, r"\[whisperft\] baseline:")
    last_step = _last(lines, r"\[whisperft\] step \d+/\d+")
    final = _first(lines, r"\[whisperft\] final:")
    if baseline is None or last_step is None or final is None:
        return {"error": "the log lacks the baseline, step or final lines"}
    # Rank 0's last DeepSpeed line before the baseline (the engine and its JIT-built
    # ops: a build that waits on another process's compile lock shows up here).
    # In process (one worker, Ray Train's local mode) lines carry no worker prefix:
    # every DeepSpeed line is rank 0's.
    pid = re.search(r"pid=(\d+)", _line_at(lines, baseline))
    rank0 = rf"RayTrainWorker pid={pid.group(1)}\b.*DeepSpeed" if pid else r"DeepSpeed"
    engine = max((t for t, line in lines if t < baseline and re.search(rank0, line)), default=None)
    build = max((t for t in (cache_t, engine, group) if t is not None), default=baseline)
    build = min(build, baseline)
    return {
        "startup": round(t_run + max(0.0, build - cache_s - (t_run + prep)), 1),
        "data_and_features": round(prep, 1),
        "encoder_cache": round(cache_s, 1),
        "eval_before": round(baseline - build, 1),
        "training": round(last_step - baseline, 1),
        "evaluation": round(final - last_step, 1),
        "saving": round(wall - final, 1),
    }


def _point(key: str, value: Any) -> str:
    """A summary point's field: WERs as percentages (0.01 hides a 0.14-point gap)."""
    if isinstance(value, float):
        return f"{value:.2%}" if key.startswith("wer_") else _f(value)
    return str(value)


def _line_at(lines: list[tuple[float, str]], t: float) -> str:
    return next(line for tt, line in lines if tt == t)


def median(xs: list[Any]) -> float | None:
    vals = [x for x in xs if x is not None]
    return statistics.median(vals) if vals else None


def ratio(a: Any, b: Any) -> float | None:
    return a / b if a is not None and b not in (None, 0) else None


def aggregate(record: dict[str, Any]) -> dict[str, Any]:
    """Per variant: both sides' medians and the ours / reference ratio of each pair."""
    runs = [r for r in record["runs"] if r.get("rc") == 0 and "error" not in r]
    out: dict[str, Any] = {}
    keys = (
        "wall_s",
        "test_wer_before",
        "test_wer_after",
        "train_samples_per_s",
        "peak_rss_mb_tree",
        "peak_pss_mb_tree",
    )
    for variant in record["variants"]:
        w = record["settings"]["workers"]
        side = {
            "ours": [
                r
                for r in runs
                if r["side"] == "ours" and r["variant"] == variant and r["workers"] == w
            ],
            "reference": [r for r in runs if r["side"] == "reference" and r["variant"] == variant],
        }
        med = {s: {k: median([r.get(k) for r in rs]) for k in keys} for s, rs in side.items()}
        pairs = []
        for p in range(record["pairs"]):
            a = next((r for r in side["ours"] if r["pair"] == p), None)
            b = next((r for r in side["reference"] if r["pair"] == p), None)
            if a and b:
                pairs.append(
                    {
                        "pair": p,
                        **{
                            f"{k}_ratio": ratio(a.get(k), b.get(k))
                            for k in (
                                "wall_s",
                                "train_samples_per_s",
                                "peak_rss_mb_tree",
                                "peak_pss_mb_tree",
                            )
                        },
                    }
                )
        out[variant] = {
            "n": {s: len(rs) for s, rs in side.items()},
            "median": med,
            "ratio_of_medians": {
                k: ratio(med["ours"][k], med["reference"][k])
                for k in ("wall_s", "train_samples_per_s", "peak_rss_mb_tree", "peak_pss_mb_tree")
            },
            "pairs": pairs,
            "time_split_ours": _median_split([r.get("phases_s") for r in side["ours"]]),
            "time_split_reference": _median_split([r.get("phases_s") for r in side["reference"]]),
        }
    return out


def _median_split(splits: list[Any]) -> dict[str, float] | None:
    good = [s for s in splits if isinstance(s, dict) and "error" not in s]
    if not good:
        return None
    return {k: median([s.get(k) for s in good]) for k in good[0]}


def scaling(record: dict[str, Any]) -> dict[str, Any]:
    """1 Ray worker against 2 (same global batch), frozen variant: samples/s and
    efficiency = samples/s(2) / (2 x samples/s(1))."""
    runs = [r for r in record["runs"] if r["side"] == "ours" and r["variant"] == "frozen"]
    runs = [r for r in runs if r.get("rc") == 0 and "error" not in r]
    one = median([r.get("train_samples_per_s") for r in runs if r["workers"] == 1])
    two = median([r.get("train_samples_per_s") for r in runs if r["workers"] == 2])
    wall = {
        f"wall_s_{w}w": median([r.get("wall_s") for r in runs if r["workers"] == w]) for w in (1, 2)
    }
    eff = two / (2 * one) if one and two else None
    return {
        "workers": record["settings"]["workers"],
        "samples_per_s_1w": one,
        "samples_per_s_2w": two,
        **wall,
        "efficiency": eff,
    }


def summarize(
    record: dict[str, Any], agg: dict[str, Any], scale: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, str]]:
    reasons: dict[str, str] = {}
    summary: dict[str, Any] = {}
    for key, variant in POINTS.items():
        a = agg.get(variant)
        point = {"variant": variant, "wall_ratio": None, "wer_ours": None, "wer_reference": None}
        if variant == "full":  # our recipe for the quality point, beyond full fine-tuning
            point["ours_set"] = record.get("quality_set") or []
        if a is None:
            reasons[key] = (
                f"variant {variant!r} not run (--variants {','.join(record['variants'])})"
            )
        elif not (a["n"]["ours"] and a["n"]["reference"]):
            reasons[key] = f"variant {variant!r}: a side has no successful run"
        else:
            point.update(
                wall_ratio=a["ratio_of_medians"]["wall_s"],
                wer_ours=a["median"]["ours"]["test_wer_after"],
                wer_reference=a["median"]["reference"]["test_wer_after"],
            )
        summary[key] = point
    speed = agg.get("frozen") or next(iter(agg.values()), None)
    for key, k in (
        ("peak_memory_ratio", "peak_rss_mb_tree"),
        ("train_samples_per_s_ratio", "train_samples_per_s"),
    ):
        summary[key] = speed["ratio_of_medians"][k] if speed else None
        if summary[key] is None:
            reasons[key] = "no successful pair"
    micro = record.get("micro")
    if micro is None:
        reasons["feature_speedup"] = reasons["eval_speedup"] = (
            "micro-benchmarks skipped (--no-micro)"
        )
    elif "error" in micro:
        reasons["feature_speedup"] = reasons["eval_speedup"] = "micro-benchmark failed"
    summary["feature_speedup"] = (micro or {}).get("features", {}).get("speedup")
    summary["eval_speedup"] = (micro or {}).get("evaluation", {}).get("speedup")
    summary["scaling_efficiency_2w"] = scale["efficiency"]
    if scale["efficiency"] is None:
        reasons["scaling_efficiency_2w"] = (
            "1-worker runs not made (--no-scaling; --quick leaves them out)"
            if not record["scaling"]
            else "needs successful 1- and 2-worker runs of the frozen variant"
        )
    summary["machine"] = record["machine"]
    summary["commit"] = record["commit"]
    missing = [k for k in SUMMARY_KEYS if k in reasons]
    summary["missing"] = missing
    return {k: summary[k] for k in SUMMARY_KEYS}, reasons


def _apportion(agg: dict[str, Any], micro: Any) -> None:
    """Split data_and_features into data and features by the measured decode share."""
    share = (micro or {}).get("features", {}).get("ours_decode_share")
    for a in agg.values():
        s = a.get("time_split_ours")
        if s and share is not None and s.get("data_and_features") is not None:
            s["data_estimated"] = round(s["data_and_features"] * share, 1)
            s["features_estimated"] = round(s["data_and_features"] * (1 - share), 1)


def write_outputs(record: dict[str, Any], out: Path) -> dict[str, Any]:
    record["commit"] = commit()
    agg = aggregate(record)
    _apportion(agg, record.get("micro"))
    scale = scaling(record)
    summary, reasons = summarize(record, agg, scale)
    record.update(aggregates=agg, scaling_result=scale, missing_reasons=reasons)
    (out / "side_by_side.json").write_text(json.dumps(record, indent=2) + "\n")
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "side_by_side.md").write_text(markdown(record, summary))
    plots(record, out)
    return summary


def _f(v: Any, fmt: str = "{:.2f}") -> str:
    return "–" if v is None else fmt.format(v)


def markdown(record: dict[str, Any], summary: dict[str, Any]) -> str:
    m = record["machine"]
    pct = "{:.2%}"
    lines = [
        "# whisperft against the Hugging Face recipe, side by side",
        "",
        f"Measured {record['when']} on {m['platform']}, {m['cpus']} CPUs, {m['ram_gb']} GB RAM "
        f"(load {m['load_avg_at_start']} at the start), commit {record['commit']}, "
        f"{record['seconds']:.0f} s.",
        "",
        f"Command: `{record['command']}`"
        + (" (quick: a smoke test, not a measurement)" if record["quick"] else ""),
        "",
        "Settings: " + ", ".join(f"{k} {v}" for k, v in record["settings"].items()) + ".",
        "",
        "Our `full` variant adds: "
        + (", ".join(f"`{x}`" for x in record.get("quality_set") or []) or "nothing")
        + ".",
        "",
        "| variant | side | runs | wall s | test WER before | after | train samples/s "
        "| peak tree RSS MB | peak tree PSS MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for variant, a in record["aggregates"].items():
        for side in ("ours", "reference"):
            md = a["median"][side]
            lines.append(
                f"| {variant} | {side} | {a['n'][side]} | {_f(md['wall_s'], '{:.1f}')} | "
                f"{_f(md['test_wer_before'], pct)} | {_f(md['test_wer_after'], pct)} | "
                f"{_f(md['train_samples_per_s'])} | {_f(md['peak_rss_mb_tree'], '{:.0f}')} | "
                f"{_f(md.get('peak_pss_mb_tree'), '{:.0f}')} |"
            )
    lines += ["", "Medians. Ours / reference, pair by pair:", ""]
    lines += [
        "| variant | pair | wall | train samples/s | peak RSS | peak PSS |",
        "|---|---|---|---|---|---|",
    ]
    for variant, a in record["aggregates"].items():
        for p in a["pairs"]:
            lines.append(
                f"| {variant} | {p['pair']} | {_f(p['wall_s_ratio'])} | "
                f"{_f(p['train_samples_per_s_ratio'])} | {_f(p['peak_rss_mb_tree_ratio'])} | "
                f"{_f(p.get('peak_pss_mb_tree_ratio'))} |"
            )
    lines += ["", "Summary (`summary.json`):", ""]
    for k in SUMMARY_KEYS[:7]:
        v = summary[k]
        if isinstance(v, dict):
            v = ", ".join(f"{kk} {_point(kk, vv)}" for kk, vv in v.items())
        else:
            v = _f(v)
        lines.append(f"- {k}: {v}")
    for k, why in record["missing_reasons"].items():
        lines.append(f"- not measured: {k} ({why})")
    micro = record.get("micro") or {}
    if "features" in micro:
        f = micro["features"]
        lines += [
            "",
            f"Feature extraction, {f['clips']} clips: ours {f['ours']['clips_per_s']:.1f} clips/s "
            f"(prepare_data), reference {f['reference']['clips_per_s']:.1f} clips/s "
            f"(datasets.map + WhisperFeatureExtractor), decode alone {f['decode_only']['clips_per_s']:.0f} clips/s.",
        ]
    if "evaluation" in micro:
        e = micro["evaluation"]
        ct2 = e.get("ct2") or {}
        ct2_s = (
            f", CTranslate2 int8 {ct2['utterances_per_s']:.2f} (WER {ct2['wer']:.2%})"
            if "utterances_per_s" in ct2
            else ""
        )
        lines.append(
            f"Evaluation, {e['utterances']} utterances: ours {e['ours']['utterances_per_s']:.2f} "
            f"utt/s (WER {e['ours']['wer']:.2%}), predict_with_generate "
            f"{e['reference']['utterances_per_s']:.2f} (WER {e['reference']['wer']:.2%}){ct2_s}."
        )
    sc = record["scaling_result"]
    lines.append(
        f"Scaling (ours, frozen, same global batch): 1 worker {_f(sc['samples_per_s_1w'])} "
        f"samples/s ({_f(sc.get('wall_s_1w'), '{:.0f}')} s whole job), 2 workers "
        f"{_f(sc['samples_per_s_2w'])} ({_f(sc.get('wall_s_2w'), '{:.0f}')} s), "
        f"efficiency {_f(sc['efficiency'])}."
    )
    lines += ["", "Time split, seconds (medians; ours from its log, the reference in-process):", ""]
    for variant, a in record["aggregates"].items():
        for side in ("ours", "reference"):
            s = a[f"time_split_{side}"]
            if s:
                lines.append(
                    f"- {variant} {side}: "
                    + ", ".join(f"{k} {_f(v, '{:.1f}')}" for k, v in s.items())
                )
    return "\n".join(lines) + "\n"


def plots(record: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"ours": "tab:blue", "reference": "tab:orange"}
    markers = {"frozen": "o", "full": "s"}
    fig, ax = plt.subplots(figsize=(6, 4))
    seen = set()
    for r in record["runs"]:
        if r.get("test_wer_after") is None or (
            r["side"] == "ours" and r["workers"] != record["settings"]["workers"]
        ):
            continue
        label = f"{r['side']} {r['variant']}"
        before = r.get("test_wer_before")
        if before is not None:
            ax.plot(
                [0, r["wall_s"]],
                [before, r["test_wer_after"]],
                color=colors[r["side"]],
                alpha=0.3,
                ls="--",
            )
        ax.scatter(
            [r["wall_s"]],
            [r["test_wer_after"]],
            color=colors[r["side"]],
            marker=markers.get(r["variant"], "x"),
            label=None if label in seen else label,
        )
        seen.add(label)
    ax.set_xlabel("whole job wall time (s)")
    ax.set_ylabel("held-out test WER")
    ax.set_title("WER against wall time (dashed: from the WER before)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "side_by_side_wer_vs_wall.png", dpi=110)
    plt.close(fig)

    micro = record.get("micro") or {}
    panels: list[tuple[str, list[str], list[float | None], list[str]]] = []
    names, vals, cols = [], [], []
    for variant, a in record["aggregates"].items():
        for side in ("ours", "reference"):
            names.append(f"{side}\n{variant}")
            vals.append(a["median"][side]["train_samples_per_s"])
            cols.append(colors[side])
    panels.append(("training samples/s", names, vals, cols))
    if "features" in micro:
        f = micro["features"]
        panels.append(
            (
                "feature extraction clips/s",
                ["ours", "reference"],
                [f["ours"]["clips_per_s"], f["reference"]["clips_per_s"]],
                [colors["ours"], colors["reference"]],
            )
        )
    if "evaluation" in micro:
        e = micro["evaluation"]
        n, v, c = (
            ["ours", "predict_with\n_generate"],
            [e["ours"]["utterances_per_s"], e["reference"]["utterances_per_s"]],
            [colors["ours"], colors["reference"]],
        )
        if (e.get("ct2") or {}).get("utterances_per_s"):
            n.append("ct2 int8")
            v.append(e["ct2"]["utterances_per_s"])
            c.append("tab:green")
        panels.append(("evaluation utterances/s", n, v, c))
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.6), squeeze=False)
    for ax, (title, n, v, c) in zip(axes[0], panels, strict=True):
        ax.bar(n, [x or 0 for x in v], color=c)
        ax.set_title(title)
        ax.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    fig.savefig(out / "side_by_side_throughput.png", dpi=110)
    plt.close(fig)
