"""`whisperft render` and `whisperft crd` as a user runs them (no cluster), and the
rule that the operator never imports the trainer's heavy stack."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from whisperft import names
from whisperft.cli import main

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
MINIMAL = """
apiVersion: whisperft.io/v1alpha1
kind: WhisperFineTune
metadata: {name: cli-demo, namespace: ml}
spec:
  model: {name: openai/whisper-small}
  dataset: {path: bundled:en}
  training: {maxSteps: 50, gradientCheckpointing: true}
  resources: {accelerator: ACCEL, workers: 2}
  checkpoints: {size: 10Gi, accessMode: ReadWriteMany}
"""


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "wft.yaml"
    path.write_text(text)
    return path


def test_render_prints_every_child(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", str(_file(tmp_path, MINIMAL.replace("ACCEL", "nvidia-l4")))]) == 0
    out = capsys.readouterr().out
    docs = [d for d in yaml.safe_load_all(out) if d]
    assert [d["kind"] for d in docs] == [
        "PersistentVolumeClaim",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "ConfigMap",
        "NetworkPolicy",
        "NetworkPolicy",
        "RayJob",
    ]
    assert docs[-1]["metadata"]["name"] == "cli-demo-1"
    assert "# ml/cli-demo: ZeRO stage 2" in out and "plan fits" in out
    assert (
        main(
            [
                "render",
                "--attempt",
                "2",
                str(_file(tmp_path, MINIMAL.replace("ACCEL", "nvidia-l4"))),
            ]
        )
        == 0
    )
    assert "name: cli-demo-2\n" in capsys.readouterr().out


def test_render_refuses_an_unknown_accelerator(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["render", str(_file(tmp_path, MINIMAL.replace("ACCEL", "nvidia-b200")))]) == 1
    err = capsys.readouterr().err
    assert "UnknownAccelerator" in err and "nvidia-b200" in err


def test_render_names_the_bad_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = MINIMAL.replace("ACCEL", "nvidia-l4").replace("workers: 2", "workers: -2")
    assert main(["render", str(_file(tmp_path, bad))]) == 2
    assert "spec.resources.workers" in capsys.readouterr().err
    assert main(["render", str(tmp_path / "missing.yaml")]) == 2
    assert "file not found" in capsys.readouterr().err


def test_crd_check_passes_on_the_committed_copies() -> None:
    assert main(["crd", "--check", "--root", str(REPO)]) == 0


def test_crd_check_fails_on_a_stale_copy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "charts/whisperft/crds").mkdir(parents=True)
    (tmp_path / "manifests/base").mkdir(parents=True)
    assert main(["crd", "--write", "--root", str(tmp_path)]) == 0
    assert main(["crd", "--check", "--root", str(tmp_path)]) == 0
    stale = tmp_path / "manifests/base/crd.yaml"
    stale.write_text(stale.read_text().replace("wft", "wf"))
    assert main(["crd", "--check", "--root", str(tmp_path)]) == 1
    assert "stale: manifests/base/crd.yaml" in capsys.readouterr().err


def test_operator_never_imports_the_training_stack() -> None:
    code = (
        "import sys, whisperft.operator.main, whisperft.operator.cli, whisperft.operator.render.bundle\n"
        "heavy = [m for m in ('torch', 'deepspeed', 'ray', 'transformers', 'datasets') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "", f"operator imported {out.stdout.strip()}"


def test_api_types_import_neither_kopf_nor_kubernetes() -> None:
    code = (
        "import sys, whisperft.operator.api.crd, whisperft.operator.api.resource\n"
        "print(','.join(m for m in ('kopf', 'kubernetes') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == ""
    assert names.API_VERSION == "whisperft.io/v1alpha1"
