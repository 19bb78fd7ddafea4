"""The Python API's local run is `whisperft train`: same resource, same trainer, same outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from whisperft.client import FineTune

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]

DEMO = Path(__file__).parents[2] / "examples" / "demo.yaml"


def test_run_local_from_python(tmp_path: Path) -> None:
    ft = FineTune.load(DEMO).with_values(
        {
            "spec.training.maxSteps": 2,
            "spec.training.saveEvery": 0,
            "spec.training.logEvery": 1,
            "spec.dataset.maxTrainExamples": 16,
            "spec.dataset.maxEvalExamples": 4,
            "spec.output.location": str(tmp_path / "out"),
        }
    )
    run = ft.run_local(progress=False)
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert run.results["test_wer_after"] == results["test_wer_after"]
    assert run.summary.test_wer_before == results["test_wer_before"] is not None
    assert run.summary.step == 2
    assert run.model_dir == (tmp_path / "out" / "model").resolve()
    assert (run.model_dir / "model.safetensors").is_file()
    # The results record the resource as run, in the resource's own format.
    assert (
        FineTune.from_dict(
            {
                "apiVersion": "whisperft.io/v1alpha1",
                "kind": "WhisperFineTune",
                "metadata": {"name": "demo"},
                "spec": results["config"]["spec"],
            }
        ).spec
        == ft.spec
    )
