"""bench/context_ablation.py runs the trainer's pieces for a case and records it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_quick_case_is_recorded(tmp_path: Path) -> None:
    sys.path.insert(0, str(BENCH))
    try:
        import context_ablation
    finally:
        sys.path.remove(str(BENCH))
    out = tmp_path / "ablation.json"
    assert context_ablation.main(["--quick", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    (row,) = record["cases"]
    assert (row["context"], row["steps"], row["beta2"], row["eps"]) == ("cut", 2, 0.999, 1e-8)
    assert row["test_wer"] >= 0.0 and row["test_utterances"] == 4
    assert row["seconds_per_step"] > 0 and row["precision"] in ("amp-bf16", "fp32")
    with pytest.raises(SystemExit):
        context_ablation.main(["--case", "window:40:0.9"])
