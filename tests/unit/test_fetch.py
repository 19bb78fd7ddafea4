"""`whisperft fetch`, the pure parts: the copy pod, the tar it streams, and unpacking."""

from __future__ import annotations

import base64
import io
import tarfile
from pathlib import Path

import pytest

from whisperft import names
from whisperft.trainer.claim_copy import copy_pod, tar_command, unpack
from whisperft.trainer.fetch import output_location

pytestmark = pytest.mark.unit


def test_the_copy_pod_mounts_the_claim_read_only_where_the_run_wrote_it() -> None:
    pod = copy_pod("sw-small", "speech", "sw-small-checkpoints", "registry/trainer:1")
    spec = pod["spec"]
    (vol,) = spec["volumes"]
    assert vol["persistentVolumeClaim"] == {"claimName": "sw-small-checkpoints", "readOnly": True}
    (c,) = spec["containers"]
    (mount,) = c["volumeMounts"]
    assert mount == {
        "name": "checkpoints",
        "mountPath": names.CHECKPOINT_MOUNT_DIR,
        "readOnly": True,
    }
    # It ends by itself and holds no credentials or privileges.
    assert spec["activeDeadlineSeconds"] > 0 and spec["restartPolicy"] == "Never"
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["metadata"]["labels"][names.LABEL_FINETUNE] == "sw-small"


def test_tar_command_names_only_the_outputs() -> None:
    cmd = tar_command("/checkpoints/output/ft", ["hf", "ct2"])
    assert cmd[:2] == ["sh", "-c"]
    assert "cd '/checkpoints/output/ft'" in cmd[2]
    assert "model ct2 results.json training.png" in cmd[2] and cmd[2].endswith("| base64")


def _tar(entries: dict[str, bytes]) -> str:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    text = base64.b64encode(buf.getvalue()).decode()
    return "\n".join(text[i : i + 76] for i in range(0, len(text), 76))  # as base64(1) wraps


def test_unpack_restores_the_tree(tmp_path: Path) -> None:
    n = unpack(_tar({"model/config.json": b"{}", "results.json": b'{"steps": 4}'}), tmp_path)
    assert n > 0
    assert (tmp_path / "model" / "config.json").read_bytes() == b"{}"
    assert (tmp_path / "results.json").read_text() == '{"steps": 4}'


def test_unpack_refuses_an_entry_outside_the_destination(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    with pytest.raises(tarfile.OutsideDestinationError):
        unpack(_tar({"../escaped.txt": b"x"}), dest)
    assert not (tmp_path / "escaped.txt").exists()


@pytest.mark.parametrize(
    ("path", "location"),
    [
        ("s3://b/runs/ft/model", "s3://b/runs/ft"),
        ("s3://b/runs/ft/model/", "s3://b/runs/ft"),
        ("/checkpoints/output/ft/model", "/checkpoints/output/ft"),
        ("s3://b/runs/ft", "s3://b/runs/ft"),
    ],
)
def test_output_location_of_a_model_path(path: str, location: str) -> None:
    assert output_location(path) == location
