"""Suite-wide settings: offline, quiet, and one cache for expensive artefacts."""

from __future__ import annotations

import os
from pathlib import Path

# Nothing in the tests may reach a model hub; set before transformers loads.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WHISPERFT_CACHE", str(Path.home() / ".cache" / "whisperft"))

REPO = Path(__file__).resolve().parents[1]

from integration.conftest_model import *  # noqa: E402, F403  (session fixtures: bundled models converted once)
