"""Torch files from the checkpoint claim, read without running code found there.

``torch.load(weights_only=False)`` is ``pickle.load``: a file on a claim that
someone else can write would run their code in every worker. The manifests'
digests cannot stop that (whoever can write a file can rewrite its manifest),
so every torch file of a checkpoint is read with ``weights_only=True``,
DeepSpeed's own included: its checkpoint engine (and ZeRO's loaders) call
``torch.load(..., weights_only=False)`` themselves, so ``weights_only_loads``
forces it for the duration of ``engine.load_checkpoint``.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

# Makes torch.load weights-only even where a caller passes weights_only=False
# (read on every call): covers loads that do not go through the torch.load name.
_FORCE_ENV = "TORCH_FORCE_WEIGHTS_ONLY_LOAD"


class UnsafeCheckpointError(RuntimeError):
    """A checkpoint file that needs more than tensors and plain data to load."""


def deepspeed_globals() -> list[Any]:
    """The non-tensor types DeepSpeed's own checkpoint files hold, and nothing else.

    Found by saving ZeRO 0-3 checkpoints (fp32, bf16, fp16) and listing what a
    weights-only load refuses: ZeRO 1-3 optimizer shards pickle their loss
    scaler (plain numbers), the ZeRO stage (an IntEnum) and ``fragment_address``
    (a two-int dataclass); model-state files need nothing. Each is a plain
    value class whose construction runs no code of the file's choosing; a
    DeepSpeed that pickles anything else fails to resume, naming the type.
    """
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    return [LossScaler, DynamicLossScaler, ZeroStageEnum, fragment_address]


@contextmanager
def weights_only_loads(allowed: Sequence[Any] = ()) -> Iterator[None]:
    """Every ``torch.load`` inside is ``weights_only=True`` (``allowed``: extra plain types).

    A file that needs anything else raises UnsafeCheckpointError naming it;
    nothing outside the allowlist is ever imported or called.
    """
    import torch

    original = torch.load

    def load(f: Any, *args: Any, **kwargs: Any) -> Any:
        kwargs["weights_only"] = True
        try:
            return original(f, *args, **kwargs)
        except pickle.UnpicklingError as exc:
            raise UnsafeCheckpointError(
                f"refusing to load {_name(f)}: it is not plain tensors and data "
                f"({_reason(exc)}); the checkpoint storage may have been written by someone else"
            ) from None

    previous = os.environ.get(_FORCE_ENV)
    setattr(torch, "load", load)  # noqa: B010 (mypy: torch.load is a function, not a variable)
    os.environ[_FORCE_ENV] = "1"
    try:
        with torch.serialization.safe_globals(list(allowed)):
            yield
    finally:
        setattr(torch, "load", original)  # noqa: B010
        if previous is None:
            os.environ.pop(_FORCE_ENV, None)
        else:
            os.environ[_FORCE_ENV] = previous


def _name(f: Any) -> str:
    if isinstance(f, str | os.PathLike):
        return os.fspath(f)
    return str(getattr(f, "name", f))


def _reason(exc: BaseException) -> str:
    """torch's line on what it refused, without the boilerplate advising an unsafe load."""
    boilerplate = ("Weights only load failed", "(1)", "(2)", "Check the documentation")
    for line in str(exc).splitlines():
        line = line.strip()
        if "WeightsUnpickler error:" in line:
            line = line.split("WeightsUnpickler error:", 1)[1].strip()
        if line and not line.startswith(boilerplate):
            return line.split(" was not an allowed global")[0]
    return type(exc).__name__
