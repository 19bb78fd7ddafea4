"""The planner benchmark's Markdown table (bench/README.md, between the markers)."""

from __future__ import annotations

from typing import Any

from planner_activations import ACT_KEYS
from planner_common import HERE, TARGET
from planner_model_states import STATE_KEYS

README = HERE / "README.md"
MARK_BEGIN = "<!-- planner-table:begin -->"
MARK_END = "<!-- planner-table:end -->"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:+.1f}%"


def worst(rows: list[dict[str, Any]], keys: tuple[str, ...]) -> float:
    return max(
        (abs(r["error"][k]) for r in rows for k in keys if r["error"][k] is not None), default=0.0
    )


def markdown(record: dict[str, Any]) -> str:
    lines = [
        f"Measured {record['when']} on {record['machine']['cpus']} CPUs "
        f"(`{record['command']}`, commit {record['commit'][:10]}, {record['seconds']:.0f} s). "
        "Error = (predicted - measured) / measured.",
        "",
        "Model states (real DeepSpeed engine, MiB per worker, measured / predicted / error):",
        "",
        "| case | workers | weights | gradients | optimizer | total |",
        "|---|---|---|---|---|---|",
    ]
    for r in record["model_states"]:
        cells = [
            f"{r['measured_mib'][k]:.0f} / {r['predicted_mib'][k]:.0f} / {_pct(r['error'][k])}"
            for k in STATE_KEYS
        ]
        lines.append(f"| {r['label']} | {r['workers']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "DeepSpeed's estimators (bf16, no offload, GiB per GPU) and the planner:",
        "",
        "| model | params | ZeRO | GPUs | DeepSpeed | planner | planner vs DeepSpeed |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in record["estimators"]:
        lines.append(
            f"| {r['model']} | {r['params'] / 1e6:.1f} M | {r['stage']} | {r['gpus']} | "
            f"{r['deepspeed_gib']:.2f} | {r['planner_gib']:.2f} | {_pct(r['planner_vs_deepspeed'])} |"
        )
    lines += [
        "",
        "Activations (fp32, CPU, one forward + backward, MiB, measured / predicted / error):",
        "",
        "| case | encoder | decoder | logits | transient | total |",
        "|---|---|---|---|---|---|",
    ]
    for r in record["activations"]:
        cells = [
            f"{r['measured_mib'][k]:.0f} / {r['predicted_mib'][k]:.0f} / {_pct(r['error'][k])}"
            for k in ACT_KEYS
        ]
        lines.append(f"| {r['label']} | " + " | ".join(cells) + " |")
    s = record["summary"]
    lines += [
        "",
        f"Largest error: model states {_pct(s['states_worst'])}, activation components "
        f"{_pct(s['activations_worst_component'])}, activation total {_pct(s['activations_worst_total'])} "
        f"(target {TARGET:.0%}).",
    ]
    return "\n".join(lines)


def write_readme(table: str) -> None:
    text = README.read_text()
    block = f"{MARK_BEGIN}\n{table}\n{MARK_END}"
    if MARK_BEGIN in text and MARK_END in text:
        head, rest = text.split(MARK_BEGIN, 1)
        _, tail = rest.split(MARK_END, 1)
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n## The planner's error\n\n" + block + "\n"
    README.write_text(text)
