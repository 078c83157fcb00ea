"""The whole-column row formatting (ops/rows.py, ops/colfmt.py) against the per-event
reference it replaced (tests/rows_reference.py), on random chunks built to hit the corners:
control characters, quotes, commas, non-ASCII and trailing spaces in strings, negative results
(known and unknown errnos), offsets of -1, unknown layer/op codes, durations on rounding ties
and decade edges, huge values, no clock mapping, and wall times that saturate."""

from __future__ import annotations

import numpy as np
import pytest
import rows_reference as ref

from aether_rec.format.chunk import Chunk
from aether_rec.format.clock import ClockMap
from aether_rec.ops import colfmt, rows
from aether_rec.ops.units import fmt_bytes, fmt_duration
from aether_rec.schema import COLUMNS

WORDS = [
    "", "postgres", "a,b", 'say "hi"', "tab\there", "nl\nx", "esc\x1b[31m", "nul\x00", "trail ", "   ",
    "ünïcødé", "日本語のプロセス名は長い", "x" * 40, "/var/lib/pg data/base/1", "crlf\r\n",
    "\u2028sep", "bell\x07",
]
I64_MIN, I64_MAX = -(2**63), 2**63 - 1


def _durations(rng: np.random.Generator, n: int) -> np.ndarray:
    decade = 10 ** rng.integers(0, 13, n).astype(np.uint64)
    base = rng.integers(1, 1000, n).astype(np.uint64) * decade
    steps = [0, 1, 5, 9, 49, 50, 51, 499, 500, 501, 4999, 5000, 5001]
    tweak = rng.choice(np.array(steps, dtype=np.uint64), n)
    v = base + tweak
    v[rng.random(n) < 0.02] = np.uint64(2**64 - 1)
    v[rng.random(n) < 0.05] = rng.integers(0, 2**62, int((rng.random(n) < 0.05).sum()) or 1)[0]
    return v


def random_chunk(seed: int, n: int = 400, with_source: bool = False, with_path: bool = True) -> Chunk:
    rng = np.random.default_rng(seed)
    cols: dict[str, np.ndarray] = {}
    for c in COLUMNS:
        if c.is_str:
            if c.name == "path" and not with_path:
                continue
            cols[c.name] = np.array(rng.choice(WORDS, n), dtype=object)
        elif c.dtype.kind == "u":
            hi = min(int(np.iinfo(c.dtype).max), 2**63 - 1)
            cols[c.name] = rng.integers(0, hi, n, dtype=np.int64, endpoint=True).astype(c.dtype)
            cols[c.name][rng.random(n) < 0.3] = 0
        else:
            info = np.iinfo(c.dtype)
            cols[c.name] = rng.integers(info.min, info.max, n, dtype=np.int64, endpoint=True).astype(c.dtype)
    cols["ts"] = np.sort(rng.integers(0, 2**40, n).astype(np.uint64))
    if n >= 8:  # monotonic times beyond int64: no wall time, ts/1e9 shown
        cols["ts"][-3:] = np.array([2**63 - 5, 2**63 + 7, 2**64 - 1], dtype=np.uint64)
    cols["lat"] = _durations(rng, n)
    cols["bytes"] = np.where(rng.random(n) < 0.5, rng.choice([0, 1023, 1024, 4096, 1 << 20, 1048575], n),
                             rng.integers(0, 2**63, n)).astype(np.uint64)
    cols["result"] = np.where(rng.random(n) < 0.4, -rng.integers(1, 200, n), rng.integers(0, 2**40, n))
    if n >= 8:
        cols["result"][:2] = [I64_MIN, -(2**40)]
    cols["offset"] = np.where(rng.random(n) < 0.3, -1, rng.integers(0, 2**62, n))
    cols["fd"] = np.where(rng.random(n) < 0.3, -1, rng.integers(0, 70000, n)).astype(np.int32)
    cols["layer"] = rng.choice(np.array([0, 1, 2, 3, 4, 2, 2, 77], dtype=np.uint8), n)
    cols["op"] = rng.integers(0, 256, n).astype(np.uint8)
    cols["dev"] = np.where(rng.random(n) < 0.5, 0, rng.integers(1, 2**32 - 1, n)).astype(np.uint32)
    if with_source:
        cols["source"] = np.array(rng.choice(["host-a", "h,b", "src\x1b", "ü"], n), dtype=object)
    return Chunk.from_columns(cols)


def _odd_clock(ts: np.ndarray) -> np.ndarray:
    """Saturated, negative and far-apart wall times, a function of ts (deterministic)."""
    t = ts.astype(np.uint64)
    spread = (t * np.uint64(7919)).astype(np.int64)
    return np.where(t % np.uint64(7) == 0, np.int64(I64_MAX),
                    np.where(t % np.uint64(5) == 0, np.int64(I64_MIN), spread)).astype(np.int64)


