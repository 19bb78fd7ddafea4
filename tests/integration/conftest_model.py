"""Session fixtures for the bundled Whisper models, converted once (then cached across runs).

Import into tests/conftest.py with ``from tests.integration.conftest_model import *``
(or list it in ``pytest_plugins``) so every integration module shares one conversion
and one loaded copy of each model.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from whisperft.trainer.model import LoadedModel

__all__ = ["base_dir", "base_model", "tiny_en_dir", "tiny_en_model"]


@pytest.fixture(scope="session")
def tiny_en_dir() -> Path:
    """HF directory of bundled:tiny.en (converted on first use, then cached)."""
    from whisperft.trainer.model import resolve_model_dir

    return resolve_model_dir("bundled:tiny.en")


@pytest.fixture(scope="session")
def base_dir() -> Path:
    """HF directory of bundled:base (converted on first use, then cached)."""
    from whisperft.trainer.model import resolve_model_dir

    return resolve_model_dir("bundled:base")


@pytest.fixture(scope="session")
def tiny_en_model(tiny_en_dir: Path) -> LoadedModel:
    """bundled:tiny.en loaded once per session (fp32, eval, CPU); do not train it in place."""
    from whisperft.trainer.model import load_model

    return load_model("bundled:tiny.en")


@pytest.fixture(scope="session")
def base_model(base_dir: Path) -> LoadedModel:
    """bundled:base loaded once per session (fp32, eval, CPU); do not train it in place."""
    from whisperft.trainer.model import load_model

    return load_model("bundled:base")
