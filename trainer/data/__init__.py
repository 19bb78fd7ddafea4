"""Data readers: Common Voice releases, Hugging Face datasets dirs and hub datasets,
JSONL manifests.

Every reader yields `Example`s with 16 kHz mono float32 audio decoded by
soundfile (never torchcodec), filtered by duration and label length, with the
rows it drops counted by reason.
"""

from whisperft.trainer.data.audio import SAMPLE_RATE, decode_bytes, load_audio, to_mono_16k
from whisperft.trainer.data.bundled import BUNDLED_LANGUAGES, corpus_root, resolve_data_path
from whisperft.trainer.data.errors import DataError
from whisperft.trainer.data.example import Example, SplitData
from whisperft.trainer.data.hub import HubOptions
from whisperft.trainer.data.readers import (
    FORMATS,
    MAX_LABEL_TOKENS,
    DataFormat,
    iter_split,
    read_split,
    split_identity,
)

__all__ = [
    "BUNDLED_LANGUAGES",
    "FORMATS",
    "MAX_LABEL_TOKENS",
    "SAMPLE_RATE",
    "DataError",
    "DataFormat",
    "Example",
    "HubOptions",
    "SplitData",
    "corpus_root",
    "decode_bytes",
    "iter_split",
    "load_audio",
    "read_split",
    "resolve_data_path",
    "split_identity",
    "to_mono_16k",
]
