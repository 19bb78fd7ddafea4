"""A resume never unpickles code planted in the (shared, writable) checkpoint claim.

Each planted file is a pickle whose loading would create a marker file; the
manifest is rewritten to match it, as an attacker who can write the claim
would, so only the loads themselves can refuse it.
"""

from __future__ import annotations

import json
import pickle
import random
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from trainconfig_factory import train_config

from whisperft.trainer import checkpoint as ckpt
from whisperft.trainer import rng_state, safe_load
from whisperft.trainer.worker import Worker

pytestmark = pytest.mark.unit

_TORCH_LOAD = torch.load


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, (f"open({self.marker!r}, 'w').write('payload ran')",))


class _FakeEngine:
    """DeepSpeed's load as far as files go: every ds/*.pt through torch.load(weights_only=False)."""

    def __init__(self) -> None:
        self.optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))])
        self.lr_scheduler = None
        self.loaded: list[Any] = []

    def load_checkpoint(
        self, load_dir: str, tag: str, custom_load_fn: Any = None
    ) -> tuple[str, dict[str, Any]]:
        assert custom_load_fn is None, "a full fine-tune loads DeepSpeed's way"
        for f in sorted((Path(load_dir) / tag).glob("*.pt")):
            self.loaded.append(torch.load(f, map_location="cpu", weights_only=False))
        return load_dir, {}


def _checkpoint(run: Path, step: int, cfg: Any) -> Path:
    """A one-rank checkpoint as the worker writes it."""
    d = run / ckpt.dir_name(step)
    (d / ckpt.DS_TAG).mkdir(parents=True)
    torch.save(
        {"module": {"w": torch.arange(4.0)}, "global_steps": step},
        d / ckpt.DS_TAG / "mp_rank_00_model_states.pt",
    )
    rng_state.write(d / rng_state.file_name(0), cuda=False)
    st = ckpt.TrainerState(
        step=step, micro_step=step, epoch=0, world_size=1, total_steps=10, config=cfg.to_wire()
    )
    (d / ckpt.STATE_FILE).write_text(st.to_json())
    ckpt.write_manifest(d, 0)
    return d


def _plant(d: Path, rel: str, payload: Any) -> None:
    """Write ``payload`` (pickled) at ``rel`` and make the manifest agree, as an attacker would."""
    torch.save(payload, d / rel)
    (d / "manifest_rank0.json").unlink()
    ckpt.write_manifest(d, 0)
    assert ckpt.problem(d, verify_content=True) is None  # the digests cannot tell


def _worker(run: Path, cfg: Any) -> Worker:
    w = Worker.__new__(Worker)  # no Ray context: only what restore() uses
    w.rank, w.world, w.cuda = 0, 1, False
    w.cfg, w.run_dir, w.steps = cfg, run, 10
    w.bucket = None  # checkpoints on the claim
    w.engine = _FakeEngine()
    return w


def _restore_error(w: Worker) -> Exception | None:
    try:
        w.restore()
    except Exception as exc:  # checked after the marker, so a payload that ran is the failure
        return exc
    return None


@pytest.fixture
def cfg() -> Any:
    return train_config(training={"maxSteps": 10})


def _draws() -> tuple[Any, ...]:
    return (torch.rand(3).tolist(), np.random.rand(3).tolist(), random.random(), random.gauss(0, 1))


def test_untouched_checkpoint_restores_every_rng_exactly(tmp_path: Path, cfg: Any) -> None:
    random.gauss(0, 1)  # leaves a cached gaussian in Python's state
    np.random.standard_normal()  # and in numpy's
    _checkpoint(tmp_path, 4, cfg)
    expected = _draws()
    _draws()  # the generators move on
    state = _worker(tmp_path, cfg).restore()
    assert state.step == 4
    assert _draws() == expected


def test_pickle_planted_in_a_deepspeed_file_is_refused_naming_it(tmp_path: Path, cfg: Any) -> None:
    marker = tmp_path / "payload-ran"
    d = _checkpoint(tmp_path, 4, cfg)
    rel = f"{ckpt.DS_TAG}/mp_rank_00_model_states.pt"
    _plant(d, rel, {"module": {"w": torch.zeros(4)}, "extra": _Payload(marker)})
    err = _restore_error(_worker(tmp_path, cfg))
    assert not marker.exists(), "the planted pickle ran"
    assert isinstance(err, safe_load.UnsafeCheckpointError), err
    assert f"refusing to load {d / rel}" in str(err) and "GLOBAL exec" in str(err)
    assert torch.load is _TORCH_LOAD  # put back


