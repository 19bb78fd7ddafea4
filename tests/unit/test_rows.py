"""Cache files read row by row: the same values as the array, and nothing kept resident."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from whisperft.trainer.data.rows import Rows

pytestmark = pytest.mark.unit


def _write(path: Path, a: np.ndarray) -> Path:
    path.write_bytes(a.tobytes())
    return path


def test_rows_read_as_the_array(tmp_path: Path) -> None:
    a = np.arange(5 * 3 * 4, dtype=np.float16).reshape(5, 3, 4)
    rows = Rows(_write(tmp_path / "a.f16", a), np.float16, a.shape)
    assert len(rows) == 5 and rows.shape == (5, 3, 4)
    assert np.array_equal(rows[2], a[2]) and np.array_equal(rows[-1], a[4])
    assert np.array_equal(rows[1:4], a[1:4]) and np.array_equal(rows[[4, 0]], a[[4, 0]])
    assert np.array_equal(np.stack(list(rows)), a)
    assert rows[3:3].shape == (0, 3, 4)
    with pytest.raises(IndexError):
        rows[5]


def test_a_file_of_the_wrong_size_is_refused(tmp_path: Path) -> None:
    p = _write(tmp_path / "short.f16", np.zeros((4, 8), np.float16))
    with pytest.raises(ValueError, match=r"64 bytes, expected 80"):
        Rows(p, np.float16, (5, 8))


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_reading_every_row_keeps_none_of_them_resident(tmp_path: Path) -> None:
    # 128 rows of 1 MiB: a memory map would keep every row read in the resident set.
    a = np.ones((128, 512 * 1024), np.float16)
    rows = Rows(_write(tmp_path / "big.f16", a), np.float16, a.shape)
    del a
    before = _rss_mib()
    total = sum(float(r[0]) for r in rows)
    grown = _rss_mib() - before
    assert total == 128.0
    assert grown < 32, f"resident set grew {grown:.0f} MiB reading 128 MiB of rows"
