"""bench/side_by_side.py --quick: ours (whisperft train) and the Hugging Face recipe
(bench/recipe_reference.py) each train two steps on 8 clips and score 4 test clips;
the harness must write every summary figure (null only with a reason), ratios that
follow from its raw numbers, the table and the plots. Numbers are not asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
SUMMARY_KEYS = {
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
}


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("side-by-side")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "bench/side_by_side.py", "--quick", "--out", str(out)]
    cmd += ["--work", str(out / "work")]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=870)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return out


def _load(out: Path, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((out / name).read_text())
    return data


def test_the_summary_has_every_key_and_says_what_is_missing(out: Path) -> None:
    s = _load(out, "summary.json")
    assert set(s) == SUMMARY_KEYS
    for point in ("quality_point", "speed_point"):
        assert {"wall_ratio", "wer_ours", "wer_reference"} <= set(s[point])
    nulls = {k for k in SUMMARY_KEYS - {"missing"} if s[k] is None}
    nulls |= {p for p in ("quality_point", "speed_point") if s[p]["wall_ratio"] is None}
    assert nulls == set(s["missing"])
    reasons = _load(out, "side_by_side.json")["missing_reasons"]
    assert set(reasons) == set(s["missing"]) and all(reasons.values())
    # --quick: the frozen-encoder variant only, no 1-worker run
    assert "quality_point" in s["missing"] and "scaling_efficiency_2w" in s["missing"]
    assert s["speed_point"]["wall_ratio"] is not None
    assert s["machine"]["cpus"] >= 1 and s["machine"]["ram_gb"] > 0 and s["machine"]["platform"]
    assert s["commit"] == "unknown" or len(s["commit"].removesuffix("-dirty")) == 40


def test_both_sides_produced_a_test_wer(out: Path) -> None:
    rec = _load(out, "side_by_side.json")
    assert rec["quick"] is True and rec["command"].startswith(
        "python bench/side_by_side.py --quick"
    )
    sides = {r["side"]: r for r in rec["runs"]}
    assert set(sides) == {"ours", "reference"}
    for r in rec["runs"]:
        assert r["rc"] == 0 and "error" not in r, r
        assert 0.0 <= r["test_wer_before"] <= 2.0 and 0.0 <= r["test_wer_after"] <= 2.0
        assert r["wall_s"] > 0 and r["peak_rss_mb_tree"] > 0 and r["train_samples_per_s"] > 0
        assert r["steps"] == 2 and r["data"]["train"] == 8 and r["data"]["test"] == 4
    assert sides["ours"]["command"].split()[1:4] == ["-m", "whisperft", "train"]
    split = sides["ours"]["phases_s"]
    assert "error" not in split and split["training"] >= 0 and split["encoder_cache"] >= 0


def test_ratios_follow_from_the_raw_numbers(out: Path) -> None:
    rec, s = _load(out, "side_by_side.json"), _load(out, "summary.json")
    ours = next(r for r in rec["runs"] if r["side"] == "ours")
    ref = next(r for r in rec["runs"] if r["side"] == "reference")
    sp = s["speed_point"]
    assert sp["wall_ratio"] == pytest.approx(ours["wall_s"] / ref["wall_s"])
    assert sp["wer_ours"] == ours["test_wer_after"] and sp["wer_reference"] == ref["test_wer_after"]
    assert s["peak_memory_ratio"] == pytest.approx(
        ours["peak_rss_mb_tree"] / ref["peak_rss_mb_tree"]
    )
    assert s["train_samples_per_s_ratio"] == pytest.approx(
        ours["train_samples_per_s"] / ref["train_samples_per_s"]
    )
    [pair] = rec["aggregates"]["frozen"]["pairs"]
    assert pair["wall_s_ratio"] == pytest.approx(sp["wall_ratio"])
    micro = rec["micro"]
    f, e = micro["features"], micro["evaluation"]
    assert s["feature_speedup"] == pytest.approx(
        f["ours"]["clips_per_s"] / f["reference"]["clips_per_s"]
    )
    assert s["eval_speedup"] == pytest.approx(
        e["ours"]["utterances_per_s"] / e["reference"]["utterances_per_s"]
    )
    # the same model on the same clips with the same greedy decoding: the same WER
    assert e["ours"]["wer"] == pytest.approx(e["reference"]["wer"], abs=0.05)


def test_the_table_and_plots_are_written(out: Path) -> None:
    md = (out / "side_by_side.md").read_text()
    assert "| frozen | ours |" in md and "| frozen | reference |" in md and "Command:" in md
    for png in ("side_by_side_wer_vs_wall.png", "side_by_side_throughput.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
