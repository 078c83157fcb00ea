"""Property tests of the whole-column row builders (ops/colfmt.py, ops/rows.py) against the
per-event reference (tests/rows_reference.py) and ``str``: hypothesis draws the columns, with
the edge values (0, the extremes of every dtype, -1, errnos, powers of ten and their
neighbours) and strings holding commas, quotes, newlines, control characters, non-ASCII and
lone surrogates (bytes of a capture that were not UTF-8)."""

from __future__ import annotations

import numpy as np
import rows_reference as ref
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aether_rec.format.chunk import Chunk
from aether_rec.format.clock import ClockMap
from aether_rec.ops import colfmt, rows
from aether_rec.schema import COLUMNS

I64_MIN, I64_MAX, U64_MAX = -(2**63), 2**63 - 1, 2**64 - 1
EDGES = [0, 1, 9, 10, 99, 100, 9999, 10_000, 99_999_999, 10**8, 2**32 - 1, 2**32, 10**9, 10**12, 10**16,
         10**18, 10**19]


def _ints(lo: int, hi: int) -> st.SearchStrategy[int]:
    edges = [e for e in EDGES + [-e for e in EDGES] + [lo, hi, lo + 1, hi - 1, -1] if lo <= e <= hi]
    return st.one_of(st.sampled_from(edges), st.integers(lo, hi))


def _column(dtype: np.dtype, n: int) -> st.SearchStrategy[np.ndarray]:
    info = np.iinfo(dtype)
    values = _ints(int(info.min), int(info.max))
    # a few distinct values repeated (the table paths) or any values (the digit path)
    few = st.lists(values, min_size=1, max_size=5).flatmap(
        lambda vs: st.lists(st.sampled_from(vs), min_size=n, max_size=n))
    return st.one_of(few, st.lists(values, min_size=n, max_size=n)).map(lambda v: np.array(v, dtype=dtype))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), st.sampled_from(["<i8", "<u8", "<i4", "<u4", "<u2", "<u1"]), st.integers(1, 200),
       st.sampled_from([0, 1, 3, 8, 12, 25]))
def test_int_matrix_is_str(data: st.DataObject, dtype: str, n: int, width: int) -> None:
    v = data.draw(_column(np.dtype(dtype), n))
    got = [bytes(r).replace(b"\0", b"").decode() for r in colfmt.int_matrix(v, width)]
    assert got == [str(x).rjust(width) for x in v.tolist()]


# strings as a capture may hold them: separators and quotes of csv and JSON, control
# characters, trailing spaces, non-ASCII, and lone surrogates (undecodable bytes)
ALPHABET = st.sampled_from(list('ab ,"\'\\\n\r\t\x00\x1b\x7f\x85\u2028ü日') + ["\udcff", "\ud800"])
WORDS = st.lists(st.text(ALPHABET, max_size=20), min_size=1, max_size=6)
CLOCKS = [None, ClockMap([(0, 1_767_225_600_123_456_789)]).to_real, ClockMap([(0, -(2**62))]).to_real]


@st.composite
def chunks(draw: st.DrawFn) -> Chunk:
    n = draw(st.integers(1, 120))
    cols: dict[str, np.ndarray] = {}
    for c in COLUMNS:
        if c.is_str:
            picks = st.lists(st.sampled_from(draw(WORDS)), min_size=n, max_size=n)
            cols[c.name] = np.array(draw(picks), dtype=object)
        else:
            cols[c.name] = draw(_column(c.dtype, n))
    cols["ts"] = np.sort(cols["ts"])
    if draw(st.booleans()):
        cols["source"] = np.array(draw(st.lists(st.sampled_from(draw(WORDS)), min_size=n, max_size=n)),
                                  dtype=object)
    return Chunk.from_columns(cols)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunks(), st.sampled_from(["text", "jsonl", "csv"]), st.integers(0, len(CLOCKS) - 1),
       st.sampled_from([1, 7, 64]))
def test_rows_are_the_reference(chunk: Chunk, fmt: str, clock: int, step: int) -> None:
    to_real = CLOCKS[clock]
    want = ref.lines(fmt, chunk, to_real, "cap,\x1b\udcff")  # type: ignore[arg-type]
    assert rows.lines(fmt, chunk, to_real, "cap,\x1b\udcff") == want
    saved = rows.SLICE
    rows.SLICE = step
    try:
        data = b"".join(rows.slice_bytes(fmt, chunk, to_real, "cap,\x1b\udcff"))
        parts = list(rows.slices(fmt, chunk, to_real, "cap,\x1b\udcff"))
    finally:
        rows.SLICE = saved
    joined = "".join(want).encode("utf-8", "surrogatepass")
    assert data == joined
    assert b"".join(d for d, _ in parts) == joined
    got = [d[a:b] for d, e in parts for a, b in zip([0, *e[:-1].tolist()], e.tolist())]
    assert got == [w.encode("utf-8", "surrogatepass") for w in want]
