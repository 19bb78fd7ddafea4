"""Each rank's RNG state as plain JSON (never a pickle: the checkpoint claim is shared storage).

``rng_rank{r}.json`` holds torch's CPU generator (and the current CUDA
device's) as base64 bytes, numpy's legacy global generator as its MT19937
components and Python's ``random.getstate()`` as lists. Reading validates the
shape of every part before any generator is touched, so a malformed file is
one error naming it.
"""

from __future__ import annotations

import base64
import json
import random
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = 1


class RngStateError(ValueError):
    """An RNG file that is not what this module writes."""


def file_name(rank: int) -> str:
    return f"rng_rank{rank}.json"


def capture(*, cuda: bool) -> dict[str, Any]:
    """This process's RNG state, JSON-ready."""
    import torch

    algorithm, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    version, internal, gauss_next = random.getstate()
    return {
        "format": FORMAT,
        "torch": _b64(torch.get_rng_state()),
        "cuda": _b64(torch.cuda.get_rng_state()) if cuda else None,
        "numpy": {
            "algorithm": algorithm,
            "keys": [int(k) for k in keys],
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
    }


def write(path: Path, *, cuda: bool) -> None:
    path.write_text(json.dumps(capture(cuda=cuda)))


def read(path: Path) -> dict[str, Any]:
    """The state in ``path``, validated; raises RngStateError naming the file."""
    try:
        doc = json.loads(path.read_text())
        _check(doc)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise RngStateError(f"{path}: not a valid RNG state file ({exc})") from None
    return doc


def load(path: Path, *, cuda: bool) -> None:
    """Read ``path`` and set every generator from it; errors name the file."""
    doc = read(path)
    try:
        restore(doc, cuda=cuda)
    except (RuntimeError, ValueError, TypeError) as exc:  # e.g. a state of the wrong size
        raise RngStateError(f"{path}: RNG state not accepted ({exc})") from None


def restore(doc: dict[str, Any], *, cuda: bool) -> None:
    """Set every generator from a state ``read`` returned."""
    import torch

    torch.set_rng_state(_tensor(doc["torch"]))
    n = doc["numpy"]
    np.random.set_state(
        (
            n["algorithm"],
            np.array(n["keys"], dtype=np.uint32),
            n["pos"],
            n["has_gauss"],
            n["cached_gaussian"],
        )
    )
    p = doc["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))
    if cuda and doc.get("cuda") is not None:
        torch.cuda.set_rng_state(_tensor(doc["cuda"]))


def _b64(t: Any) -> str:
    return base64.b64encode(t.numpy().tobytes()).decode("ascii")


def _tensor(text: str) -> Any:
    import torch

    data = bytearray(base64.b64decode(text, validate=True))
    return torch.frombuffer(data, dtype=torch.uint8).clone()


def _ints(xs: Any, lo: int, hi: int, what: str) -> None:
    if not isinstance(xs, list) or not all(type(x) is int and lo <= x < hi for x in xs):
        raise ValueError(f"{what} must be a list of integers in [{lo}, {hi})")


def _check(doc: Any) -> None:
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f"format {doc.get('format') if isinstance(doc, dict) else None!r}")
    for key in ("torch", "cuda"):
        if key == "torch" or doc.get(key) is not None:
            if not isinstance(doc[key], str):
                raise ValueError(f"{key} must be base64 text")
            base64.b64decode(doc[key], validate=True)
    n = doc["numpy"]
    if n["algorithm"] != "MT19937":
        raise ValueError(f"numpy algorithm {n['algorithm']!r}")
    _ints(n["keys"], 0, 2**32, "numpy keys")
    if len(n["keys"]) != 624:
        raise ValueError("numpy keys must be 624 words")
    _ints([n["pos"], n["has_gauss"]], 0, 625, "numpy pos and has_gauss")
    if not isinstance(n["cached_gaussian"], float):
        raise ValueError("numpy cached_gaussian must be a float")
    p = doc["python"]
    if p["version"] != 3:
        raise ValueError(f"python random version {p['version']!r}")
    _ints(p["internal"], 0, 2**32, "python random state")  # 624 words, then the index
    if len(p["internal"]) != 625:
        raise ValueError("python random state must be 625 integers")
    if p["gauss_next"] is not None and not isinstance(p["gauss_next"], float):
        raise ValueError("python gauss_next must be a float or null")
