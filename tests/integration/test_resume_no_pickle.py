"""A resume never runs code planted in the checkpoint claim (issue 14, Security).

The claim is shared storage that others may be able to write. An attacker who
can write a file there can rewrite its manifest too, so digests alone do not
stop a pickle payload: the loads themselves must not unpickle code. The run
goes through the `whisperft train` CLI in a subprocess, 2 workers, ZeRO-2, as
in test_train.py.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from whisperft.trainer import checkpoint as ckpt

# The same tiny run as test_train's (one source for the config and the CLI call).
sys.path.insert(0, str(Path(__file__).parent))
from test_train import run_dir, train, write_config

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1500)]

NAME = "np"


class _Payload:
    """Pickles as a call that writes ``marker``: code execution if ever unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, (f"open({self.marker!r}, 'w').write('payload ran')",))


def _rewrite_manifest_entry(ckpt_dir: Path, rel: str) -> None:
    """What an attacker with write access does: make the manifest match the new bytes."""
    for manifest in ckpt_dir.glob("manifest_rank*.json"):
        doc = json.loads(manifest.read_text())
        if rel in doc["files"]:
            data = (ckpt_dir / rel).read_bytes()
            doc["files"][rel] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
            manifest.write_text(json.dumps(doc))
            return
    raise AssertionError(f"{rel} is in no manifest of {ckpt_dir}")


def test_planted_pickle_never_runs_and_the_resume_refuses_it(tmp_path: Path) -> None:
    import torch

    rd = run_dir(tmp_path, NAME)
    first = train(write_config(tmp_path, NAME, maxSteps=4))
    assert first.returncode == 0
    assert [ckpt.step_of(p) for p in ckpt.list_checkpoints(rd)] == [4, 2]
    last = rd / ckpt.dir_name(4)
    saved_fp = json.loads((last / ckpt.STATE_FILE).read_text())["optim_fingerprint"]

    # The attack: DeepSpeed's model states, still loadable, plus one entry whose
    # unpickling runs code; the manifest is rewritten so size and digest match.
    rel = f"{ckpt.DS_TAG}/mp_rank_00_model_states.pt"
    target = last / rel
    originals = {p: p.read_bytes() for p in [target, *last.glob("manifest_rank*.json")]}
    marker = tmp_path / "payload-ran"
    state = torch.load(target, map_location="cpu", weights_only=True)
    state["whisperft_extra"] = _Payload(marker)
    torch.save(state, target)
    _rewrite_manifest_entry(last, rel)
    assert ckpt.problem(last, verify_content=True) is None  # the digests cannot tell

    second = train(write_config(tmp_path, NAME, maxSteps=6))
    out = second.stdout + second.stderr
    assert not marker.exists(), "the planted pickle ran during the resume"
    # Refused, loudly, naming the file; no silent fallback to older state of a
    # claim that has been written by someone else.
    assert second.returncode != 0
    assert "mp_rank_00_model_states.pt" in out and "refusing to load" in out, out[-3000:]
    assert "Unsupported global: GLOBAL exec" in out
    assert [ckpt.step_of(p) for p in ckpt.list_checkpoints(rd)] == [4, 2]  # nothing trained on

    # The same checkpoint untouched again resumes exactly where it was saved.
    for p, data in originals.items():
        p.write_bytes(data)
    third = train(write_config(tmp_path, NAME, maxSteps=6))
    assert third.returncode == 0
    assert not marker.exists()
    found = ckpt.latest_good(rd)
    assert found is not None
    final = found[1]
    assert final.step == 6
    events = [h for h in final.history if h.get("event") == "resumed"]
    assert [e["step"] for e in events] == [4]
    assert events[0]["optim_fingerprint"] == pytest.approx(saved_fp, rel=1e-9)
    assert "resumed from checkpoint_step_00000004 at step 4/6" in third.stdout + third.stderr
    # RNG state is plain JSON now, one file per rank, listed in that rank's manifest.
    for rank in range(2):
        rng = json.loads((found[0] / f"rng_rank{rank}.json").read_text())
        assert set(rng) >= {"torch", "numpy", "python"}
        assert not (found[0] / f"rng_rank{rank}.pt").exists()
