"""Reader for the CTranslate2 ``model.bin`` format (binary versions 1-6).

Layout (little-endian), as written by ``ctranslate2.specs.ModelSpec.save``::

    u32 binary_version
    [v>=2] str spec_name, u32 spec_revision
    u32 n_variables, then per variable:
        str name, u8 rank, u32[rank] shape,
        [v>=4] u8 dtype_id, u32 n_bytes      [v<4] u8 item_size, u32 n_items
        bytes data
    [v>=3] u32 n_aliases, then per alias: str alias, str target

where ``str`` is a u16 length (including a trailing NUL) and the bytes.
Only numpy is needed: the ``ctranslate2`` package is not required at run time.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from whisperft.trainer.model.errors import ModelError

MAX_BINARY_VERSION = 6

# ctranslate2::DataType, in enum order.
DTYPE_NAMES: dict[int, str] = {
    0: "float32",
    1: "int8",
    2: "int16",
    3: "int32",
    4: "float16",
    5: "bfloat16",
}
_NUMPY_DTYPES: dict[str, np.dtype] = {
    "float32": np.dtype("<f4"),
    "int8": np.dtype("i1"),
    "int16": np.dtype("<i2"),
    "int32": np.dtype("<i4"),
    "float16": np.dtype("<f2"),
    "bfloat16": np.dtype("<u2"),  # raw bits; widened to float32 on read
}
# Binary versions < 4 stored an item size instead of a dtype id.
_LEGACY_ITEM_SIZE = {4: "float32", 2: "int16", 1: "int8"}
QUANTIZED_DTYPES = frozenset({"int8", "int16"})


class CT2FormatError(ModelError):
    """A model.bin that is not a readable CTranslate2 model."""


@dataclass
class CT2Model:
    """The variables of one CTranslate2 model; aliases point at the same arrays."""

    spec: str
    revision: int
    binary_version: int
    variables: dict[str, np.ndarray]
    dtypes: dict[str, str]
    aliases: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> np.ndarray:
        """A variable or alias, resolved."""
        target = self.aliases.get(name, name)
        try:
            return self.variables[target]
        except KeyError:
            raise CT2FormatError(f"CTranslate2 model has no variable {name!r}") from None

    def has(self, name: str) -> bool:
        return self.aliases.get(name, name) in self.variables

    def scalar(self, name: str) -> int:
        value = self.get(name)
        if value.ndim != 0:
            raise CT2FormatError(
                f"CTranslate2 variable {name!r} should be a scalar, has shape {value.shape}"
            )
        return int(value)

    @property
    def names(self) -> list[str]:
        """Every name a consumer may use: variables and aliases."""
        return [*self.variables, *self.aliases]


class ChainedReader(io.RawIOBase):
    """Reads several files back to back as one stream, so split files need no joined copy."""

    def __init__(self, paths: Iterable[Path]) -> None:
        super().__init__()
        self._paths = list(paths)
        self._index = 0
        self._current: io.BufferedReader | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while self._index < len(self._paths):
            if self._current is None:
                self._current = open(self._paths[self._index], "rb")  # noqa: SIM115 - closed below
            n = self._current.readinto(buffer)
            if n:
                return n
            self._current.close()
            self._current = None
            self._index += 1
        return 0

    def close(self) -> None:
        if self._current is not None:
            self._current.close()
            self._current = None
        super().close()


class _Stream:
    """Exact reads with errors that say where the file ended."""

    def __init__(self, handle: BinaryIO, label: str) -> None:
        self._handle = handle
        self._label = label
        self.position = 0

    def read(self, n: int, what: str) -> bytes:
        data = self._handle.read(n)
        if data is None or len(data) != n:
            got = 0 if data is None else len(data)
            raise CT2FormatError(
                f"{self._label} is truncated: needed {n} bytes for {what} at offset "
                f"{self.position}, only {got} left (incomplete download or a missing part?)"
            )
        self.position += n
        return data

    def unpack(self, fmt: str, what: str) -> int:
        (value,) = struct.unpack("<" + fmt, self.read(struct.calcsize(fmt), what))
        return int(value)

    def string(self, what: str) -> str:
        length = self.unpack("H", f"the length of {what}")
        raw = self.read(length, what)
        if not raw or raw[-1] != 0:
            raise CT2FormatError(
                f"{self._label}: {what} at offset {self.position - length} is not NUL-terminated"
            )
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError:
            raise CT2FormatError(f"{self._label}: {what} is not UTF-8") from None

    def trailing(self) -> int:
        return len(self._handle.read())


def _decode_array(raw: bytes, dtype_name: str, shape: tuple[int, ...]) -> np.ndarray:
    array = np.frombuffer(raw, dtype=_NUMPY_DTYPES[dtype_name])
    if dtype_name == "bfloat16":
        array = (array.astype(np.uint32) << 16).view(np.float32)
    return array.reshape(shape)


def read_ct2_stream(handle: BinaryIO, label: str = "model.bin") -> CT2Model:
    """Parse a CTranslate2 model from a binary stream; quantized weights are refused."""
    stream = _Stream(handle, label)
    version = stream.unpack("I", "the binary version")
    if version < 1 or version > MAX_BINARY_VERSION:
        raise CT2FormatError(
            f"{label}: binary version {version} is not a CTranslate2 model this reader knows "
            f"(1..{MAX_BINARY_VERSION}); is it really a CTranslate2 model.bin?"
        )
    spec, revision = "", 1
    if version >= 2:
        spec = stream.string("the spec name")
        revision = stream.unpack("I", "the spec revision")
    count = stream.unpack("I", "the variable count")
    variables: dict[str, np.ndarray] = {}
    dtypes: dict[str, str] = {}
    for index in range(count):
        name = stream.string(f"the name of variable #{index}")
        rank = stream.unpack("B", f"the rank of {name!r}")
        shape = tuple(stream.unpack("I", f"the shape of {name!r}") for _ in range(rank))
        if version >= 4:
            dtype_id = stream.unpack("B", f"the dtype of {name!r}")
            if dtype_id not in DTYPE_NAMES:
                raise CT2FormatError(f"{label}: variable {name!r} has unknown dtype id {dtype_id}")
            dtype_name = DTYPE_NAMES[dtype_id]
            n_bytes = stream.unpack("I", f"the size of {name!r}")
        else:
            item_size = stream.unpack("B", f"the item size of {name!r}")
            if item_size not in _LEGACY_ITEM_SIZE:
                raise CT2FormatError(
                    f"{label}: variable {name!r} has unknown item size {item_size}"
                )
            dtype_name = _LEGACY_ITEM_SIZE[item_size]
            n_bytes = stream.unpack("I", f"the size of {name!r}") * item_size
        if rank > 0 and dtype_name in QUANTIZED_DTYPES:
            raise CT2FormatError(
                f"{label}: variable {name!r} is {dtype_name}-quantized; quantized CTranslate2 "
                "models are unsupported, re-export in float16 "
                "(ct2-transformers-converter --quantization float16)"
            )
        expected = int(np.prod(shape, dtype=np.int64)) * _NUMPY_DTYPES[dtype_name].itemsize
        if n_bytes != expected:
            raise CT2FormatError(
                f"{label}: variable {name!r} declares {n_bytes} bytes but shape {shape} "
                f"of {dtype_name} needs {expected}"
            )
        raw = stream.read(n_bytes, f"the data of {name!r}")
        if name in variables:
            raise CT2FormatError(f"{label}: variable {name!r} appears twice")
        variables[name] = _decode_array(raw, dtype_name, shape)
        dtypes[name] = dtype_name
    aliases: dict[str, str] = {}
    if version >= 3:
        n_aliases = stream.unpack("I", "the alias count")
        for index in range(n_aliases):
            alias = stream.string(f"the name of alias #{index}")
            target = stream.string(f"the target of alias {alias!r}")
            if target not in variables:
                raise CT2FormatError(
                    f"{label}: alias {alias!r} points at missing variable {target!r}"
                )
            aliases[alias] = target
    extra = stream.trailing()
    if extra:
        raise CT2FormatError(
            f"{label}: {extra} unexpected bytes after the end of the model (parts joined in the wrong order?)"
        )
    return CT2Model(spec, revision, version, variables, dtypes, aliases)


def read_ct2_model(paths: Path | Iterable[Path]) -> CT2Model:
    """Parse ``model.bin``, or the parts of a split one read back to back without joining them."""
    parts = [paths] if isinstance(paths, Path) else list(paths)
    for part in parts:
        if not part.is_file():
            raise CT2FormatError(f"CTranslate2 model file {part} does not exist")
    label = " + ".join(str(p) for p in parts)
    with io.BufferedReader(ChainedReader(parts), buffer_size=1 << 20) as handle:
        return read_ct2_stream(handle, label)


def write_ct2_model(
    path: Path,
    variables: Mapping[str, np.ndarray],
    *,
    spec: str = "WhisperSpec",
    revision: int = 3,
    aliases: Mapping[str, str] | None = None,
) -> None:
    """Write a binary-version-6 model.bin (used to build test fixtures and by round trips)."""
    ids = {name: dtype_id for dtype_id, name in DTYPE_NAMES.items()}

    def string(value: str) -> bytes:
        raw = value.encode("utf-8") + b"\0"
        return struct.pack("<H", len(raw)) + raw

    with open(path, "wb") as out:
        out.write(struct.pack("<I", 6) + string(spec) + struct.pack("<I", revision))
        out.write(struct.pack("<I", len(variables)))
        for name, value in variables.items():
            array = np.asarray(value)  # ascontiguousarray would turn scalars 1-D
            dtype_name = array.dtype.name
            if dtype_name not in ids or dtype_name == "bfloat16":
                raise ValueError(f"cannot write dtype {array.dtype} for {name!r}")
            data = array.astype(_NUMPY_DTYPES[dtype_name], copy=False).tobytes()
            out.write(string(name) + struct.pack("<B", array.ndim))
            out.write(b"".join(struct.pack("<I", d) for d in array.shape))
            out.write(struct.pack("<BI", ids[dtype_name], len(data)) + data)
        out.write(struct.pack("<I", len(aliases or {})))
        for alias, target in (aliases or {}).items():
            out.write(string(alias) + string(target))
