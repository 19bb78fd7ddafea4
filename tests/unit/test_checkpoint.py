import json
from pathlib import Path

import pytest

from whisperft.trainer import checkpoint as ckpt

pytestmark = pytest.mark.unit


def make(run: Path, step: int, world: int = 2, *, best: float | None = None) -> Path:
    d = run / ckpt.dir_name(step)
    for rank in range(world):
        (d / "ds").mkdir(parents=True, exist_ok=True)
        (d / "ds" / f"shard{rank}.pt").write_bytes(b"x" * (10 + rank))
        if rank == 0:
            st = ckpt.TrainerState(
                step=step,
                micro_step=step,
                epoch=0,
                world_size=world,
                total_steps=100,
                config={},
                best_wer=best,
            )
            (d / ckpt.STATE_FILE).write_text(st.to_json())
        # each rank's manifest lists only its own files
        files = {f"ds/shard{rank}.pt": 10 + rank}
        if rank == 0:
            files[ckpt.STATE_FILE] = (d / ckpt.STATE_FILE).stat().st_size
        (d / f"manifest_rank{rank}.json").write_text(json.dumps({"rank": rank, "files": files}))
    return d


def test_names_sort_by_step(tmp_path: Path) -> None:
    for s in (5, 100, 20):
        make(tmp_path, s)
    (tmp_path / "checkpoint_manager_snapshot.json").write_text("{}")
    assert [ckpt.step_of(p) for p in ckpt.list_checkpoints(tmp_path)] == [100, 20, 5]


def test_complete_checkpoint_is_resumable(tmp_path: Path) -> None:
    d = make(tmp_path, 10)
    assert ckpt.problem(d) is None
    path, state = ckpt.latest_good(tmp_path)  # type: ignore[misc]
    assert path == d and state.step == 10


def test_truncated_latest_falls_back_with_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    make(tmp_path, 10)
    bad = make(tmp_path, 20)
    (bad / "ds" / "shard1.pt").write_bytes(b"x")  # truncated
    assert "truncated" in (ckpt.problem(bad) or "")
    found = ckpt.latest_good(tmp_path)
    assert found is not None and found[1].step == 10
    assert "skipping checkpoint" in caplog.text and "checkpoint_step_00000020" in caplog.text


@pytest.mark.parametrize(
    "damage, expected",
    [
        (lambda d: (d / "manifest_rank1.json").unlink(), "rank 1 never finished"),
        (lambda d: (d / ckpt.STATE_FILE).unlink(), "trainer_state.json missing"),
        (lambda d: (d / ckpt.STATE_FILE).write_text("{not json"), "unreadable"),
        (lambda d: (d / "ds" / "shard0.pt").unlink(), "missing"),
    ],
)
def test_each_kind_of_damage_is_named(tmp_path: Path, damage, expected: str) -> None:  # type: ignore[no-untyped-def]
    d = make(tmp_path, 3)
    damage(d)
    assert expected in (ckpt.problem(d) or "")
    assert ckpt.latest_good(tmp_path) is None


def test_prune_keeps_last_k_and_best(tmp_path: Path) -> None:
    for s in (10, 20, 30, 40, 50):
        make(tmp_path, s)
    removed = ckpt.prune(tmp_path, keep_last=2, best_step=20)
    assert sorted(ckpt.step_of(p) for p in removed) == [10, 30]
    assert [ckpt.step_of(p) for p in ckpt.list_checkpoints(tmp_path)] == [50, 40, 20]


def test_prune_never_deletes_an_incomplete_head(tmp_path: Path) -> None:
    make(tmp_path, 10)
    make(tmp_path, 20)
    head = tmp_path / ckpt.dir_name(30)
    head.mkdir()  # an upload still in progress
    ckpt.prune(tmp_path, keep_last=1, best_step=None)
    assert head.exists()
    assert [ckpt.step_of(p) for p in ckpt.list_checkpoints(tmp_path)] == [30, 20]


def _uploaded(run: Path, step: int, world: int = 2) -> Path:
    """A checkpoint as Ray Train merges it: each rank's own directory, manifest written last."""
    import shutil

    d = run / ckpt.dir_name(step)
    for rank in range(world):
        local = run / f"local{rank}-{step}"
        (local / "ds").mkdir(parents=True)
        (local / "ds" / f"shard{rank}.pt").write_bytes(bytes(range(256)) * (4 + rank))
        if rank == 0:
            st = ckpt.TrainerState(
                step=step, micro_step=step, epoch=0, world_size=world, total_steps=100, config={}
            )
            (local / ckpt.STATE_FILE).write_text(st.to_json())
        ckpt.write_manifest(local, rank)
        shutil.copytree(local, d, dirs_exist_ok=True)
        shutil.rmtree(local)
    return d


def test_damage_in_place_is_caught_before_resume(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Same size, other bytes: the cheap size check passes, the digest does not."""
    _uploaded(tmp_path, 10)
    bad = _uploaded(tmp_path, 20)
    assert ckpt.problem(bad, verify_content=True) is None
    shard = bad / "ds" / "shard1.pt"
    data = bytearray(shard.read_bytes())
    data[100] ^= 0xFF
    shard.write_bytes(bytes(data))
    assert ckpt.problem(bad) is None  # sizes alone cannot see it
    assert "ds/shard1.pt does not match its recorded SHA-256" in (
        ckpt.problem(bad, verify_content=True) or ""
    )
    found = ckpt.latest_good(tmp_path)
    assert found is not None and found[1].step == 10
    assert "checkpoint_step_00000020" in caplog.text
