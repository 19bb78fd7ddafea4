"""Tokenizer, generation config and processor for a CTranslate2 Whisper export.

Two traps shape this module (measured on the bundled exports):
- CTranslate2's ``tokenizer.json`` stops at ``<|notimestamps|>``: the 1,501
  timestamp tokens exist only in ``vocabulary.txt``. They are appended here as
  added tokens with the ids the model was trained with.
- transformers 5 finds the first timestamp id as ``all_special_ids[-1] + 1``, so
  every special token (languages, tasks, ``<|notimestamps|>`` last) must be listed
  in ``extra_special_tokens``; otherwise timestamps decode shifted, silently.
Ids are always read from the tokenizer, never assumed: ``.en`` models have every
special id one lower than multilingual ones (and CTranslate2's ``lang_ids`` for
``.en`` exports are off by one, so they are checked, not trusted).
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from whisperft.trainer.model.ct2_whisper import WhisperDims
from whisperft.trainer.model.errors import ModelError

if TYPE_CHECKING:
    from transformers import GenerationConfig, WhisperTokenizer

EOT = "<|endoftext|>"
SOT = "<|startoftranscript|>"
NO_TIMESTAMPS = "<|notimestamps|>"
TIMESTAMP_COUNT = 1501  # <|0.00|> .. <|30.00|> in 0.02 s steps
_TIMESTAMP = re.compile(r"^<\|\d+\.\d\d\|>$")
_LANGUAGE = re.compile(r"^<\|([a-z]{2,3}|haw|yue)\|>$")


@dataclass(frozen=True)
class SpecialIds:
    eot: int
    sot: int
    translate: int
    transcribe: int
    sot_prev: int
    no_timestamps: int
    timestamp_begin: int
    languages: dict[str, int]  # "<|en|>" -> id, in tokenizer order


def read_vocabulary(ct2_dir: Path) -> list[str]:
    """The id -> token list of a CTranslate2 export (vocabulary.txt or vocabulary.json)."""
    txt, js = ct2_dir / "vocabulary.txt", ct2_dir / "vocabulary.json"
    if txt.is_file():
        lines = txt.read_text(encoding="utf-8").split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        return lines
    if js.is_file():
        tokens = json.loads(js.read_text(encoding="utf-8"))
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise ModelError(f"{js} is not a JSON list of tokens")
        return tokens
    raise ModelError(f"{ct2_dir} has no vocabulary.txt or vocabulary.json")


def complete_tokenizer_json(tokenizer_json: Path, vocabulary: list[str]) -> dict[str, Any]:
    """CTranslate2's tokenizer.json checked against the vocabulary, timestamps appended."""
    try:
        data = json.loads(tokenizer_json.read_text(encoding="utf-8"))
        base_vocab: dict[str, int] = data["model"]["vocab"]
        added: list[dict[str, Any]] = data["added_tokens"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"{tokenizer_json} is not a readable tokenizers JSON file: {exc}") from exc
    by_id = {i: t for t, i in base_vocab.items()} | {a["id"]: a["content"] for a in added}
    for token_id, token in by_id.items():
        if token_id >= len(vocabulary) or vocabulary[token_id] != token:
            found = vocabulary[token_id] if token_id < len(vocabulary) else "<missing>"
            raise ModelError(
                f"{tokenizer_json} maps id {token_id} to {token!r} but the vocabulary has "
                f"{found!r}: tokenizer and model come from different exports"
            )
    if len(by_id) != max(by_id) + 1:
        raise ModelError(f"{tokenizer_json} has gaps in its ids")
    extra = vocabulary[len(by_id) :]
    if extra and not all(_TIMESTAMP.match(t) for t in extra):
        raise ModelError(
            f"vocabulary has {len(extra)} tokens beyond {tokenizer_json} that are not timestamps"
        )
    for offset, token in enumerate(extra):
        added.append(
            {
                "id": len(by_id) + offset,
                "content": token,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": False,
            }
        )
    return data


def special_ids(vocabulary: list[str]) -> SpecialIds:
    index = {token: i for i, token in enumerate(vocabulary)}

    def need(token: str) -> int:
        if token not in index:
            raise ModelError(f"the vocabulary has no {token} token; not a Whisper tokenizer")
        return index[token]

    sot, translate = need(SOT), need("<|translate|>")
    languages = {t: i for t, i in index.items() if sot < i < translate and _LANGUAGE.match(t)}
    if len(languages) != translate - sot - 1:
        raise ModelError(
            "the vocabulary's language tokens between <|startoftranscript|> and <|translate|> are not contiguous"
        )
    no_ts = need(NO_TIMESTAMPS)
    stamps = vocabulary[no_ts + 1 :]
    if len(stamps) != TIMESTAMP_COUNT or stamps[0] != "<|0.00|>" or stamps[-1] != "<|30.00|>":
        raise ModelError(
            f"expected {TIMESTAMP_COUNT} timestamp tokens <|0.00|>..<|30.00|> after {NO_TIMESTAMPS}, "
            f"found {len(stamps)}"
        )
    return SpecialIds(
        eot=need(EOT),
        sot=sot,
        translate=translate,
        transcribe=need("<|transcribe|>"),
        sot_prev=need("<|startofprev|>"),
        no_timestamps=no_ts,
        timestamp_begin=no_ts + 1,
        languages=languages,
    )