CLOCKS = [
    None,
    ClockMap([(0, 1_767_225_600_000_000_000)]).to_real,
    ClockMap([(0, 1_767_225_600_123_456_789), (2**39, 1_767_225_600_000_000_000 + 2**39 + 12345)]).to_real,
    ClockMap([(0, -(2**62))]).to_real,  # before 1970: floor division on negative times
    _odd_clock,
]


@pytest.mark.parametrize("fmt", ["text", "jsonl", "csv"])
@pytest.mark.parametrize("seed", range(6))
def test_fast_rows_equal_reference(fmt: str, seed: int) -> None:
    chunk = random_chunk(seed, with_source=seed % 2 == 1, with_path=seed != 4)
    for clock in CLOCKS:
        fast = rows.lines(fmt, chunk, clock, "cap\x1bname")  # type: ignore[arg-type]
        slow = ref.lines(fmt, chunk, clock, "cap\x1bname")  # type: ignore[arg-type]
        assert len(fast) == chunk.n
        for i, (a, b) in enumerate(zip(fast, slow)):
            assert a == b, (fmt, seed, i)


def test_empty_and_one_row_chunks() -> None:
    chunk = random_chunk(9, n=1)
    for fmt in ("text", "jsonl", "csv"):
        assert rows.lines(fmt, chunk, None) == ref.lines(fmt, chunk, None)
        assert rows.lines(fmt, chunk.take(np.zeros(1, bool)), None) == []


def test_durations_match_fmt_duration_on_every_edge() -> None:
    edges = []
    for k in range(0, 13):
        d = 10**k
        for m in (1, 9, 10, 99, 100, 999, 1000):
            for t in (-501, -500, -499, -51, -50, -49, -6, -5, -4, -1, 0, 1, 4, 5, 6, 49, 50, 51, 499, 500,
                      501):
                v = m * d + t
                if v >= 0:
                    edges.append(v)
    more = [2**53 - 1, 2**53 + 1, 2**64 - 1, 99_950_000, 99_949_999, 9995, 99_995]
    arr = np.array(edges + more, dtype=np.uint64)
    assert colfmt.durations(arr) == [fmt_duration(v) for v in arr.tolist()]
    assert colfmt.gather(*colfmt.coded(arr, fmt_bytes)) == [fmt_bytes(v) for v in arr.tolist()]


