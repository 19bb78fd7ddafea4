"""A PNG of training loss and WER over steps, for people."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def plot_history(history: Sequence[dict[str, Any]], out: Path, *, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    losses = [(h["step"], h["loss"]) for h in history if "loss" in h]
    wers: dict[str, list[tuple[int, float]]] = {}
    for h in history:
        if "wer" in h:
            wers.setdefault(h["split"], []).append((h["step"], 100.0 * h["wer"]))
    fig, (ax_loss, ax_wer) = plt.subplots(1, 2, figsize=(11, 4))
    if losses:
        ax_loss.plot(*zip(*losses, strict=False), marker=".", color="tab:blue")
    ax_loss.set(xlabel="step", ylabel="training loss", title="loss")
    ax_loss.grid(alpha=0.3)
    for split, points in sorted(wers.items()):
        ax_wer.plot(*zip(*points, strict=False), marker="o", label=f"{split} split")
    ax_wer.set(xlabel="step", ylabel="WER (%)", title="word error rate")
    ax_wer.set_ylim(bottom=0)
    ax_wer.grid(alpha=0.3)
    if wers:
        ax_wer.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
