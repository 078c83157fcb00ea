"""The one monotonic -> wall-clock conversion (format/clock.py) and the tools that use it.

Pins three bugs of the time when seven places converted clocks each their own way:
float64 interpolation (21-106 ns off), ``replay --follow`` printing other wall times than
``replay``, and merging rotated pieces shifting the first piece's times by microseconds.
The oracle here is exact rational arithmetic (fractions), written from format/SPEC.md.
"""

from __future__ import annotations

import io
import json
import threading
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

import aether_rec
from aether_rec.format.clock import I64_MAX, ClockMap
from aether_rec.format.writer import CaptureWriter
from aether_rec.ops.merge import MergeInput, merge_captures
from aether_rec.ops.replay import follow, replay
from aether_rec.ops.stats import StatsOptions, compute
from aether_rec.ops.window import real_to_mono, select

REAL0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z


def _nearest(x: Fraction) -> int:
    """Round half up."""
    n = x.numerator * 2 + x.denominator
    return n // (2 * x.denominator)


def exact(pairs: list[tuple[int, int]], m: int) -> int:
    ordered: dict[int, int] = {}
    for mono, real in sorted(pairs):
        ordered.setdefault(mono, real)
    offs = [(mono, real - mono) for mono, real in sorted(ordered.items())]
    if m <= offs[0][0]:
        return m + offs[0][1]
    if m >= offs[-1][0]:
        return m + offs[-1][1]
    for (m0, o0), (m1, o1) in zip(offs, offs[1:]):
        if m0 <= m < m1:
            return m + o0 + _nearest(Fraction((o1 - o0) * (m - m0), m1 - m0))
    raise AssertionError


PAIRS = [
    (1_000_000_000_000, REAL0),
    (1_010_000_000_000, REAL0 + 10_000_000_000 + 7_777),  # +7.777 us of drift over 10 s
    (1_020_000_000_000, REAL0 + 20_000_000_000 - 3_001),
    (1_030_000_000_000, REAL0 + 30_000_000_000 + 1_000_000_000),  # a 1 s clock step
]


def test_clock_map_is_exact_where_float64_is_not() -> None:
    clock = ClockMap(PAIRS)
    rng = np.random.default_rng(3)
    monos = np.concatenate([
        rng.integers(990_000_000_000, 1_040_000_000_000, 5000),
        [p[0] + d for p, _ in zip(PAIRS, range(4)) for d in (-1, 0, 1)],
    ]).astype(np.int64)
    got = clock.to_real(monos).tolist()
    want = [exact(PAIRS, int(m)) for m in monos.tolist()]
    assert got == want
    assert [clock.real(int(m)) for m in monos[:200].tolist()] == want[:200]
    # the old float64 interpolation of absolute offsets is off by tens of ns: not this
    off = np.array([r - m for m, r in PAIRS], dtype=np.int64)
    floaty = monos + np.interp(monos, [m for m, _ in PAIRS], off).astype(np.int64)
    assert (floaty != np.array(want)).any()


def test_clock_map_rounds_halves_up_and_holds_ends() -> None:
    clock = ClockMap([(0, 100), (4, 105)])  # offset 100 -> 101 over 4 ns
    assert clock.to_real(np.arange(-2, 7)).tolist() == [98, 99, 100, 101, 103, 104, 105, 106, 107]
    #                                                   m=1: 100.25 -> 100; m=2: 100.5 -> 101 (half up)
    assert clock.offset(2) == 101 and clock.offset(1) == 100 and clock.offset(3) == 101
    assert ClockMap([(0, 100), (4, 101)]).offset(2) == 99  # 98.5 rounds up to 99, not to even
    assert ClockMap([]).to_real(np.array([5])).tolist() == [5]
    assert ClockMap([(10, 15)]).to_real(np.array([0, 10])).tolist() == [5, 15]


def test_clock_map_extremes_saturate_instead_of_wrapping() -> None:
    clock = ClockMap([(0, REAL0)])
    got = clock.to_real(np.array([2**64 - 1, 2**63, 5], dtype=np.uint64)).tolist()
    assert got == [I64_MAX, I64_MAX, REAL0 + 5]
    hostile = ClockMap([(-(2**63), 2**63 - 1), (2**63 - 1, -(2**63))])  # huge offset steps
    vals = hostile.to_real(np.array([0, 1, -1], dtype=np.int64))
    assert vals.dtype == np.int64 and len(vals) == 3


@pytest.mark.parametrize("pairs", [PAIRS, [], [(0, REAL0)], [(10, 15)], [(0, 2**63 - 10)],
                                   [(-(2**63), 2**63 - 1), (2**63 - 1, -(2**63))]])
def test_one_instant_without_numpy_is_to_reals_nanosecond(pairs: list[tuple[int, int]]) -> None:
    """real_saturating (what info shows, numpy-free) gives to_real's value, saturation included."""
    clock = ClockMap(pairs)
    monos = [0, 1, 5, 9, 10, 11, 2**62, 2**63 - 2, 2**63 - 1, 2**63, 2**64 - 1] + [
        p[0] + d for p in PAIRS for d in (-1, 0, 1, 4_999_999_999)]
    want = clock.to_real(np.array(monos, dtype=np.uint64)).tolist()
    assert [clock.real_saturating(m) for m in monos] == want


@pytest.mark.parametrize("real", [REAL0 - 5, REAL0 + 1, REAL0 + 10_000_003_888, REAL0 + 29_999_999_999,
                                  REAL0 + 31_000_000_000, REAL0 + 25_000_000_001])
