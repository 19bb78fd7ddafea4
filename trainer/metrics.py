"""Word error rate after Whisper-style text normalisation (the same for training and ``evaluate``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

ENGLISH = frozenset({"en", "english"})


def normalizer_for(language: str | None) -> Callable[[str], str]:
    """Whisper's English normaliser for English, its basic multilingual one otherwise.

    The English one runs without OpenAI's British->American spelling table
    (``normalizer.json`` is not part of CTranslate2 exports), so "colour" and
    "color" still count as different words.
    """
    from transformers.models.whisper.english_normalizer import (
        BasicTextNormalizer,
        EnglishTextNormalizer,
    )

    if language is not None and language.strip().lower() in ENGLISH:
        return EnglishTextNormalizer({})
    return BasicTextNormalizer()


def wer(references: Sequence[str], hypotheses: Sequence[str], language: str | None) -> float:
    """Corpus WER: total word edits over total reference words, after normalisation.

    A reference that normalises to nothing (e.g. only punctuation) has no words
    to get wrong: each hypothesis word there counts as one insertion. A corpus
    with no reference words at all has no defined WER and raises ``ValueError``.
    """
    import jiwer

    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
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
