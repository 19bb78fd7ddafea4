"""WER after Whisper normalisation."""

from __future__ import annotations

import pytest

from whisperft.trainer.metrics import normalizer_for, wer

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
