"""The bundled weights are checked against SHA-256 digests committed in the repo
before they are converted: a tampered or swapped package is refused, naming the file."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from whisperft.trainer.model import ModelError, sources
from whisperft.trainer.model.bundled_digests import BUNDLED_SHA256
from whisperft.trainer.model.ct2_import import CT2Source

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("name", sources.BUNDLED_MODELS)
def test_the_installed_packages_match_the_committed_digests(name: str) -> None:
    source = sources.bundled_source(name)
    assert {f.name for f in source.files} == set(BUNDLED_SHA256[name])
    sources.verify_digests(source)  # raises on a mismatch


def _copy(source: CT2Source, root: Path) -> CT2Source:
    root.mkdir()
    for f in source.files:
        shutil.copy(f, root / f.name)
    parts = tuple(root / p.name for p in source.model_parts)
    return CT2Source(name=source.name, model_parts=parts, directory=root, digests=source.digests)


def test_a_tampered_bundled_file_is_refused_before_conversion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tampered = _copy(sources.bundled_source("tiny.en"), tmp_path / "pkg")
    with open(tampered.directory / "tokenizer.json", "r+b") as f:  # same size, one byte changed
        first = f.read(1)
        f.seek(0)
        f.write(b"[" if first != b"[" else b"{")
    calls: list[CT2Source] = []
    monkeypatch.setattr(sources, "convert_ct2", lambda s, out: calls.append(s))
    with pytest.raises(ModelError, match=r"tokenizer\.json.*SHA-256") as err:
        sources.converted_dir(tampered, tmp_path / "cache")
    assert BUNDLED_SHA256["tiny.en"]["tokenizer.json"] in str(err.value)
    assert calls == [] and not list((tmp_path / "cache" / "models").glob("tiny.en-*"))
