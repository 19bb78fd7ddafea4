"""Whisper's languages, for checking a WhisperFineTune's language fields at admission.

Standard library only: the operator image has no torch or transformers. The
table is a literal copy of ``transformers.models.whisper.tokenization_whisper``
(``tests/unit/test_languages.py`` fails when it drifts).

Two fields are involved:

- ``spec.model.language``: the language of the speech, a BCP-47-ish code that
  Whisper may never have seen (e.g. ``lg`` for Luganda);
- ``spec.model.trainAsLanguage``: an existing language token of the model to
  train and decode under (the usual practice for an unseen language, e.g.
  Luganda trained under ``sw``).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Final

# Code -> English name, in the order of transformers' LANGUAGES (which is the
# order of the language tokens in Whisper's vocabulary).
WHISPER_LANGUAGES: Final[dict[str, str]] = {
    "en": "english",
    "zh": "chinese",
    "de": "german",
    "es": "spanish",
    "ru": "russian",
    "ko": "korean",
    "fr": "french",
    "ja": "japanese",
    "pt": "portuguese",
    "tr": "turkish",
    "pl": "polish",
    "ca": "catalan",
    "nl": "dutch",
    "ar": "arabic",
    "sv": "swedish",
    "it": "italian",
    "id": "indonesian",
    "hi": "hindi",
    "fi": "finnish",
    "vi": "vietnamese",
    "he": "hebrew",
    "uk": "ukrainian",
    "el": "greek",
    "ms": "malay",
    "cs": "czech",
    "ro": "romanian",
    "da": "danish",
    "hu": "hungarian",
    "ta": "tamil",
    "no": "norwegian",
    "th": "thai",
    "ur": "urdu",
    "hr": "croatian",
    "bg": "bulgarian",
    "lt": "lithuanian",
    "la": "latin",
    "mi": "maori",
    "ml": "malayalam",
    "cy": "welsh",
    "sk": "slovak",
    "te": "telugu",
    "fa": "persian",
    "lv": "latvian",
    "bn": "bengali",
    "sr": "serbian",
    "az": "azerbaijani",
    "sl": "slovenian",
    "kn": "kannada",
    "et": "estonian",
    "mk": "macedonian",
    "br": "breton",
    "eu": "basque",
    "is": "icelandic",
    "hy": "armenian",
    "ne": "nepali",
    "mn": "mongolian",
    "bs": "bosnian",
    "kk": "kazakh",
    "sq": "albanian",
    "sw": "swahili",
    "gl": "galician",
    "mr": "marathi",
    "pa": "punjabi",
    "si": "sinhala",
    "km": "khmer",
    "sn": "shona",
    "yo": "yoruba",
    "so": "somali",
    "af": "afrikaans",
    "oc": "occitan",
    "ka": "georgian",
    "be": "belarusian",
    "tg": "tajik",
    "sd": "sindhi",
    "gu": "gujarati",
    "am": "amharic",
    "yi": "yiddish",
    "lo": "lao",
    "uz": "uzbek",
    "fo": "faroese",
    "ht": "haitian creole",
    "ps": "pashto",
    "tk": "turkmen",
    "nn": "nynorsk",
    "mt": "maltese",
    "sa": "sanskrit",
    "lb": "luxembourgish",
    "my": "myanmar",
    "bo": "tibetan",
    "tl": "tagalog",
    "mg": "malagasy",
    "as": "assamese",
    "tt": "tatar",
    "haw": "hawaiian",
    "ln": "lingala",
    "ha": "hausa",
    "ba": "bashkir",
    "jw": "javanese",
    "su": "sundanese",
    "yue": "cantonese",
}

# Name or alias -> code, as transformers' TO_LANGUAGE_CODE: every name of the
# table plus these extra aliases.
_EXTRA_ALIASES: Final[dict[str, str]] = {
    "burmese": "my",
    "valencian": "ca",
    "flemish": "nl",
    "haitian": "ht",
    "letzeburgesch": "lb",
    "pushto": "ps",
    "panjabi": "pa",
    "moldavian": "ro",
    "moldovan": "ro",
    "sinhalese": "si",
    "castilian": "es",
    "mandarin": "zh",
}
LANGUAGE_ALIASES: Final[dict[str, str]] = {
    **{name: code for code, name in WHISPER_LANGUAGES.items()},
    **_EXTRA_ALIASES,
}

# large-v3 added one language token (Cantonese) after the 99 of v1/v2.
V3_ADDED: Final[frozenset[str]] = frozenset({"yue"})
LANGUAGES_V3: Final[frozenset[str]] = frozenset(WHISPER_LANGUAGES)
LANGUAGES_V2: Final[frozenset[str]] = LANGUAGES_V3 - V3_ADDED
ENGLISH_ONLY: Final[frozenset[str]] = frozenset({"en"})

# Models whose tokenizer is known from the name alone. Hub ids are matched
# exactly (the hub is case-sensitive); anything else is unknown.
_KNOWN_MODELS: Final[dict[str, frozenset[str]]] = {
    "bundled:tiny.en": ENGLISH_ONLY,
    "bundled:base": LANGUAGES_V2,
    **{f"openai/whisper-{size}.en": ENGLISH_ONLY for size in ("tiny", "base", "small", "medium")},
    **{
        f"openai/whisper-{size}": LANGUAGES_V2
        for size in ("tiny", "base", "small", "medium", "large", "large-v1", "large-v2")
    },
    "openai/whisper-large-v3": LANGUAGES_V3,
    "openai/whisper-large-v3-turbo": LANGUAGES_V3,
    "distil-whisper/distil-large-v2": LANGUAGES_V2,
    "distil-whisper/distil-large-v3": LANGUAGES_V3,
    "distil-whisper/distil-large-v3.5": LANGUAGES_V3,
    "distil-whisper/distil-small.en": ENGLISH_ONLY,
    "distil-whisper/distil-medium.en": ENGLISH_ONLY,
}

# Scripts written without spaces between words: WER is meaningless there, so
# the character error rate is reported as well.
NO_SPACE_LANGUAGES: Final[frozenset[str]] = frozenset({"zh", "ja", "th", "lo", "km", "my", "yue"})

MULTILINGUAL_EXAMPLE: Final = "openai/whisper-small"


class LanguageError(ValueError):
    """A language field that the model cannot train; ``field`` is its dotted spec path."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def model_languages(model_name: str) -> frozenset[str] | None:
    """Language codes of the model's tokenizer when known from its name alone, else None.

    None means unknown (a path on the claim, ``ct2:DIR``, an arbitrary hub id, or
    a local directory that merely ends in ``.en``): the trainer checks the real
    tokenizer later.
    """
    return _KNOWN_MODELS.get(model_name)


