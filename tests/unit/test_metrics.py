"""WER after Whisper normalisation."""

from __future__ import annotations

import pytest

from whisperft.trainer.metrics import Scores, cer, normalizer_for, score_texts, wer

pytestmark = pytest.mark.unit


def test_english_normalisation_ignores_case_punctuation_and_contractions() -> None:
    assert wer(["Mr. Smith won't go, OK?"], ["mister smith will not go ok"], "en") == 0.0
    assert normalizer_for("English")("Two  Apples!") == normalizer_for("en")("two apples")


def test_basic_normaliser_for_other_languages_keeps_letters() -> None:
    normalise = normalizer_for("sw")
    assert normalise("Habari, za Asubuhi!").split() == ["habari", "za", "asubuhi"]
    assert normalizer_for(None)("Ça VA?").split() == ["ça", "va"]
    assert wer(["Habari za asubuhi"], ["habari ya asubuhi"], "sw") == pytest.approx(1 / 3)


def test_corpus_wer_weights_by_reference_words() -> None:
    refs = ["the cat sat", "a b c d e f g"]
    hyps = ["the cat", "a b c d e f g h"]  # one deletion, one insertion over 10 words
    assert wer(refs, hyps, "en") == pytest.approx(2 / 10)


def test_empty_hypothesis_is_all_deletions_and_empty_reference_counts_insertions() -> None:
    assert wer(["one two three"], [""], "en") == 1.0
    # "?!" normalises to nothing: its 2 hypothesis words are insertions against 3 reference words
    assert wer(["one two three", "?!"], ["one two three", "uh huh yes no"], "sw") == pytest.approx(
        4 / 3
    )


def test_undefined_and_mismatched_inputs_raise() -> None:
    with pytest.raises(ValueError, match="no reference words"):
        wer(["?!", ""], ["a", "b"], "en")
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        wer(["a", "b"], ["a"], "en")


def test_english_normaliser_is_used_for_every_spelling_of_english() -> None:
    # The English normaliser spells numbers and currency as digits and expands
    # contractions/titles; the basic one only lowercases and drops punctuation.
    assert wer(["twenty five dollars"], ["$25"], "en") == 0.0
    # basic: ["twenty", "five", "dollars"] vs ["25"]: 1 substitution + 2 deletions over 3 words
    assert wer(["twenty five dollars"], ["$25"], "sw") == 1.0
    refs, hyps = ["Mr. Smith won't go"], ["mister smith will not go"]
    for english in ("en", "en-US", "en_GB", "EN", "english", "English"):
        assert wer(refs, hyps, english) == 0.0, english
    # basic: "mr smith won t go" vs "mister smith will not go": 3 substitutions over 5 words
    assert wer(refs, hyps, "de") == pytest.approx(3 / 5)
    assert wer(refs, hyps, None) == pytest.approx(3 / 5)


def test_basic_normaliser_for_a_non_english_language_splits_on_punctuation() -> None:
    # "Mr. Smith's" -> "mr smith s" under the basic normaliser, "mister smith is" under English's
    assert normalizer_for("sv").__class__.__name__ == "BasicTextNormalizer"
    assert normalizer_for("en-US").__class__.__name__ == "EnglishTextNormalizer"
    assert normalizer_for("sv")("Mr. Smith's  colour!").split() == ["mr", "smith", "s", "colour"]
    assert normalizer_for("en")("Mr. Smith's  colour!").split() == [
        "mister",
        "smith",
        "is",
        "colour",
    ]
    # "enx" is not English (base code "enx"): the basic normaliser keeps "won t"
    assert wer(["won't"], ["will not"], "enx") == 1.0


def test_cer_counts_characters_without_whitespace() -> None:
    # 我爱北京天安门 (7 characters, "。" normalises away) vs 我爱北京天安門: 门->門, 1 substitution / 7
    assert cer(["我爱北京天安门。"], ["我爱北京天安門"], "zh") == pytest.approx(1 / 7)
    # WER sees one "word" per sentence, so the same pair is a total miss
    assert wer(["我爱北京天安门。"], ["我爱北京天安門"], "zh") == 1.0
    # こんにちは世界 vs こんばんは世界 (punctuation and the space the normaliser leaves are dropped):
    # に->ば and ち->ん, 2 substitutions over 7 characters
    assert cer(["こんにちは、世界！"], ["こんばんは 世界"], "ja") == pytest.approx(2 / 7)


def test_corpus_cer_weights_by_reference_characters() -> None:
    # 我爱你 vs 我爱: 1 deletion; 北京 vs 北京市: 1 insertion; over 3 + 2 reference characters
    assert cer(["我爱你", "北京"], ["我爱", "北京市"], "zh") == pytest.approx(2 / 5)


def test_cer_empty_reference_policy() -> None:
    # "。" normalises to nothing: its 2 hypothesis characters are insertions against 2 reference chars
    assert cer(["我爱", "。"], ["我爱", "嗯 嗯"], "zh") == pytest.approx(2 / 2)
    assert cer(["我爱"], [""], "zh") == 1.0
    with pytest.raises(ValueError, match="no reference characters"):
        cer(["。", " "], ["嗯", "好"], "zh")
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        cer(["a", "b"], ["a"], "zh")


def test_score_texts_adds_cer_only_for_languages_without_spaces() -> None:
    refs, hyps = ["我爱北京天安门"], ["我爱北京"]
    # 3 deletions over 7 characters; as words, 1 substitution over 1
    assert score_texts(refs, hyps, "zh") == Scores(wer=1.0, cer=pytest.approx(3 / 7))
    assert score_texts(refs, hyps, "zh-CN").cer == pytest.approx(3 / 7)
    for language in ("en", "sw", None):
        scores = score_texts(["the cat sat"], ["the cat"], language)
        assert scores == Scores(wer=pytest.approx(1 / 3), cer=None), language
    with pytest.raises(AttributeError):
        scores.wer = 0.0  # type: ignore[misc]