def test_pickle_planted_as_the_rng_file_is_refused_naming_it(tmp_path: Path, cfg: Any) -> None:
    """As the JSON file, and as the pickled .pt file of the old layout: neither is unpickled."""
    marker = tmp_path / "payload-ran"
    d = _checkpoint(tmp_path, 4, cfg)
    torch.save(_Payload(marker), d / "rng_rank0.pt")
    _plant(d, rng_state.file_name(0), _Payload(marker))
    err = _restore_error(_worker(tmp_path, cfg))
    assert not marker.exists(), "the planted pickle ran"
    assert isinstance(err, rng_state.RngStateError), err
    assert str(d / "rng_rank0.json") in str(err)


def test_a_checkpoint_of_the_old_layout_resumes_without_unpickling_its_rng(
    tmp_path: Path, cfg: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "payload-ran"
    d = _checkpoint(tmp_path, 4, cfg)
    (d / rng_state.file_name(0)).unlink()
    _plant(d, "rng_rank0.pt", _Payload(marker))
    err = _restore_error(_worker(tmp_path, cfg))
    assert not marker.exists(), "the planted pickle ran"
    assert err is None
    assert "rng_rank0.pt, a pickle that is not loaded" in capsys.readouterr().out


def test_planted_file_that_no_manifest_lists_in_ds_is_refused(
    tmp_path: Path, cfg: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """DeepSpeed globs ds/ (mp_rank_*_model_states.pt): an extra file there would be read."""
    _checkpoint(tmp_path, 2, cfg)
    d = _checkpoint(tmp_path, 4, cfg)
    (d / ckpt.DS_TAG / "mp_rank_01_model_states.pt").write_bytes(pickle.dumps({"x": 1}))
    why = ckpt.problem(d)
    assert (
        why is not None
        and "ds/mp_rank_01_model_states.pt" in why
        and "in no rank's manifest" in why
    )
    found = ckpt.latest_good(tmp_path)
    assert found is not None and found[1].step == 2
    assert "checkpoint_step_00000004" in caplog.text


@pytest.mark.parametrize(
    "text",
    [
        b"\x80\x04not json",
        json.dumps({"format": 1, "torch": "AA==", "numpy": {}, "python": {}}).encode(),
        json.dumps([1, 2, 3]).encode(),
    ],
)
def test_malformed_rng_file_is_one_error_naming_it(tmp_path: Path, text: bytes) -> None:
    f = tmp_path / "rng_rank3.json"
    f.write_bytes(text)
    with pytest.raises(rng_state.RngStateError, match=r"rng_rank3\.json"):
        rng_state.load(f, cuda=False)


def test_rng_state_torch_refuses_is_one_error_naming_it(tmp_path: Path) -> None:
    f = tmp_path / "rng_rank0.json"
    rng_state.write(f, cuda=False)
    doc = json.loads(f.read_text())
    doc["torch"] = "AAAA"  # valid base64, not a generator state
    f.write_text(json.dumps(doc))
    before = torch.get_rng_state()
    with pytest.raises(rng_state.RngStateError, match=r"rng_rank0\.json"):
        rng_state.load(f, cuda=False)
    assert torch.equal(torch.get_rng_state(), before)


def test_deepspeed_checkpoint_engine_loads_its_own_types_and_nothing_else(tmp_path: Path) -> None:
    """The allowlist is exactly what DeepSpeed's ZeRO shards pickle; a payload still fails."""
    pytest.importorskip("deepspeed")
    from deepspeed.runtime.checkpoint_engine.torch_checkpoint_engine import TorchCheckpointEngine
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    shard = {
        "optimizer_state_dict": {
            "loss_scaler": LossScaler(1.0),
            "dynamic": DynamicLossScaler(2.0**16, 1000, 1, 2, False),
            "zero_stage": ZeroStageEnum.gradients,
            "param_slice_mappings": [OrderedDict(w=fragment_address(numel=4, start=0))],
            "single_partition_of_fp32_groups": [torch.ones(4)],
        }
    }
    good, bad = tmp_path / "zero_pp_rank_0_optim_states.pt", tmp_path / "bad.pt"
    torch.save(shard, good)
    marker = tmp_path / "payload-ran"
    torch.save({**shard, "x": _Payload(marker)}, bad)
    engine = TorchCheckpointEngine()
    with safe_load.weights_only_loads(safe_load.deepspeed_globals()):
        sd = engine.load(str(good), map_location="cpu")["optimizer_state_dict"]
        with pytest.raises(safe_load.UnsafeCheckpointError, match=r"bad\.pt"):
            engine.load(str(bad), map_location="cpu")
    assert sd["zero_stage"] is ZeroStageEnum.gradients
    assert sd["param_slice_mappings"][0]["w"] == fragment_address(numel=4, start=0)
    assert sd["loss_scaler"].cur_scale == 1.0 and sd["dynamic"].cur_scale == 2.0**16
    assert not marker.exists()
    # outside the context torch.load is torch's again; DeepSpeed types need no global allowlist
    with pytest.raises(pickle.UnpicklingError):
        torch.load(good, weights_only=True)