@pytest.mark.parametrize("fmt", ["text", "jsonl", "csv"])
def test_rows_built_in_slices_are_the_same(fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    chunk = random_chunk(11, n=100, with_source=True)
    monkeypatch.setattr(rows, "SLICE", 7)
    text, ends = rows.block(fmt, chunk, CLOCKS[1], "x")
    want = ref.lines(fmt, chunk, CLOCKS[1], "x")  # type: ignore[arg-type]
    assert text == "".join(want)
    assert ends.tolist() == np.cumsum([len(x) for x in want]).tolist()


def test_int_matrix_is_str_of_every_integer() -> None:
    rng = np.random.default_rng(3)
    signed = np.concatenate([rng.integers(-(2**63), 2**63 - 1, 200, dtype=np.int64, endpoint=True),
                             np.array([0, -1, 9, 10, -10, 99, 100, I64_MIN, I64_MAX], dtype=np.int64)])
    unsigned = np.concatenate([rng.integers(0, 2**63, 200).astype(np.uint64) * np.uint64(2),
                               np.array([0, 2**64 - 1, 10**19], dtype=np.uint64)])
    for v in (signed, unsigned, signed[:0] + 7):
        for width in (0, 1, 8, 25):
            got = [bytes(r).replace(b"\0", b"").decode() for r in colfmt.int_matrix(v, width)]
            assert got == [str(x).rjust(width) for x in v.tolist()]


def test_int_matrix_of_few_values_is_str_of_every_integer() -> None:
    """Columns spanning a narrow range (cpu, pid, a constant) go through a table of the range."""
    rng = np.random.default_rng(4)
    cases = [
        rng.integers(-40, 40, 300, dtype=np.int64),
        rng.integers(0, 20, 300).astype(np.uint16),
        (np.uint64(2**64 - 1) - rng.integers(0, 30, 300).astype(np.uint64)),
        np.full(300, I64_MIN, dtype=np.int64) + rng.integers(0, 3, 300),
        np.full(300, 4242, dtype=np.uint64),
        rng.integers(-1, 30, 300).astype(np.int32),
        rng.choice(np.array([5, 4096, 2**40, -3]), 300),  # few values far apart
        np.where(np.arange(300) == 151, 77_777, rng.choice(np.array([5, 4096, 2**40]), 300)),  # one unsampled
    ]
    for v in cases:
        for width in (0, 3, 25):
            got = [bytes(r).replace(b"\0", b"").decode() for r in colfmt.int_matrix(v, width)]
            assert got == [str(x).rjust(width) for x in v.tolist()]


def test_distinct_is_np_unique() -> None:
    rng = np.random.default_rng(6)
    rare = np.where(np.arange(300) == 151, 9, rng.choice(np.array([1, 5, 7]), 300)).astype(np.uint32)
    for v in (rare, rng.choice(np.array([3, 1, 2]), 300), rng.integers(0, 10**6, 300), rare[:10]):
        uniq, codes = colfmt.distinct(v)
        want_u, want_c = np.unique(v, return_inverse=True)
        assert uniq.tolist() == want_u.tolist() and codes.tolist() == want_c.reshape(-1).tolist()
    found = colfmt.few(rare)  # 9 is not in the sample: found among the values that missed
    assert found is not None and found[0].tolist() == [1, 5, 7, 9]
    many = np.where(np.arange(300) % 50 == 1, np.arange(300), 4).astype(np.int64)  # 6 missed, 7 in all
    assert colfmt.few(many) is not None
    assert colfmt.few(np.where(np.arange(300) % 10 == 1, np.arange(300), 4)) is None  # 31 values


def test_memo_calls_fn_once_per_value_and_starts_over_at_its_limit() -> None:
    calls: list[int] = []

    def text(v: int) -> str:
        return "x" * (v % 7) + str(v)

    def fn(v: int) -> str:
        calls.append(v)
        return text(v)

    memo = colfmt.Memo(fn, limit=50)
    rng = np.random.default_rng(5)
    resets = 0
    for i, size in enumerate((10, 30, 30, 45, 5, 80, 12, 40)):  # 80: more than the memo holds
        values = (rng.integers(0, size, 200) + 20 * i).astype(np.uint64)  # partly new values each time
        before = len(memo.keys)
        m = colfmt.RowMatrix(len(values))
        m.coded(values, memo)
        got = [bytes(r).replace(b"\0", b"").decode() for r in m.matrix()]
        assert got == [text(v) for v in values.tolist()]
        assert len(memo.keys) <= 50
        resets += len(memo.keys) < before
    assert resets >= 2
    assert len(calls) < 600  # once per value per memo generation, not per row (1,600 rows)


@pytest.mark.parametrize("fmt", ["text", "jsonl", "csv"])
def test_slices_are_the_reference_bytes(fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    chunk = random_chunk(12, n=100, with_source=True)
    monkeypatch.setattr(rows, "SLICE", 9)
    parts = list(rows.slices(fmt, chunk, CLOCKS[2], "y"))
    want = ref.lines(fmt, chunk, CLOCKS[2], "y")  # type: ignore[arg-type]
    assert len(parts) == 12
    assert b"".join(d for d, _ in parts) == "".join(want).encode()
    got_rows = [d[a:b] for d, e in parts for a, b in zip([0, *e[:-1].tolist()], e.tolist())]
    assert got_rows == [w.encode() for w in want]


@pytest.mark.parametrize("fmt", ["text", "jsonl", "csv"])
def test_rows_assembled_in_tiles_are_the_same(fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Matrices assembled a few rows at a time (colfmt.TILE, 2048 by default) give every
    row, its end and its character count as the reference does: tiles of 5 rows over
    100-row chunks, the last tile short, rows with multi-byte characters among them."""
    chunk = random_chunk(13, n=100, with_source=True)
    monkeypatch.setattr(colfmt, "TILE", 5)
    text, ends = rows.block(fmt, chunk, CLOCKS[1], "z\u00e9")
    want = ref.lines(fmt, chunk, CLOCKS[1], "z\u00e9")  # type: ignore[arg-type]
    if fmt != "jsonl":  # (JSON escapes every non-ASCII character)
        assert any(len(w) != len(w.encode()) for w in want)  # character counts are tested
    assert text == "".join(want)
    assert ends.tolist() == np.cumsum([len(x) for x in want]).tolist()
    monkeypatch.setattr(colfmt, "TILE", 7)  # 100 = 14 x 7 + 2
    (data, byte_ends), = rows.slices(fmt, chunk, CLOCKS[1], "z\u00e9")
    assert data == "".join(want).encode()
    assert byte_ends.tolist() == np.cumsum([len(x.encode()) for x in want]).tolist()
    assert b"".join(rows.slice_bytes(fmt, chunk, CLOCKS[1], "z\u00e9")) == data


def test_row_columns_name_errors_by_errno() -> None:
    """The display columns (perfetto's args, the reference rows) name a negative result by
    its errno and give no error name to a success."""
    import numpy as np

    from aether_rec.format.chunk import Chunk
    from aether_rec.ops.rows import columns

    result = np.array([-2, -11, 0, 4096, -9999], dtype=np.int64)
    chunk = Chunk(5, {"result": result, "ts": np.arange(5, dtype=np.uint64)}, {})
    assert columns(chunk, None)["error"] == ["ENOENT", "EAGAIN", None, None, "9999"]
