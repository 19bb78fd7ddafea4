"""Word and character error rates after Whisper-style text normalisation.

The same normalisation is used for training and ``evaluate``. CER is reported
as well for scripts written without spaces between words (see
``whisperft.languages.uses_cer``), where WER counts whole sentences.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from whisperft.languages import base_code, uses_cer

# Spellings of English that ``normalizer_for`` accepts as-is; it also accepts
# any locale of them ("en-US", "en_GB") through ``base_code``.
ENGLISH = frozenset({"en", "english"})


def _is_english(language: str | None) -> bool:
    return language is not None and base_code(language) == "en"


def normalizer_for(language: str | None) -> Callable[[str], str]:
    """Whisper's English normaliser for English ("en", "en-US", "english"), its basic one otherwise.

    The English one runs without OpenAI's British->American spelling table
    (``normalizer.json`` is not part of CTranslate2 exports), so "colour" and
    "color" still count as different words.
    """
    from transformers.models.whisper.english_normalizer import (
        BasicTextNormalizer,
        EnglishTextNormalizer,
    )

    if _is_english(language):
        return EnglishTextNormalizer({})
    return BasicTextNormalizer()


def _check_lengths(references: Sequence[str], hypotheses: Sequence[str]) -> None:
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")


def wer(references: Sequence[str], hypotheses: Sequence[str], language: str | None) -> float:
    """Corpus WER: total word edits over total reference words, after normalisation.

    A reference that normalises to nothing (e.g. only punctuation) has no words
    to get wrong: each hypothesis word there counts as one insertion. A corpus
    with no reference words at all has no defined WER and raises ``ValueError``.
    """
    import jiwer

    _check_lengths(references, hypotheses)
    normalise = normalizer_for(language)
    refs = [" ".join(normalise(r).split()) for r in references]
    hyps = [" ".join(normalise(h).split()) for h in hypotheses]
    scored = [(r, h) for r, h in zip(refs, hyps, strict=True) if r]
    insertions_only = sum(len(h.split()) for r, h in zip(refs, hyps, strict=True) if not r)
    if not scored:
        raise ValueError("no reference words after normalisation: WER is undefined")
    out = jiwer.process_words([r for r, _ in scored], [h for _, h in scored])
    edits = out.substitutions + out.deletions + out.insertions + insertions_only
    total = sum(len(r.split()) for r, _ in scored)
    return edits / total


def cer(references: Sequence[str], hypotheses: Sequence[str], language: str | None) -> float:
    """Corpus CER: total character edits over total reference characters.

    Texts go through the same normaliser as ``wer``, then all whitespace is
    removed (spaces are not characters of scripts written without them, and
    the normaliser inserts some). The empty-reference policy is that of
    ``wer``: a reference that normalises to nothing counts each hypothesis
    character as an insertion; no reference characters at all raises
    ``ValueError``.
    """
    import jiwer

    _check_lengths(references, hypotheses)
    normalise = normalizer_for(language)
    refs = ["".join(normalise(r).split()) for r in references]
    hyps = ["".join(normalise(h).split()) for h in hypotheses]
    scored = [(r, h) for r, h in zip(refs, hyps, strict=True) if r]
    insertions_only = sum(len(h) for r, h in zip(refs, hyps, strict=True) if not r)
    if not scored:
        raise ValueError("no reference characters after normalisation: CER is undefined")
    out = jiwer.process_characters([r for r, _ in scored], [h for _, h in scored])
    edits = out.substitutions + out.deletions + out.insertions + insertions_only
    total = sum(len(r) for r, _ in scored)
    return edits / total


@dataclass(frozen=True)
class Scores:
    """WER always; CER only for languages written without spaces (else None)."""

    wer: float
    cer: float | None


def score_texts(
    references: Sequence[str], hypotheses: Sequence[str], language: str | None
) -> Scores:
    """WER, plus CER when ``whisperft.languages.uses_cer(language)``."""
    return Scores(
        wer=wer(references, hypotheses, language),
        cer=cer(references, hypotheses, language) if uses_cer(language) else None,
    )
