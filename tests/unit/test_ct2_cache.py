"""The conversion cache: keyed by the sources, atomic, and never left half written.

The converter is replaced by a small stand-in here so the cache logic is
tested in milliseconds; the real conversion is covered by the integration tests.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from whisperft.trainer.model import ModelError, resolve_model_dir, sources
from whisperft.trainer.model.ct2_import import REPORT_FILE, CT2Source

pytestmark = pytest.mark.unit


def fake_export(root: Path) -> Path:
    root.mkdir()
    for name in ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt"):
        (root / name).write_text(name)
    return root


class Converter:
    def __init__(self, fail: bool = False) -> None:
        self.calls = 0
        self.fail = fail

    def __call__(self, source: CT2Source, out_dir: Path) -> dict[str, str]:
        self.calls += 1
        out_dir.mkdir(parents=True)
        (out_dir / "model.safetensors").write_text("half")
        if self.fail:
            raise KeyboardInterrupt  # an interruption mid-write
        (out_dir / REPORT_FILE).write_text("{}")
        return {}


def test_converts_once_then_reuses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    export = fake_export(tmp_path / "my-export")
    convert = Converter()
    monkeypatch.setattr(sources, "convert_ct2", convert)
    first = resolve_model_dir(f"ct2:{export}", cache_dir=tmp_path / "cache")
    again = resolve_model_dir(str(export), cache_dir=tmp_path / "cache")  # auto-detected CT2 dir
    assert first == again and convert.calls == 1
    assert first.parent == tmp_path / "cache" / "models" and first.name.startswith("my-export-")
    assert oct((first / "model.safetensors").stat().st_mode & 0o777) == "0o644"


def test_key_changes_with_a_source_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    export = fake_export(tmp_path / "e")
    monkeypatch.setattr(sources, "convert_ct2", Converter())
    first = resolve_model_dir(f"ct2:{export}", cache_dir=tmp_path / "cache")
    (export / "model.bin").write_text("a different export")
    assert resolve_model_dir(f"ct2:{export}", cache_dir=tmp_path / "cache") != first


def test_interrupted_conversion_leaves_nothing_and_retries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    export = fake_export(tmp_path / "e")
    cache = tmp_path / "cache"
    monkeypatch.setattr(sources, "convert_ct2", Converter(fail=True))
    with pytest.raises(KeyboardInterrupt):
        resolve_model_dir(f"ct2:{export}", cache_dir=cache)
    assert [p.name for p in (cache / "models").iterdir() if not p.name.endswith(".lock")] == []
    # a crashed process's temp dir and a final dir without its report are both discarded
    key = sources.cache_key(sources.ct2_source(export))
    (cache / "models" / f".tmp-e-{key}-99999").mkdir()
    (cache / "models" / f"e-{key}").mkdir()
    convert = Converter()
    monkeypatch.setattr(sources, "convert_ct2", convert)
    done = resolve_model_dir(f"ct2:{export}", cache_dir=cache)
    assert convert.calls == 1 and (done / REPORT_FILE).is_file()
    assert sorted(p.name for p in (cache / "models").iterdir() if not p.name.endswith(".lock")) == [
        done.name
    ]


def test_bad_references_name_the_problem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match="unknown bundled model 'huge'"):
        resolve_model_dir("bundled:huge", cache_dir=tmp_path)
    with pytest.raises(ModelError, match="does not exist"):
        resolve_model_dir(f"ct2:{tmp_path / 'nope'}", cache_dir=tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match=r"has no model\.bin"):
        resolve_model_dir(f"ct2:{tmp_path / 'empty'}", cache_dir=tmp_path)
    with pytest.raises(
        ModelError, match="neither a Hugging Face Whisper directory nor a CTranslate2 export"
    ):
        resolve_model_dir(str(tmp_path / "empty"), cache_dir=tmp_path)
    with pytest.raises(ModelError, match="not a directory"):
        resolve_model_dir(str(tmp_path / "missing" / "model"), cache_dir=tmp_path)
    with pytest.raises(
        ModelError, match=r"could not be fetched from the model hub \(HF_HUB_OFFLINE"
    ):
        resolve_model_dir("nobody-here/whisper-imaginary", cache_dir=tmp_path)