def build_tokenizer(
    tokenizer_json: Path, vocabulary: list[str], ids: SpecialIds
) -> WhisperTokenizer:
    """A WhisperTokenizer equal, id for id, to the CTranslate2 vocabulary."""
    from transformers import WhisperTokenizer

    data = complete_tokenizer_json(tokenizer_json, vocabulary)
    specials = [a["content"] for a in data["added_tokens"] if a.get("special")]
    if not specials or specials[-1] != NO_TIMESTAMPS:
        raise ModelError(f"{tokenizer_json}: the last special token should be {NO_TIMESTAMPS}")
    config = {
        "tokenizer_class": "WhisperTokenizer",
        "bos_token": EOT,
        "eos_token": EOT,
        "unk_token": EOT,
        "pad_token": EOT,
        "extra_special_tokens": specials,
        "model_max_length": 1024,
        "add_prefix_space": False,
        "errors": "replace",
    }
    with tempfile.TemporaryDirectory(prefix="whisperft-tok-") as tmp:
        Path(tmp, "tokenizer.json").write_text(
            json.dumps(data, ensure_ascii=False), encoding="utf-8"
        )
        Path(tmp, "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
        tokenizer = WhisperTokenizer.from_pretrained(tmp)
    check_tokenizer(tokenizer, vocabulary, ids)
    return tokenizer


def check_tokenizer(tokenizer: WhisperTokenizer, vocabulary: list[str], ids: SpecialIds) -> None:
    """Fail loudly if the HF tokenizer disagrees with the model's vocabulary anywhere."""
    if len(tokenizer) != len(vocabulary):
        raise ModelError(
            f"tokenizer has {len(tokenizer)} tokens, model vocabulary {len(vocabulary)}"
        )
    tokens = tokenizer.convert_ids_to_tokens(list(range(len(vocabulary))))
    wrong = [i for i, (a, b) in enumerate(zip(tokens, vocabulary, strict=True)) if a != b]
    if wrong:
        raise ModelError(
            f"tokenizer disagrees with the vocabulary at {len(wrong)} ids, first {wrong[:5]}"
        )
    if tokenizer.all_special_ids[-1] + 1 != ids.timestamp_begin:
        raise ModelError(
            "tokenizer special tokens do not end at <|notimestamps|>; timestamps would decode shifted"
        )
    if tokenizer.convert_tokens_to_ids(SOT) != ids.sot or tokenizer.eos_token_id != ids.eot:
        raise ModelError(
            "tokenizer <|startoftranscript|>/<|endoftext|> ids disagree with the vocabulary"
        )


def build_generation_config(
    ids: SpecialIds,
    dims: WhisperDims,
    ct2_config: dict[str, Any],
    *,
    multilingual: bool,
) -> GenerationConfig:
    from transformers import GenerationConfig

    heads = [[int(layer), int(head)] for layer, head in ct2_config.get("alignment_heads") or []]
    for layer, head in heads:
        if not (0 <= layer < dims.decoder_layers and 0 <= head < dims.decoder_attention_heads):
            raise ModelError(
                f"alignment head {(layer, head)} is outside the decoder's layers/heads"
            )
    fields: dict[str, Any] = {
        "bos_token_id": ids.eot,
        "eos_token_id": ids.eot,
        "pad_token_id": ids.eot,
        "decoder_start_token_id": ids.sot,
        "no_timestamps_token_id": ids.no_timestamps,
        "prev_sot_token_id": ids.sot_prev,
        "suppress_tokens": [int(t) for t in ct2_config.get("suppress_ids") or []],
        "begin_suppress_tokens": [
            int(t) for t in ct2_config.get("suppress_ids_begin") or [220, ids.eot]
        ],
        "max_length": dims.max_target_positions,
        "max_initial_timestamp_index": 50,
        "return_timestamps": False,
        "is_multilingual": multilingual,
        "alignment_heads": heads,
    }
    if multilingual:
        fields["lang_to_id"] = dict(ids.languages)
        fields["task_to_id"] = {"transcribe": ids.transcribe, "translate": ids.translate}
        ct2_langs = [int(i) for i in ct2_config.get("lang_ids") or []]
        if ct2_langs and ct2_langs != sorted(ids.languages.values()):
            raise ModelError("config.json lang_ids disagree with the tokenizer's language tokens")
    return GenerationConfig(**fields)