def english_only(model_name: str) -> bool:
    """True when the model is known to be English-only (see ``model_languages``)."""
    return model_languages(model_name) == ENGLISH_ONLY


def base_code(language: str) -> str:
    """Lowercased primary subtag ("sv-SE" -> "sv"); a Whisper name or alias maps to its code."""
    value = language.strip().lower()
    if value in LANGUAGE_ALIASES:
        return LANGUAGE_ALIASES[value]
    return value.replace("_", "-").split("-", 1)[0]


def suggest_languages(value: str, allowed: Iterable[str], n: int = 3) -> list[str]:
    """Up to ``n`` valid codes nearest to a bad ``value``, best first.

    In order: the base of a locale ("sv-SE" -> "sv"); the code of a language
    name or alias ("Swahili", "mandarin"); close matches over the codes; close
    matches over the names and aliases (mapped back to codes).
    """
    codes = sorted(set(allowed))
    if n <= 0 or not codes:
        return []
    valid = set(codes)
    lowered = value.strip().lower()
    base = lowered.replace("_", "-").split("-", 1)[0]
    names = {name: code for name, code in LANGUAGE_ALIASES.items() if code in valid}

    found: list[str] = []
    for candidate in (base, lowered, names.get(lowered), names.get(base)):
        if candidate is not None and candidate in valid:
            found.append(candidate)
    for probe in dict.fromkeys((lowered, base)):
        if probe:
            found.extend(difflib.get_close_matches(probe, codes, n=n))
    for probe in dict.fromkeys((lowered, base)):
        if probe:
            found.extend(names[m] for m in difflib.get_close_matches(probe, list(names), n=n))
    return list(dict.fromkeys(found))[:n]


def _did_you_mean(value: str, allowed: Iterable[str], *, list_all: bool = True) -> str:
    """ " Did you mean: a, b?", or with nothing close (and ``list_all``) every valid code."""
    codes = sorted(set(allowed))
    suggestions = suggest_languages(value, codes)
    if suggestions:
        return f" Did you mean: {', '.join(suggestions)}?"
    return f" Valid codes: {', '.join(codes)}." if list_all else ""


def check_language(
    model_name: str,
    language: str | None,
    *,
    train_as: str | None = None,
    field: str = "spec.model.language",
    train_as_field: str = "spec.model.trainAsLanguage",
) -> None:
    """Refuse language settings the model cannot train, raising ``LanguageError``.

    - English-only model: ``language`` and ``train_as`` must each be None or "en".
    - Known multilingual model: ``language`` is required. With ``train_as``, that
      must be one of the model's tokens and ``language`` may be any code;
      without it, ``language`` must be one of the model's tokens.
    - Unknown model: only ``train_as`` is checked, against all Whisper codes.
    """
    known = model_languages(model_name)
    if known is None:
        if train_as is not None and train_as not in WHISPER_LANGUAGES:
            raise LanguageError(
                train_as_field,
                f"{train_as_field}: {train_as!r} is not a Whisper language token."
                + _did_you_mean(train_as, WHISPER_LANGUAGES),
            )
        return

    if known == ENGLISH_ONLY:
        for value, where in ((language, field), (train_as, train_as_field)):
            if value is not None and value != "en":
                raise LanguageError(
                    where,
                    f"{where}: model {model_name} is English-only, so {value!r} cannot be "
                    f"trained on it; set {where} to en or use a multilingual model such as "
                    f"{MULTILINGUAL_EXAMPLE}." + _did_you_mean(value, known, list_all=False),
                )
        return

    if language is None:
        raise LanguageError(
            field,
            f"{field}: a multilingual model needs {field} (model {model_name}); set it to the "
            "language of the speech, e.g. en or sw.",
        )
    if train_as is not None:
        if train_as not in known:
            raise LanguageError(
                train_as_field,
                f"{train_as_field}: model {model_name} has no language token {train_as!r}."
                + _did_you_mean(train_as, known),
            )
        return
    if language not in known:
        raise LanguageError(
            field,
            f"{field}: model {model_name} has no language token {language!r}."
            + _did_you_mean(language, known)
            + f" To train a language Whisper does not have, keep {field} as the speech's "
            f"language and set {train_as_field} to the token of a related language the model "
            f"has (e.g. {field}: lg for Luganda with {train_as_field}: sw).",
        )


def uses_cer(language: str | None) -> bool:
    """True for scripts written without spaces (compares the base code: "zh-CN" -> True)."""
    return language is not None and base_code(language) in NO_SPACE_LANGUAGES


def token_language(language: str | None, train_as: str | None) -> str | None:
    """The language whose token the decoder prefix uses: ``train_as`` if set, else ``language``."""
    return train_as if train_as is not None else language
