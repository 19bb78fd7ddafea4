"""`whisperft plan`: every example plans; refusals exit 1 naming the numbers; bad
input exits 2; the chart's values give the operator's pools; JSON and text
carry the same plan; the disk plan refuses a claim too small."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from whisperft.cli import main
from whisperft.operator.api.phase import Reason
from whisperft.operator.api.resource import load_resources
from whisperft.operator.planning.resolve import resolve
from whisperft.operator.settings import load_settings

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted([*ROOT.glob("examples/*.yaml"), *ROOT.glob("manifests/examples/*.yaml")])
VALUES = ROOT / "charts/whisperft/values.yaml"

LARGE_ON_L4 = """\
apiVersion: whisperft.io/v1alpha1
kind: WhisperFineTune
metadata: {name: big}
spec:
  model: {name: openai/whisper-large-v3, language: sw}
  dataset: {path: /data/cv}
  checkpoints: {size: 100Gi}
  resources: {accelerator: nvidia-l4, workers: 1, memory: 32Gi}
  training: {maxSteps: 100, batchSizePerWorker: 8%s}
"""


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    rc = main(["plan", *args])
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.fixture(scope="module")
def rwx_values(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The chart's values on a platform whose default StorageClass offers ReadWriteMany,
    so the local examples' two workers may go on two single-GPU nodes."""
    import yaml

    values = yaml.safe_load(VALUES.read_text())
    values["readWriteManyStorageClasses"] = [""]
    path = tmp_path_factory.mktemp("values") / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_plans_on_every_pool(
    path: Path, capsys: pytest.CaptureFixture[str], rwx_values: Path
) -> None:
    rc, out, err = _run(capsys, str(path), "--all-pools", "--json", "--settings", str(rwx_values))
    assert rc == 0, err + out
    reports = json.loads(out)
    assert {r["pool"] for r in reports} == {"nvidia-l4", "nvidia-a100-80gb", "nvidia-h100-80gb"}
    for r in reports:
        mem = r["perGpuGiB"]
        parts = (
            mem["modelStatesPeak"]
            + sum(mem["activations"][k] for k in ("encoder", "decoder", "logits"))
            + mem["temporaryBuffers"] + mem["frameworkOverhead"]
        )  # fmt: skip
        assert parts == pytest.approx(mem["total"], abs=0.01)
        # the largest moment holds at most each component's own peak
        peaks = mem["parameters"] + mem["gradients"] + mem["optimizerStates"]
        assert 0 < mem["modelStatesPeak"] <= peaks + 0.005  # each rounded to MiB
        assert mem["headroom"] == pytest.approx(mem["usable"] - mem["total"], abs=0.01)
        assert r["disk"]["checkpointsOnDisk"] >= 1 and r["disk"]["fits"]


def test_two_gpu_workers_on_a_read_write_once_claim_are_refused_naming_the_setting(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The chart's default: no class offers ReadWriteMany and a pool node has one GPU."""
    import yaml

    two = yaml.safe_load((ROOT / "examples/demo.yaml").read_text())
    two["spec"]["resources"]["workers"] = 2
    path = tmp_path / "two-workers.yaml"
    path.write_text(yaml.safe_dump(two))
    rc, out, _ = _run(
        capsys, str(path), "--pool", "nvidia-l4", "--json", "--settings", str(VALUES)
    )  # fmt: skip
    assert rc == 1
    (report,) = json.loads(out)
    assert report["fits"] is False
    assert report["problem"].startswith("WillNotFit: the checkpoint claim is ReadWriteOnce")
    assert "readWriteManyStorageClasses" in report["problem"]


def test_text_report_names_every_component(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _run(capsys, str(ROOT / "manifests/examples/minimal.yaml"), "--pool", "nvidia-l4")
    assert rc == 0
    for label in (
        "parameters", "gradients", "optimizer states", "activations: encoder",
        "activations: decoder", "temporary buffers", "framework overhead", "headroom",
        "without / with checkpointing", "CPU memory for offload", "disk:",
    ):  # fmt: skip
        assert label in out, label


def test_cpu_resource_is_planned_in_host_memory(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _run(capsys, str(ROOT / "examples/demo.yaml"), "--json")
    assert rc == 0
    (r,) = json.loads(out)
    assert r["pool"] == "cpu" and r["verdict"] == "cpu-only" and "perWorkerGiB" in r
    # CPU workers hold fp32 weights: 4 bytes per parameter.
    assert r["perWorkerGiB"]["parameters"] == pytest.approx(4 * r["params"] / 1024**3, abs=1e-3)


def test_large_v3_on_l4_is_refused_then_fits_with_lora_auto(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    full = tmp_path / "full.yaml"
    full.write_text(LARGE_ON_L4 % "")
    rc, out, _ = _run(capsys, str(full))
    assert rc == 1 and "DOES NOT FIT" in out and "refused: WillNotFit" in out
    assert "training.lora.mode auto" in out
    lora = tmp_path / "lora.yaml"
    lora.write_text(LARGE_ON_L4 % ", lora: {mode: auto}")
    rc, out, _ = _run(capsys, str(lora), "--json")
    (r,) = json.loads(out)
    assert rc == 0 and r["strategy"]["lora"] and r["fits"]
    assert any("LoRA" in reason for reason in r["reasons"])


def test_bad_input_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert _run(capsys, str(tmp_path / "missing.yaml"))[0] == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text(LARGE_ON_L4.replace("maxSteps: 100", "maxSteps: -1") % "")
    rc, _, err = _run(capsys, str(bad))
    assert rc == 2 and "maxSteps" in err
    ok = tmp_path / "ok.yaml"
    ok.write_text(LARGE_ON_L4 % "")
    rc, _, err = _run(capsys, str(ok), "--pool", "tpu-v5")
    assert rc == 2 and "tpu-v5" in err and "nvidia-l4" in err
    rc, _, err = _run(capsys, str(ok), "--settings", str(tmp_path / "nope.yaml"))
    assert rc == 2 and "nope.yaml" in err


def test_chart_values_give_the_operators_pools() -> None:
    from whisperft.operator.cli_plan import _load_settings

    assert _load_settings(VALUES).node_pools == load_settings({}).node_pools


def test_a_claim_too_small_for_the_checkpoints_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    text = (LARGE_ON_L4 % ", saveEvery: 10, keepCheckpoints: 5").replace(
        "openai/whisper-large-v3", "openai/whisper-small"
    )
    res = load_resources(text.replace("size: 100Gi", "size: 5Gi"), source="t")[0]
    why = resolve(res.spec, load_settings({})).problem
    assert why is not None and why.reason is Reason.PLAN_WILL_NOT_FIT
    # small: 2 B of 16-bit weights + 12 B of optimizer state per parameter, 7 on disk at once.
    assert "will not fit on disk" in why.message and "7 checkpoints" in why.message
    assert "spec.checkpoints.size" in why.message
    roomy = load_resources(text, source="t")[0]
    assert resolve(roomy.spec, load_settings({})).problem is None
    # The feature cache counts when the clip count is known.
    path = tmp_path / "r.yaml"
    path.write_text(text.replace("size: 100Gi", "size: 30Gi"))
    assert _run(capsys, str(path))[0] == 0
    rc, out, _ = _run(capsys, str(path), "--clips", "100000")
    assert rc == 1 and "DOES NOT FIT" in out
