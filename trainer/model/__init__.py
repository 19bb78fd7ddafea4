"""Model sources: hub ids, local HF directories and CTranslate2 (faster-whisper) imports.

Importing this package pulls in numpy only; torch and transformers load when a
model is converted or loaded.
"""

from whisperft.trainer.model.errors import ModelError
from whisperft.trainer.model.sources import (
    BUNDLED_MODELS,
    LoadedModel,
    load_model,
    resolve_model_dir,
)

__all__ = ["BUNDLED_MODELS", "LoadedModel", "ModelError", "load_model", "resolve_model_dir"]
