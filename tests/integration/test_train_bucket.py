"""A fine-tune whose data, checkpoints and model are all in a bucket, on real servers.

SeaweedFS (S3) and fake-gcs-server (GCS) run on loopback (tests/objectstore.py);
each run is `whisperft train` in a subprocess, as a user would start it, with
the bucket's endpoint and keys in its environment and nothing of them in the spec.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import pytest
import yaml
from objectstore import *  # noqa: F403  (server fixtures)
from objectstore import FlakyProxy, GcsServer, S3Server
from test_train import _train_workers

from whisperft.trainer import checkpoint as ckpt
from whisperft.trainer.checkpoint_bucket import BucketCheckpoints
from whisperft.trainer.data import corpus_root
from whisperft.trainer.storage import commit
from whisperft.trainer.storage.errors import StorageError
from whisperft.trainer.storage.objects import Store
from whisperft.trainer.storage.uri import parse_uri

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]


def _corpus_bucket(server: S3Server | GcsServer, scheme: str, name: str) -> str:
    server.create_bucket(name)
    pafs.copy_files(
        str(corpus_root() / "en"),
        f"{name}/cv/en",
        source_filesystem=pafs.LocalFileSystem(),
        destination_filesystem=server.filesystem(),
    )
    return f"{scheme}://{name}"


def _config(tmp: Path, name: str, data: str, out: str, **training: Any) -> Path:
    spec = {
        "model": {"name": "bundled:tiny.en", "language": "en"},
        "dataset": {"path": data, "maxTrainExamples": 32, "maxEvalExamples": 8},
        "training": {
            "maxSteps": 4, "batchSizePerWorker": 4, "learningRate": 1e-4, "warmupSteps": 1,
            "freezeEncoder": True, "trainTopEncoderLayers": 1, "saveEvery": 2,
            "keepCheckpoints": 10, "evalBatchSize": 8, "maxNewTokens": 48, "logEvery": 1,
            "deepspeed": {"mode": "explicit", "stage": 2}, **training,
        },
        "resources": {"workers": 2},
        "checkpoints": {"size": "1Gi"},
        "output": {"location": out, "formats": ["hf"]},
    }  # fmt: skip
    path = tmp / f"{name}.yaml"
    doc = {"apiVersion": "whisperft.io/v1alpha1", "kind": "WhisperFineTune"}
    path.write_text(yaml.safe_dump({**doc, "metadata": {"name": name}, "spec": spec}))
    return path


def _env(storage: dict[str, str], tmp: Path) -> dict[str, str]:
    return {
        **os.environ,
        **storage,
        "PYTHONUNBUFFERED": "1",
        "WHISPERFT_STORAGE_RETRY_BASE_S": "0.05",
    }


def _store(server: S3Server | GcsServer, scheme: str, storage: dict[str, str]) -> Store:
    return Store.from_env("s3" if scheme == "s3" else "gs", storage)


def test_s3_fine_tune_from_and_to_a_bucket_survives_a_killed_worker(
    s3_server: S3Server, tmp_path: Path
) -> None:
    bucket = _corpus_bucket(s3_server, "s3", f"ft-{os.getpid()}")
    out = f"{bucket}/runs/ft"
    cfg = _config(tmp_path, "ft", f"{bucket}/cv/en", out, maxSteps=8)
    env = _env(s3_server.env(), tmp_path)
    store = _store(s3_server, "s3", s3_server.env())
    remote = BucketCheckpoints(f"{out}/checkpoints/ft", tmp_path / "unused", store=store)
    log = (tmp_path / "ft.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "whisperft", "train", str(cfg), "--no-progress"],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path,
    )  # fmt: skip
    killed = False
    deadline = time.monotonic() + 600
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            # Any complete checkpoint from step 4 short of the last: with bf16 steps
            # the head moves past 4 between two polls of the bucket.
            names = remote.names()
            done = [n for n in names if ckpt.dir_name(4) <= n < ckpt.dir_name(8)]
            if any(remote.problem(n) is None for n in done):
                workers = _train_workers()
                if workers:
                    os.kill(workers[-1].pid, signal.SIGKILL)
                    killed = True
                    break
            time.sleep(0.3)
        assert killed, "never saw a checkpoint from step 4 complete in the bucket with live workers"
        assert proc.wait(timeout=700) == 0, (tmp_path / "ft.log").read_text()[-6000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    text = (tmp_path / "ft.log").read_text()
    # Every checkpoint is complete in the bucket, the final one holds step 8, and the
    # restart resumed from a checkpoint downloaded from the bucket.
    names = remote.names()
    assert names[0] == ckpt.dir_name(8) and all(remote.problem(n) is None for n in names), names
    state = remote.state(names[0])
    resumed = [h for h in state.history if h.get("event") == "resumed"]
    assert len(resumed) == 1 and resumed[0]["step"] >= 4, state.history
    assert f"resumed from {resumed[0]['from']}" in text
    scratch = tmp_path / "runs" / "ft" / "checkpoints" / "ft"
    assert (scratch / resumed[0]["from"] / ckpt.STATE_FILE).is_file()  # what the resume downloaded
    # The model and results are in the bucket; results.json says where, and came last.
    base = parse_uri(out)
    results = json.loads(store.read_bytes(base.join("results.json")))
    assert results["final_model"] == f"{out}/model" and results["steps"] == 8
    assert results["checkpoints"][0] == f"{out}/checkpoints/ft/{ckpt.dir_name(8)}"
    assert results["test_wer_after"] is not None
    marker = commit.completed(base.join("model"), store=store)
    assert marker is not None and "model.safetensors" in marker["files"]
    assert store.is_file(base.join("training.png"))
    # The corpus was read from the bucket (a fresh bucket: no cached features for it).
    assert results["storage"]["bytes_read"] > 100_000, results["storage"]
    # `whisperft fetch` brings it down, digest-checked, ready to load.
    fetched = tmp_path / "fetched"
    proc = subprocess.run(
        [sys.executable, "-m", "whisperft", "fetch", out, str(fetched)],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((fetched / "results.json").read_text())["steps"] == 8
    from transformers import WhisperForConditionalGeneration

    WhisperForConditionalGeneration.from_pretrained(fetched / "model")


def test_gcs_round_trip_and_a_missing_bucket_is_one_clear_error(
    gcs_server: GcsServer, tmp_path: Path
) -> None:
    bucket = _corpus_bucket(gcs_server, "gs", f"ftg-{os.getpid()}")
    out = f"{bucket}/runs/g"
    env = _env(gcs_server.env(), tmp_path)
    cfg = _config(tmp_path, "g", f"{bucket}/cv/en", out, maxSteps=2)
    proc = subprocess.run(
        [sys.executable, "-m", "whisperft", "train", str(cfg), "--no-progress"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=700,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-6000:]
    store = _store(gcs_server, "gs", gcs_server.env())
    base = parse_uri(out)
    assert json.loads(store.read_bytes(base.join("results.json")))["steps"] == 2
    assert commit.completed(base.join("model"), store=store) is not None
    assert BucketCheckpoints(f"{out}/checkpoints/g", tmp_path / "x", store=store).names() == [
        ckpt.dir_name(2)
    ]
    # A location with no finished run: fetch says so and exits 2.
    proc = subprocess.run(
        [sys.executable, "-m", "whisperft", "fetch", f"{bucket}/runs/none", str(tmp_path / "f")],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2 and "no results.json" in proc.stderr, proc.stderr[-2000:]
    # An output bucket that does not exist: exit 2 (not retried) before any feature is
    # computed, naming the URI and the principal.
    missing = f"gs://no-such-bucket-{os.getpid()}/runs/g"
    cfg = _config(tmp_path, "g2", f"{bucket}/cv/en", missing)
    tic = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "whisperft", "train", str(cfg), "--no-progress"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-4000:]
    assert f"no-such-bucket-{os.getpid()}" in proc.stderr and "anonymous" in proc.stderr
    assert "features" not in proc.stderr.lower() and time.monotonic() - tic < 120


def _fake_checkpoint(root: Path, step: int, world: int, size: int) -> dict[int, Path]:
    """What `world` ranks write for one step (manifests included), one directory per rank."""
    dirs = {}
    for rank in range(world):
        d = root / f"rank{rank}"
        (d / ckpt.DS_TAG).mkdir(parents=True)
        (d / ckpt.DS_TAG / f"shard_{rank}.pt").write_bytes(os.urandom(size))
        if rank == 0:
            state = ckpt.TrainerState(step, step, 0, world, 10, {})
            (d / ckpt.STATE_FILE).write_text(state.to_json())
        ckpt.write_manifest(d, rank)
        dirs[rank] = d
    return dirs


@pytest.mark.parametrize("scheme", ["s3", "gs"])
def test_an_upload_cut_off_is_retried_or_never_counted_as_good(
    scheme: str,
    request: pytest.FixtureRequest,
    storage_env: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    server: S3Server | GcsServer = request.getfixturevalue(
        f"{'s3' if scheme == 's3' else 'gcs'}_server"
    )
    proxy: FlakyProxy = request.getfixturevalue(f"{'s3' if scheme == 's3' else 'gcs'}_proxy")
    name = f"cut-{scheme}-{os.getpid()}"
    server.create_bucket(name)
    env = server.env(endpoint=proxy.endpoint)
    store = Store.from_env("s3" if scheme == "s3" else "gs", {**env, **os.environ, **env})
    remote = BucketCheckpoints(f"{scheme}://{name}/ck", tmp_path / "scratch", store=store)
    size = 3 << 20
    # Step 2: a connection dropped twice mid-upload is retried; the checkpoint is good.
    good = _fake_checkpoint(tmp_path / "s2", 2, 2, size)
    proxy.cut(after_bytes=1 << 20, connections=2)
    for rank, d in good.items():
        remote.upload_rank(d, ckpt.dir_name(2), rank)
    assert proxy.cuts == 2 and remote.problem(ckpt.dir_name(2)) is None
    # Step 4: rank 0 is up, then the server keeps dropping rank 1's upload: one
    # StorageError after the retries, and step 4 is never counted as good.
    bad = _fake_checkpoint(tmp_path / "s4", 4, 2, size)
    proxy.heal()
    remote.upload_rank(bad[0], ckpt.dir_name(4), 0)
    proxy.cut(after_bytes=1 << 20, connections=None)
    with pytest.raises(StorageError) as err:
        remote.upload_rank(bad[1], ckpt.dir_name(4), 1)
    assert name in str(err.value) and err.value.attempts > 1
    proxy.heal()
    assert "rank 1 never finished writing" in (remote.problem(ckpt.dir_name(4)) or "")
    found = remote.latest_good()
    assert found is not None and found[1].step == 2  # falls back to the previous good one
    # Pruning never deletes the partial head (it may be an upload still in progress)
    # and keeps the newest good one.
    assert remote.prune(keep_last=1, best_step=None) == []
    assert remote.names() == [ckpt.dir_name(4), ckpt.dir_name(2)]
