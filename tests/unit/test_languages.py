"""Whisper's language table and the admission checks on spec.model.language / trainAsLanguage."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import whisperft.languages as languages_module
from whisperft.languages import (
    LANGUAGE_ALIASES,
    NO_SPACE_LANGUAGES,
    WHISPER_LANGUAGES,
    LanguageError,
    check_language,
    english_only,
    model_languages,
    suggest_languages,
    token_language,
    uses_cer,
)

pytestmark = pytest.mark.unit

SMALL = "openai/whisper-small"


def _raises(model: str, language: str | None, train_as: str | None = None) -> LanguageError:
    with pytest.raises(LanguageError) as info:
        check_language(model, language, train_as=train_as)
    return info.value


# --- the table ---------------------------------------------------------------------------------


def test_table_is_transformers_languages_in_the_same_order() -> None:
    from transformers.models.whisper import tokenization_whisper as tw

    assert list(WHISPER_LANGUAGES.items()) == list(tw.LANGUAGES.items())
    assert list(LANGUAGE_ALIASES.items()) == list(tw.TO_LANGUAGE_CODE.items())


def test_module_imports_only_the_standard_library() -> None:
    import sys

    tree = ast.parse(Path(languages_module.__file__).read_text())
    imported = {
        (alias.name if isinstance(node, ast.Import) else node.module or "").split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert imported, "no imports found: the walk is broken"
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported


def test_v1_v2_have_99_languages_and_v3_adds_only_cantonese() -> None:
    v2 = model_languages(SMALL)
    v3 = model_languages("openai/whisper-large-v3")
    assert v2 is not None and v3 is not None
    assert len(v2) == 99 and len(v3) == 100
    assert v3 - v2 == {"yue"}
    assert v3 == set(WHISPER_LANGUAGES)
    assert list(WHISPER_LANGUAGES)[-1] == "yue"
    assert WHISPER_LANGUAGES["yue"] == "cantonese"


def test_aliases_map_names_and_extra_spellings_to_codes() -> None:
    assert LANGUAGE_ALIASES["swahili"] == "sw"
    assert LANGUAGE_ALIASES["burmese"] == "my"
    assert LANGUAGE_ALIASES["valencian"] == "ca"
    assert LANGUAGE_ALIASES["mandarin"] == "zh"
    assert LANGUAGE_ALIASES["myanmar"] == "my"
    assert set(LANGUAGE_ALIASES.values()) == set(WHISPER_LANGUAGES)


# --- models ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "bundled:tiny.en",
        "openai/whisper-tiny.en",
        "openai/whisper-base.en",
        "openai/whisper-small.en",
        "openai/whisper-medium.en",
        "distil-whisper/distil-small.en",
        "distil-whisper/distil-medium.en",
    ],
)
def test_english_only_models(name: str) -> None:
    assert model_languages(name) == {"en"}
    assert english_only(name)


@pytest.mark.parametrize(
    ("name", "count"),
    [
        ("bundled:base", 99),
        ("openai/whisper-tiny", 99),
        ("openai/whisper-base", 99),
        ("openai/whisper-small", 99),
        ("openai/whisper-medium", 99),
        ("openai/whisper-large", 99),
        ("openai/whisper-large-v1", 99),
        ("openai/whisper-large-v2", 99),
        ("distil-whisper/distil-large-v2", 99),
        ("openai/whisper-large-v3", 100),
        ("openai/whisper-large-v3-turbo", 100),
        ("distil-whisper/distil-large-v3", 100),
        ("distil-whisper/distil-large-v3.5", 100),
    ],
)
def test_multilingual_models(name: str, count: int) -> None:
    langs = model_languages(name)
    assert langs is not None and len(langs) == count
    assert {"en", "sw", "zh"} <= langs
    assert ("yue" in langs) == (count == 100)
    assert not english_only(name)


@pytest.mark.parametrize(
    "name",
    [
        "models/whisper-small.en",  # a directory on the claim: not guessed from its name
        "/data/whisper-small",
        "ct2:/models/tiny.en",
        "someone/whisper-swahili",
        "OpenAI/Whisper-Small",  # the hub is case-sensitive
        "openai/whisper-small ",
        "bundled:small",
        "",
    ],
)
def test_unknown_models(name: str) -> None:
    assert model_languages(name) is None
    assert not english_only(name)


# --- suggestions -------------------------------------------------------------------------------


def test_suggestions() -> None:
    v2 = model_languages(SMALL)
    assert v2 is not None
    assert suggest_languages("sv-SE", v2)[0] == "sv"
    assert suggest_languages("zh-CN", v2)[0] == "zh"
    assert suggest_languages("pt_BR", v2)[0] == "pt"
    assert suggest_languages("Swahili", v2)[0] == "sw"
    assert suggest_languages("mandarin", v2)[0] == "zh"
    assert suggest_languages("sww", v2)[0] == "sw"
    assert suggest_languages("swahilli", v2)[0] == "sw"
    # a name's own code beats codes that merely look alike ("la" for "lao", "ta" for "thai")
    assert suggest_languages("lao", v2, n=1) == ["lo"]
    assert suggest_languages("Thai", v2, n=1) == ["th"]
    assert len(suggest_languages("swahili", v2, n=1)) == 1
    assert len(suggest_languages("s", v2, n=10)) <= 10
    got = suggest_languages("es-ES", v2, n=5)
    assert got[0] == "es" and len(got) == len(set(got))
    # only allowed codes come back
    assert suggest_languages("yue", {"en"}) == []
    assert suggest_languages("cantonese", WHISPER_LANGUAGES)[0] == "yue"
    assert "yue" not in suggest_languages("cantonese", v2)


# --- check_language ----------------------------------------------------------------------------


def test_english_only_model_refuses_another_language() -> None:
    err = _raises("bundled:tiny.en", "sw")
    assert err.field == "spec.model.language"
    assert str(err) == err.message
    assert err.message.startswith("spec.model.language: ")
    assert "bundled:tiny.en" in err.message
    assert "English-only" in err.message
    assert "'sw'" in err.message
    assert "openai/whisper-small" in err.message
    assert isinstance(err, ValueError)


def test_english_only_model_refuses_train_as_other_than_en() -> None:
    err = _raises("openai/whisper-base.en", "en", train_as="sw")
    assert err.field == "spec.model.trainAsLanguage"
    assert err.message.startswith("spec.model.trainAsLanguage: ")
    assert "English-only" in err.message and "openai/whisper-base.en" in err.message
    err = _raises("openai/whisper-base.en", "en-US")
    assert err.field == "spec.model.language" and "did you mean: en?" in err.message.lower()


def test_english_only_model_accepts_en_or_nothing() -> None:
    check_language("bundled:tiny.en", "en")
    check_language("bundled:tiny.en", None)
    check_language("distil-whisper/distil-small.en", "en", train_as="en")


def test_locale_suggests_its_base_code_first() -> None:
    err = _raises(SMALL, "sv-SE")
    assert err.field == "spec.model.language"
    assert SMALL in err.message and "'sv-SE'" in err.message
    assert "did you mean: sv" in err.message.lower()


def test_language_name_suggests_its_code() -> None:
    err = _raises(SMALL, "swahili")
    assert "did you mean: sw" in err.message.lower()
    err = _raises(SMALL, "mandarin")
    assert "did you mean: zh" in err.message.lower()


def test_typo_suggests_the_nearest_code() -> None:
    err = _raises(SMALL, "sww")
    assert err.field == "spec.model.language"
    assert "did you mean: sw?" in err.message.lower()


def test_multilingual_model_needs_a_language() -> None:
    err = _raises(SMALL, None)
    assert err.field == "spec.model.language"
    assert "a multilingual model needs spec.model.language" in err.message
    assert SMALL in err.message
    # also with train_as: the data's language is still required
    assert _raises(SMALL, None, train_as="sw").field == "spec.model.language"


def test_unseen_language_without_train_as_gets_the_train_as_hint() -> None:
    err = _raises(SMALL, "lg")
    assert err.field == "spec.model.language"
    assert "'lg'" in err.message and SMALL in err.message
    assert "spec.model.trainAsLanguage" in err.message
    # nothing is close to "lg": the valid codes are listed instead
    assert "valid codes: af, am, ar" in err.message.lower()
    # Cantonese is not a token of the v2 models: refused, and not among the listed codes
    err = _raises(SMALL, "yue")
    assert "spec.model.trainAsLanguage" in err.message
    listed = err.message.split("Valid codes: ")[1].split(".")[0].split(", ")
    assert len(listed) == 99 and "zh" in listed and "yue" not in listed


def test_unseen_language_trained_as_an_existing_token_is_accepted() -> None:
    check_language(SMALL, "lg", train_as="sw")
    check_language("openai/whisper-large-v3", "yue")
    check_language(SMALL, "sw")


def test_train_as_must_be_a_token_of_the_model() -> None:
    err = _raises(SMALL, "lg", train_as="xx")
    assert err.field == "spec.model.trainAsLanguage"
    assert err.message.startswith("spec.model.trainAsLanguage: ")
    assert "'xx'" in err.message and SMALL in err.message
    err = _raises(SMALL, "lg", train_as="swahili")
    assert "did you mean: sw" in err.message.lower()
    err = _raises(SMALL, "lg", train_as="yue")
    assert err.field == "spec.model.trainAsLanguage"


def test_custom_field_names_are_used() -> None:
    with pytest.raises(LanguageError) as info:
        check_language(SMALL, "lg", train_as="xx", field="lang", train_as_field="as")
    assert info.value.field == "as" and info.value.message.startswith("as: ")


def test_unknown_model_only_checks_train_as() -> None:
    check_language("models/whisper-small.en", "lg")
    check_language("/data/my-whisper", None)
    check_language("ct2:/models/x", "lg", train_as="sw")
    check_language("someone/whisper-yue", "yue-HK", train_as="yue")
    err = _raises("/data/my-whisper", "lg", train_as="xx")
    assert err.field == "spec.model.trainAsLanguage"
    assert "'xx'" in err.message and "Whisper" in err.message


# --- CER and the decoder token ----------------------------------------------------------------


@pytest.mark.parametrize(
    "language", ["zh", "ja", "th", "lo", "km", "my", "yue", "zh-CN", "ZH", "ja_JP"]
)
def test_uses_cer_for_scripts_without_spaces(language: str) -> None:
    assert uses_cer(language)


@pytest.mark.parametrize("language", ["en", "sw", None, "en-US", "sv-SE", "mya"])
def test_no_cer_for_spaced_scripts(language: str | None) -> None:
    assert not uses_cer(language)


def test_no_space_languages() -> None:
    assert {"zh", "ja", "th", "lo", "km", "my", "yue"} == NO_SPACE_LANGUAGES
    assert NO_SPACE_LANGUAGES.issubset(WHISPER_LANGUAGES)


def test_token_language() -> None:
    assert token_language("lg", "sw") == "sw"
    assert token_language("sw", None) == "sw"
    assert token_language(None, None) is None
    assert token_language(None, "en") == "en"