def test_to_mono_is_the_exact_inverse(real: int) -> None:
    clock = ClockMap(PAIRS)
    m = clock.to_mono(real)
    assert clock.real(m) >= real and clock.real(m - 1) < real


def _capture_with_clock_rows(path: Path, pairs: list[tuple[int, int]], host: str = "h1") -> Path:
    """A capture shaped like a recording: the header's pair, then per 10 s a chunk of events
    and the clock row sampled after it; the last clock row is written at close."""
    with CaptureWriter(str(path), {"clock": [list(pairs[0])], "hostname": host}, chunk_events=50) as w:
        for (m0, _), (m1, r1) in zip(pairs, pairs[1:]):
            ts = np.linspace(m0 + 1, m1 - 1, 50).astype(np.uint64)
            w.write_events({"ts": ts, "lat": np.full(50, 1000, np.uint64), "pid": np.full(50, 7, np.uint32)})
            w.flush()
            w.write_meta("clock", [{"mono": m1, "real": r1}])
    return path


def test_replay_stats_and_export_agree_with_the_exact_oracle(tmp_path: Path) -> None:
    path = _capture_with_clock_rows(tmp_path / "c.aio", PAIRS)
    with aether_rec.open(str(path)) as cap:
        ts = cap.to_numpy(["ts"])["ts"].astype(np.int64)
        want = [exact(PAIRS, int(t)) for t in ts.tolist()]
        assert cap.mono_to_real(ts).tolist() == want
        doc = compute([cap], StatsOptions(top=len(ts)))
        top = {r["ts"]: r["time_ns"] for r in doc["top"]}
        assert all(top[t] == exact(PAIRS, t) for t in top)
        assert doc["span"]["start_ns"] == want[0]
        # --since with an ISO time resolves to the exact first event at or after it
        assert real_to_mono(cap, want[70]) == int(ts[70])


def _lines(cap_path: Path, follow_mode: bool) -> list[str]:
    out = io.StringIO()
    with aether_rec.open(str(cap_path)) as cap:
        if follow_mode:
            follow(cap, out, select(cap).filter, fmt="jsonl", poll=0.01)
        else:
            replay(cap, out, select(cap), fmt="jsonl")
    return out.getvalue().splitlines()


def test_follow_prints_the_wall_times_replay_prints(tmp_path: Path) -> None:
    path = _capture_with_clock_rows(tmp_path / "c.aio", PAIRS)
    followed, replayed = _lines(path, True), _lines(path, False)
    assert len(followed) == 150 and followed == replayed
    times = [json.loads(x)["time"] for x in followed]
    assert len(set(times)) == 150


def test_follow_of_a_growing_file_waits_for_the_clock_row(tmp_path: Path) -> None:
    """While the file grows, a chunk past the newest clock pair is held back until its pair
    arrives: what is printed is never re-timed later."""
    path = tmp_path / "live.aio"
    f = open(path, "wb")  # noqa: SIM115
    w = CaptureWriter(f, {"clock": [list(PAIRS[0])], "hostname": "h1"})
    m0, (m1, r1) = PAIRS[0][0], PAIRS[1]
    w.write_chunk(aether_rec.format.chunk.Chunk.from_columns(
        {"ts": np.array([m0 + 5_000_000_000], np.uint64), "lat": np.array([1], np.uint64)}))
    out = io.StringIO()
    stop = threading.Event()
    with aether_rec.open(str(path)) as cap:
        t = threading.Thread(target=follow, args=(cap, out, select(cap).filter),
                             kwargs={"fmt": "jsonl", "poll": 0.01, "stop": stop.is_set})
        t.start()
        try:
            threading.Event().wait(0.3)
            assert out.getvalue() == ""  # held: its clock pair is not written yet
            w.write_meta("clock", [{"mono": m1, "real": r1}])
            for _ in range(200):
                if out.getvalue():
                    break
                threading.Event().wait(0.02)
        finally:
            stop.set()
            t.join(5)
            w.close()
    (line,) = out.getvalue().splitlines()
    assert json.loads(line)["ts"] == m0 + 5_000_000_000
    assert line in _lines(path, False)


def test_merging_rotated_pieces_keeps_every_wall_time(tmp_path: Path) -> None:
    """Piece 2's offset is the smaller one, so it becomes the reference; piece 1's events must
    keep the wall times they had alone (its header pair is not in piece 2)."""
    p1 = [(1_000_000_000_000, REAL0 + 4_000), (1_010_000_000_000, REAL0 + 10_000_000_000 + 2_000)]
    p2 = [(1_010_000_000_001, REAL0 + 10_000_000_000), (1_020_000_000_000, REAL0 + 20_000_000_000 - 5_000)]
    a = _capture_with_clock_rows(tmp_path / "a.aio", p1)
    b = _capture_with_clock_rows(tmp_path / "b.aio", p2)
    alone: list[int] = []
    for path in (a, b):
        with aether_rec.open(str(path)) as cap:
            alone += cap.mono_to_real(cap.to_numpy(["ts"])["ts"]).tolist()
    with aether_rec.open(str(a)) as ca, aether_rec.open(str(b)) as cb:
        rep = merge_captures([MergeInput(ca, "a"), MergeInput(cb, "b")], str(tmp_path / "m.aio"))
    assert rep.reference == 1 and [i.shift for i in rep.inputs] == [0, 0]
    with aether_rec.open(str(tmp_path / "m.aio")) as cap:
        merged = cap.mono_to_real(cap.to_numpy(["ts"])["ts"]).tolist()
    assert merged == alone and len(merged) == 100  # in ts order: piece 1, then piece 2
