"""pyproject lists packages by hand (the folders are mapped); catch a forgotten one."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


def test_every_package_folder_is_listed() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    setup = project["tool"]["setuptools"]
    listed = set(setup["packages"])
    mapping = setup["package-dir"]
    found = set()
    for package, folder in mapping.items():
        root = REPO / folder
        for init in root.rglob("__init__.py"):
            rel = init.parent.relative_to(root)
            found.add(".".join([package, *rel.parts]) if rel.parts else package)
    assert found - listed == set(), "add these to [tool.setuptools] packages"
    assert {p for p in listed if not p.startswith("whisperft.trainer.corpus")} <= found


def test_corpus_ships_as_package_data() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    data = project["tool"]["setuptools"]["package-data"]
    for lang in ("en", "sw"):
        assert (REPO / "trainer" / "corpus" / lang / "train.tsv").is_file()
        assert data[f"whisperft.trainer.corpus.{lang}.clips"] == ["*.mp3"]
