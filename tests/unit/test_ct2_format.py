"""The CTranslate2 model.bin reader on small files built byte by byte here."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from whisperft.trainer.model import ModelError
from whisperft.trainer.model.ct2_format import (
    CT2FormatError,
    read_ct2_model,
    write_ct2_model,
)

pytestmark = pytest.mark.unit


def s(text: str) -> bytes:
    raw = text.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def var_v6(name: str, array: np.ndarray, dtype_id: int) -> bytes:
    data = array.tobytes()
    dims = b"".join(struct.pack("<I", d) for d in array.shape)
    return (
        s(name)
        + struct.pack("<B", array.ndim)
        + dims
        + struct.pack("<BI", dtype_id, len(data))
        + data
    )


def v6_file(variables: list[bytes], aliases: list[tuple[str, str]] = ()) -> bytes:  # type: ignore[assignment]
    head = (
        struct.pack("<I", 6)
        + s("WhisperSpec")
        + struct.pack("<I", 3)
        + struct.pack("<I", len(variables))
    )
    tail = struct.pack("<I", len(aliases)) + b"".join(s(a) + s(t) for a, t in aliases)
    return head + b"".join(variables) + tail


def write(tmp_path: Path, data: bytes, name: str = "model.bin") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_header_dtypes_scalars_and_aliases(tmp_path: Path) -> None:
    weight = np.arange(6, dtype=np.float16).reshape(2, 3)
    bias = np.array([0.5, -1.0], dtype=np.float32)
    path = write(
        tmp_path,
        v6_file(
            [
                var_v6("enc/w", weight, 4),
                var_v6("enc/b", bias, 0),
                var_v6("enc/num_heads", np.array(6, dtype=np.int16), 2),
                var_v6("dec/flag", np.array(1, dtype=np.int8), 1),
            ],
            [("dec/projection/weight", "enc/w")],
        ),
    )
    model = read_ct2_model(path)
    assert (model.spec, model.revision, model.binary_version) == ("WhisperSpec", 3, 6)
    assert model.dtypes == {
        "enc/w": "float16",
        "enc/b": "float32",
        "enc/num_heads": "int16",
        "dec/flag": "int8",
    }
    np.testing.assert_array_equal(model.get("enc/w"), weight)
    np.testing.assert_array_equal(model.get("enc/b"), bias)
    assert model.scalar("enc/num_heads") == 6 and model.scalar("dec/flag") == 1
    assert model.get("dec/projection/weight") is model.get("enc/w")
    assert set(model.names) == {
        "enc/w",
        "enc/b",
        "enc/num_heads",
        "dec/flag",
        "dec/projection/weight",
    }
    with pytest.raises(CT2FormatError, match="no variable 'missing'"):
        model.get("missing")


def test_bfloat16_is_widened_to_float32(tmp_path: Path) -> None:
    values = np.array([1.5, -2.0, 3.140625], dtype=np.float32)
    bits = (values.view(np.uint32) >> 16).astype(np.uint16)
    model = read_ct2_model(write(tmp_path, v6_file([var_v6("x", bits, 5)])))
    assert model.dtypes["x"] == "bfloat16"
    np.testing.assert_array_equal(model.get("x"), values)


def test_legacy_version_3_item_size_layout(tmp_path: Path) -> None:
    """Binary versions < 4 store an item size and an item count instead of a dtype id and bytes."""
    array = np.array([[1.0, 2.0]], dtype=np.float32)
    var = (
        s("w")
        + struct.pack("<B", 2)
        + struct.pack("<II", 1, 2)
        + struct.pack("<BI", 4, 2)
        + array.tobytes()
    )
    data = (
        struct.pack("<I", 3) + s("WhisperSpec") + struct.pack("<I", 1) + struct.pack("<I", 1) + var
    )
    data += struct.pack("<I", 0)
    model = read_ct2_model(write(tmp_path, data))
    assert model.binary_version == 3 and model.dtypes["w"] == "float32"
    np.testing.assert_array_equal(model.get("w"), array)


def test_int8_weights_are_refused_with_reexport_hint(tmp_path: Path) -> None:
    weight = np.ones((4, 4), dtype=np.int8)
    path = write(tmp_path, v6_file([var_v6("decoder/layer_0/ffn/linear_0/weight", weight, 1)]))
    with pytest.raises(ModelError, match=r"int8-quantized.*unsupported, re-export in float16"):
        read_ct2_model(path)


@pytest.mark.parametrize("cut", [3, 20, -30, -2])
def test_truncated_file_names_offset(tmp_path: Path, cut: int) -> None:
    full = v6_file([var_v6("w", np.zeros((4, 4), dtype=np.float32), 0)], [("a", "w")])
    path = write(tmp_path, full[:cut])
    with pytest.raises(
        CT2FormatError, match=r"is truncated: needed \d+ bytes for .* at offset \d+"
    ):
        read_ct2_model(path)


def test_trailing_bytes_and_bad_version_and_bad_sizes(tmp_path: Path) -> None:
    good = v6_file([var_v6("w", np.zeros(2, dtype=np.float32), 0)])
    with pytest.raises(CT2FormatError, match="unexpected bytes after the end"):
        read_ct2_model(write(tmp_path, good + b"junk", "extra.bin"))
    with pytest.raises(CT2FormatError, match="binary version 1234"):
        read_ct2_model(write(tmp_path, struct.pack("<I", 1234) + good[4:], "version.bin"))
    wrong_size = good.replace(struct.pack("<BI", 0, 8), struct.pack("<BI", 0, 12))
    with pytest.raises(CT2FormatError, match="declares 12 bytes but shape"):
        read_ct2_model(write(tmp_path, wrong_size, "size.bin"))
    with pytest.raises(CT2FormatError, match="unknown dtype id 9"):
        read_ct2_model(
            write(
                tmp_path, good.replace(struct.pack("<BI", 0, 8), struct.pack("<BI", 9, 8)), "d.bin"
            )
        )
    dangling = v6_file([var_v6("w", np.zeros(2, dtype=np.float32), 0)], [("a", "nowhere")])
    with pytest.raises(CT2FormatError, match="alias 'a' points at missing variable 'nowhere'"):
        read_ct2_model(write(tmp_path, dangling, "alias.bin"))
    with pytest.raises(CT2FormatError, match="does not exist"):
        read_ct2_model(tmp_path / "absent.bin")


def test_split_parts_read_back_to_back_and_writer_round_trip(tmp_path: Path) -> None:
    variables = {
        "a": np.random.default_rng(0).standard_normal((5, 7)).astype(np.float16),
        "b": np.arange(3, dtype=np.float32),
        "n": np.array(8, dtype=np.int16),
    }
    whole = tmp_path / "model.bin"
    write_ct2_model(whole, variables, aliases={"c": "a"})
    data = whole.read_bytes()
    cut = len(data) // 2 + 1  # inside a variable's data
    p1, p2 = (
        write(tmp_path, data[:cut], "model.bin.part1"),
        write(tmp_path, data[cut:], "model.bin.part2"),
    )
    for model in (read_ct2_model(whole), read_ct2_model([p1, p2])):
        for name, value in variables.items():
            np.testing.assert_array_equal(model.get(name), value)
        assert model.aliases == {"c": "a"}
    with pytest.raises(CT2FormatError):
        read_ct2_model([p2, p1])  # wrong order is an error, not garbage weights
