"""Checks a valid spec must still pass before the operator plans it: what the
CRD schema cannot know (the model's languages, what a cluster can write to).

A refusal here is a `Planned=False` condition naming the field, before any GPU
is asked for; `whisperft render` and `whisperft train --dry-run` show the same.
"""

from __future__ import annotations

from whisperft.languages import LanguageError, check_language
from whisperft.operator.api.spec import WhisperFineTuneSpec


def language_problem(spec: WhisperFineTuneSpec) -> str | None:
    """Why the spec's language cannot train on its model, when the model is known by name."""
    m = spec.model
    try:
        check_language(m.name, m.language, train_as=m.train_as_language)
    except LanguageError as exc:
        return str(exc)
    return None


def cluster_problem(spec: WhisperFineTuneSpec) -> str | None:
    """What only a local run can do."""
    if spec.output.location is not None:
        return (
            f"spec.output.location: {spec.output.location!r} is a local directory, which only "
            "`whisperft train` can write; on a cluster leave it unset (the model stays on the "
            "checkpoint claim)"
        )
    return None
