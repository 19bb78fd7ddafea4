"""Format hub: a Hugging Face hub dataset, read offline from a local repository of
parquet files laid out as the hub lays them, built here from the bundled corpus.

Real `datasets` builders (parquet, streaming and not); the audio is decoded by our
soundfile path, never by datasets.Audio (torchcodec).
"""

from __future__ import annotations

import collections
import csv
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from whisperft.operator.api.crd import build_crd
from whisperft.operator.api.resource import SpecError, parse_spec
from whisperft.operator.api.spec import DatasetSpec
from whisperft.trainer.data import (
    SAMPLE_RATE,
    DataError,
    HubOptions,
    corpus_root,
    iter_split,
    read_split,
    split_identity,
)

pytestmark = pytest.mark.unit
datasets = pytest.importorskip("datasets")

CORRUPT = b"ID3 this is not an mp3 at all" * 8
HUB_SPLITS = {"train": "train", "dev": "validation", "test": "test"}  # ours -> the hub's


def corpus_rows(lang: str, split: str, n: int) -> list[dict[str, Any]]:
    root = corpus_root() / lang
    with (root / f"{split}.tsv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[:n]
    return [
        {
            "client_id": r["client_id"],
            "path": r["path"],
            "audio": {"bytes": (root / "clips" / r["path"]).read_bytes(), "path": r["path"]},
            "sentence": r["sentence"],
            "locale": lang,
        }
        for r in rows
    ]


def write_parquet(rows: list[dict[str, Any]], file: Path, text_column: str = "sentence") -> None:
    """As the hub's parquet-converted datasets: an Audio column of {bytes, path} structs."""
    file.parent.mkdir(parents=True, exist_ok=True)
    columns = {k: [r[k] for r in rows] for k in rows[0]}
    if text_column != "sentence":
        columns[text_column] = columns.pop("sentence")
    ds = datasets.Dataset.from_dict(columns).cast_column("audio", datasets.Audio())
    ds.to_parquet(str(file))


SIZES = {"en": {"train": 6, "dev": 3, "test": 3}, "sw": {"train": 4, "dev": 2, "test": 2}}


@pytest.fixture(autouse=True)
def datasets_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Non-streaming reads prepare Arrow files in the datasets cache: keep them here."""
    cache = tmp_path / "hf-datasets-cache"
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    return cache


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`<repo>/<config>/<split>-00000-of-00001.parquet`, configs in the README's YAML."""
    root = tmp_path_factory.mktemp("hub") / "common_voice_mini"
    yaml = ["---", "configs:"]
    for lang, sizes in SIZES.items():
        yaml += [f"- config_name: {lang}", "  data_files:"]
        for ours, n in sizes.items():
            hub = HUB_SPLITS[ours]
            rows = corpus_rows(lang, ours, n)
            if (lang, ours) == ("en", "train"):
                rows[2]["audio"] = {"bytes": CORRUPT, "path": "broken.mp3"}
                rows[4]["sentence"] = "  "
            write_parquet(rows, root / lang / f"{hub}-00000-of-00001.parquet")
            yaml += [f"  - split: {hub}", f"    path: {lang}/{hub}-*.parquet"]
    (root / "README.md").write_text("\n".join([*yaml, "---", "# A mirror", ""]), encoding="utf-8")
    return root


def sentences(data: Any) -> list[str]:
    return [e.sentence for e in data.examples]


@pytest.mark.parametrize("streaming", [False, True], ids=["prepared", "streaming"])
def test_reads_train_dev_test_of_a_config(repo: Path, streaming: bool) -> None:
    opts = HubOptions(config="sw", streaming=streaming)
    for ours, n in SIZES["sw"].items():
        data = read_split("hub", repo, ours, hub_options=opts)
        assert sentences(data) == [r["sentence"] for r in corpus_rows("sw", ours, n)]
        assert data.source == f"{repo} (sw) [{HUB_SPLITS[ours]}]"
        assert not data.skipped
        assert {e.meta["split"] for e in data.examples} == {ours}
        assert all(e.audio.dtype == np.float32 and e.audio.ndim == 1 for e in data.examples)
        # 48 kHz MP3 in the parquet cells, 16 kHz out.
        assert all(0.5 < len(e.audio) / SAMPLE_RATE < 15 for e in data.examples)
    first = read_split("hub", repo, "train", hub_options=opts).examples[0]
    assert first.meta["speaker"] == corpus_rows("sw", "train", 1)[0]["client_id"]
    assert first.meta["path"] == corpus_rows("sw", "train", 1)[0]["path"]


def test_streaming_and_prepared_give_the_same_examples(repo: Path) -> None:
    for split in ("train", "dev"):
        full = read_split("hub", repo, split, hub_options=HubOptions(config="en"))
        streamed = read_split("hub", repo, split, hub_options=HubOptions("en", streaming=True))
        assert sentences(full) == sentences(streamed)
        assert [e.meta for e in full.examples] == [e.meta for e in streamed.examples]
        for a, b in zip(full.examples, streamed.examples, strict=True):
            np.testing.assert_array_equal(a.audio, b.audio)
        assert full.skipped == streamed.skipped


@pytest.mark.parametrize("streaming", [False, True], ids=["prepared", "streaming"])
def test_corrupt_clip_and_empty_sentence_are_skipped_and_counted(
    repo: Path, streaming: bool
) -> None:
    data = read_split("hub", repo, "train", hub_options=HubOptions("en", streaming=streaming))
    expected = [
        r["sentence"] for i, r in enumerate(corpus_rows("en", "train", 6)) if i not in (2, 4)
    ]
    assert sentences(data) == expected
    assert data.skipped == collections.Counter(corrupt_audio=1, empty_sentence=1)


def test_missing_config_split_and_dataset_are_named(repo: Path, tmp_path: Path) -> None:
    with pytest.raises(
        DataError, match=r"no config 'fr' in the hub dataset; configs: \['en', 'sw'\]"
    ):
        read_split("hub", repo, "train", hub_options=HubOptions(config="fr"))
    with pytest.raises(
        DataError, match=r"several configs; set dataset.config to one of \['en', 'sw'\]"
    ):
        read_split("hub", repo, "train")
    with pytest.raises(
        DataError,
        match=r"\(sw\): no split 'other' in the hub dataset; splits: \['train', 'validation', 'test'\]",
    ):
        read_split("hub", repo, "other", hub_options=HubOptions(config="sw", streaming=True))
    with pytest.raises(DataError, match=r"missing: data path does not exist"):
        read_split("hub", tmp_path / "missing", "train")
    # Offline (the tests' HF_HUB_OFFLINE=1), an id that is not cached names itself.
    with pytest.raises(
        DataError, match=r"whisperft-tests/no-such-dataset.*cannot reach hub dataset"
    ):
        read_split("hub", "whisperft-tests/no-such-dataset", "train")
    with pytest.raises(DataError, match=r"format hub reads a hub dataset id"):
        read_split("hub", "bundled:en", "train")


@pytest.fixture(scope="module")
def sharded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`<repo>/data/<split>-0000N-of-00003.parquet`, one config, no README. Train's last
    two shards are garbage: only a read that stops early succeeds."""
    root = tmp_path_factory.mktemp("hub") / "sharded"
    rows = corpus_rows("en", "train", 5)
    write_parquet(rows, root / "data" / "train-00000-of-00003.parquet", text_column="text")
    for n in (1, 2):
        (root / "data" / f"train-0000{n}-of-00003.parquet").write_bytes(b"PAR1 truncated")
    test = root / "data" / "test-00000-of-00001.parquet"  # one schema for all of a config's splits
    write_parquet(corpus_rows("en", "test", 2), test, text_column="text")
    return root


def test_a_limit_bounds_a_streamed_read(sharded: Path) -> None:
    streaming = HubOptions(streaming=True)
    data = read_split("hub", sharded, "train", limit=3, hub_options=streaming)
    assert sentences(data) == [r["sentence"] for r in corpus_rows("en", "train", 3)]
    skipped: collections.Counter[str] = collections.Counter()
    examples = iter_split("hub", sharded, "train", skipped=skipped, limit=5, hub_options=streaming)
    assert len(list(examples)) == 5  # all of the first shard, and not a row more
    # Reading past the first shard reaches the broken ones, which is named.
    with pytest.raises(DataError, match=r"sharded \[train\]: reading failed"):
        read_split("hub", sharded, "train", limit=6, hub_options=streaming)
    # Not streaming, the whole split is prepared first, limit or not.
    with pytest.raises(DataError, match=r"sharded \[train\]: cannot read the hub dataset"):
        read_split("hub", sharded, "train", limit=1)
    # The default config of a data/ layout, its text in a `text` column.
    assert len(read_split("hub", sharded, "test", hub_options=streaming).examples) == 2


def test_a_config_folder_without_readme_configs(tmp_path: Path) -> None:
    root = tmp_path / "folders"
    for lang in ("en", "sw"):
        write_parquet(
            corpus_rows(lang, "dev", 2), root / lang / "validation-00000-of-00001.parquet"
        )
    data = read_split("hub", root, "dev", hub_options=HubOptions(config="sw", streaming=True))
    assert sentences(data) == [r["sentence"] for r in corpus_rows("sw", "dev", 2)]
    with pytest.raises(DataError, match=r"no config 'fr'.*configs: \['default'\]"):
        read_split("hub", root, "dev", hub_options=HubOptions(config="fr"))


def test_fingerprint_is_cheap_and_follows_the_files(repo: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(repo, copy)
    en = HubOptions(config="en")
    first = split_identity("hub", copy, "train", en)
    assert first["source"] == str(copy.resolve())
    assert split_identity("hub", copy, "train", en) == first
    assert split_identity("hub", copy, "test", en) != first
    assert split_identity("hub", copy, "train", HubOptions(config="sw")) != first
    assert split_identity("hub", copy, "train", HubOptions("en", streaming=True)) == first
    shard = copy / "en" / "train-00000-of-00001.parquet"
    shard.write_bytes(shard.read_bytes() + b"\0")
    assert split_identity("hub", copy, "train", en)["fingerprint"] != first["fingerprint"]
    # A hub id offline: its id, config, revision and split, nothing read.
    remote = split_identity("hub", "owner/dataset", "train", HubOptions("sw", revision="v1"))
    assert remote["source"] == "owner/dataset"
    assert remote != split_identity("hub", "owner/dataset", "train", HubOptions("sw", "v2"))
    assert remote != split_identity("hub", "owner/other", "train", HubOptions("sw", "v1"))
    assert not any(copy.rglob("*.arrow"))  # nothing was prepared


# --- the resource side --------------------------------------------------------------------

VALID: dict[str, Any] = {"training": {"maxSteps": 10}, "checkpoints": {"size": "10Gi"}}


def _dataset(**fields: Any) -> dict[str, Any]:
    return {**VALID, "dataset": fields}


@pytest.mark.parametrize(
    "path",
    ["mozilla-foundation/common_voice_17_0", "librispeech_asr", "/mirror/cv", "./cv", "../cv"],
)
def test_hub_paths_accepted(path: str) -> None:
    spec = parse_spec(_dataset(format="hub", path=path, config="sw", streaming=True))
    assert HubOptions.of(spec.dataset) == HubOptions(config="sw", streaming=True)


def test_hub_fields_and_paths_refused_by_pydantic_and_cel() -> None:
    schema = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    node = schema["properties"]["spec"]["properties"]["dataset"]
    messages = [r["message"] for r in node["x-kubernetes-validations"]]
    cases = [
        (_dataset(path="bundled:en", config="en"), "apply to format hub only"),
        (_dataset(path="bundled:en", streaming=True), "apply to format hub only"),
        (_dataset(format="hub", path="a/b/c"), "is a hub dataset id"),
        (_dataset(format="hub", path="bundled:en"), "is a hub dataset id"),
        (_dataset(format="hub", path="owner/bad--name"), "is a hub dataset id"),
        (_dataset(format="hub", path="s3://bucket/cv"), "is a hub dataset id"),
    ]
    for spec, phrase in cases:
        assert any(phrase in m for m in messages), phrase
        with pytest.raises(SpecError, match=phrase):
            parse_spec(spec)
    # On a claim the path is the mirror's folder there.
    parse_spec(_dataset(format="hub", path="mirrors/cv/17", claimName="datasets"))
    assert HubOptions.of(DatasetSpec(path="bundled:en")) is None


def test_cel_id_pattern_is_the_validators() -> None:
    schema = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    rules = schema["properties"]["spec"]["properties"]["dataset"]["x-kubernetes-validations"]
    rule = next(r["rule"] for r in rules if "matches(" in r["rule"])
    pattern = re.search(r"matches\('([^']+)'\)", rule)
    assert pattern is not None
    for name in ("a", "owner/name", "o.w-n_er/na.me", "a/b/c", "-a", "a-", "a//b", "é"):
        assert bool(re.match(pattern.group(1), name)) == bool(
            re.match(DatasetSpec._hub_id_pattern(), name)
        )


def test_rendered_pods_of_a_hub_dataset_may_reach_the_hub_with_the_token() -> None:
    from whisperft import names
    from whisperft.operator.api.resource import parse_resource
    from whisperft.operator.render.bundle import render_attempt
    from whisperft.operator.render.meta import Meta
    from whisperft.operator.settings import Settings
    from whisperft.trainer.config import config_from_files

    body = {
        "apiVersion": "whisperft.io/v1alpha1",
        "kind": "WhisperFineTune",
        "metadata": {"name": "hub-sw", "namespace": "ml", "uid": "u-1"},
        "spec": {
            **VALID,
            "model": {"name": "bundled:base", "language": "sw"},
            "dataset": {
                "format": "hub",
                "path": "mozilla-foundation/common_voice_17_0",
                "config": "sw",
                "streaming": True,
                "maxTrainExamples": 500,
            },
            "hfTokenSecretRef": {"name": "hf", "key": "token"},
        },
    }
    res = parse_resource(body)
    out = render_attempt(res.spec, Meta("hub-sw", "ml", "u-1"), Settings(), 1)
    assert out.problem is None, out.problem
    data = out.of_kind("ConfigMap")[0]["data"]
    cfg = config_from_files(data[names.FINETUNE_FILE_NAME], data[names.RUNTIME_FILE_NAME])
    assert cfg.runtime.data_path == "mozilla-foundation/common_voice_17_0"  # no claim prefix
    assert HubOptions.of(cfg.dataset) == HubOptions(config="sw", streaming=True)

    def envs(node: Any, where: str = "") -> list[tuple[str, list[dict[str, Any]]]]:
        found = []
        if isinstance(node, dict):
            if isinstance(node.get("env"), list) and "name" in node:
                found.append((node["name"], node["env"]))
            for key, sub in node.items():
                found += envs(sub, f"{where}.{key}")
        elif isinstance(node, list):
            for sub in node:
                found += envs(sub, where)
        return found

    containers = envs(out.children)
    assert {name for name, _ in containers} >= {"ray-head", "ray-worker"}
    for _, env in containers:  # nothing pins the pods offline
        assert not [e for e in env if e["name"] in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")]
    head = dict(containers)["ray-head"]  # the driver, which reads the dataset
    token = [e for e in head if e["name"] == "HF_TOKEN"]
    assert token == [
        {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}}
    ]
