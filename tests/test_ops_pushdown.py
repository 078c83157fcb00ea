"""Index push-down at the edges, with explicit examples (never left to chance).

For every comparison operator on ``ts``, ``lat``, ``end`` and ``pid``, at ``lo-1, lo,
lo+1, hi-1, hi, hi+1`` of each chunk's own index entry, the events that ``Selection``
(chunk skipping with ``can_match``, mask skipping with ``must_match``) and ``filter``
(whole-chunk copies) keep must be exactly those a plain numpy mask over every event
keeps. A push-down that drops a boundary event (``>=`` evaluated as ``>``) or copies a
chunk it should have masked fails here. ``_range_bounds`` is also checked to be exactly
as tight as the index allows, by brute force over small ranges.
"""

from __future__ import annotations

import io
import itertools
import operator
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import aether_rec
from aether_rec.format.chunk import ChunkInfo
from aether_rec.format.limits import MAX_SUMMARY_PIDS
from aether_rec.format.writer import CaptureWriter
from aether_rec.ops.expr import Compare, parse
from aether_rec.ops.expr.nodes import _range_bounds
from aether_rec.ops.filter import filter_capture
from aether_rec.ops.window import Selection

OPS: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt,
    "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}
FIELDS = ("ts", "lat", "end", "pid")


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four chunks, in time order, not overlapping; chunk 2 has more pids than a summary
    lists (so pid push-down uses the range there, the exact list elsewhere)."""
    path = tmp_path_factory.mktemp("pushdown") / "c.aio"
    rng = np.random.default_rng(7)
    with CaptureWriter(str(path), {"clock": [[0, 10**18]]}, chunk_events=40) as w:
        t = 1_000_000
        for k in range(4):
            n = 40
            ts = t + np.sort(rng.choice(np.arange(1, 10_000), n, replace=False))
            npids = MAX_SUMMARY_PIDS + 8 if k == 2 else 3
            pid = 100 * (k + 1) + rng.integers(0, npids, n)
            pid[:npids] = 100 * (k + 1) + np.arange(npids)  # every pid present, the range exact
            lat = rng.integers(0, 5_000, n)
            lat[0], lat[1] = 0, 4_999
            w.write_chunk(aether_rec.format.chunk.Chunk.from_columns({
                "ts": ts.astype(np.uint64), "lat": lat.astype(np.uint64), "pid": pid.astype(np.uint32)}))
            t = int(ts[-1]) + 1_000
    return path


def _events(path: Path | io.BytesIO) -> tuple[dict[str, np.ndarray], list[ChunkInfo]]:
    with aether_rec.open(path) as cap:
        data = cap.to_numpy(["ts", "lat", "pid"])
        return data, cap.chunk_infos()


def _edges(info: ChunkInfo, field: str) -> tuple[int, int]:
    return {
        "ts": (info.t_first, info.t_last),
        "lat": (0, info.lat_max),
        "end": (info.t_first, info.t_last + info.lat_max),
        "pid": (info.pid_min, info.pid_max),
    }[field]


def _cases(path: Path) -> list[tuple[str, str, int]]:
    _, infos = _events(path)
    out = set()
    for info, field in itertools.product(infos, FIELDS):
        lo, hi = _edges(info, field)
        for v in (lo - 1, lo, lo + 1, hi - 1, hi, hi + 1):
            for op in OPS:
                out.add((field, op, v))
    return sorted(out)


def _key(data: dict[str, np.ndarray], mask: np.ndarray | None = None) -> list[tuple[int, int, int]]:
    sel = slice(None) if mask is None else mask
    return sorted(zip(data["ts"][sel].tolist(), data["lat"][sel].tolist(), data["pid"][sel].tolist()))


def _oracle(data: dict[str, np.ndarray], field: str, op: str, v: int) -> np.ndarray:
    vals = {"end": data["ts"].astype(object) + data["lat"].astype(object)}.get(field, data.get(field))
    assert vals is not None
    return np.array([OPS[op](int(x), v) for x in vals.tolist()], dtype=bool)


def test_every_operator_at_every_chunk_edge(capture: Path) -> None:
    data, infos = _events(capture)
    cases = _cases(capture)
    assert len(cases) > 400
    failures = []
    with aether_rec.open(str(capture)) as cap:
        for field, op, v in cases:
            f = parse(f"{field} {op} {v}")
            got = [c for c in Selection(f).chunks(cap)]
            keys = sorted(k for c in got for k in zip(c.column("ts").tolist(), c.column("lat").tolist(),
                                                       c.column("pid").tolist()))
            want = _key(data, _oracle(data, field, op, v))
            if keys != want:
                failures.append(f"{field} {op} {v}: {len(keys)} events, want {len(want)}")
    assert failures == []


def test_filter_copies_and_masks_exactly_at_the_edges(capture: Path) -> None:
    """filter copies a chunk whole when must_match says so: a too-generous must_match
    would copy events that do not match."""
    data, infos = _events(capture)
    failures = []
    copied_somewhere = 0
    with aether_rec.open(str(capture)) as cap:
        for field, op, v in _cases(capture):
            if op in ("==", "!="):
                continue
            out = io.BytesIO()
            rep = filter_capture(cap, out, Selection(parse(f"{field} {op} {v}")))
            copied_somewhere += rep.chunks_copied
            got, _ = _events(io.BytesIO(out.getvalue()))
            if _key(got) != _key(data, _oracle(data, field, op, v)):
                failures.append(f"{field} {op} {v}")
    assert failures == []
    assert copied_somewhere > 100  # the whole-chunk path was exercised


@pytest.mark.parametrize("field", FIELDS)
def test_pushdown_skips_and_copies_what_the_index_proves(capture: Path, field: str) -> None:
    """The bounds are as tight as the index allows: at a chunk's own edges the chunk is
    either skipped or taken whole (no decode), never only 'maybe'."""
    _, infos = _events(capture)
    for info in infos:
        lo, hi = _edges(info, field)
        assert Compare(field, ">=", lo).bounds(info) == (True, True), (field, info)
        assert Compare(field, ">", hi).bounds(info) == (False, False), (field, info)
        assert Compare(field, "<=", hi).bounds(info) == (True, True), (field, info)
        assert Compare(field, "<", lo).bounds(info) == (False, False), (field, info)
        assert Compare(field, ">=", hi + 1).bounds(info)[0] is False
        assert Compare(field, "<=", lo - 1).bounds(info)[0] is False
        assert Compare(field, ">", lo - 1).bounds(info)[1] is True
        assert Compare(field, "<", hi + 1).bounds(info)[1] is True


def test_range_bounds_are_exact_for_small_ranges() -> None:
    """(can, must) from a range [lo, hi] equal brute force over every value in it."""
    for lo in range(0, 5):
        for hi in range(lo, 6):
            for v in range(-1, 8):
                for op, fn in OPS.items():
                    vals = [fn(x, v) for x in range(lo, hi + 1)]
                    assert _range_bounds(lo, hi, op, v) == (any(vals), all(vals)), (lo, hi, op, v)


def test_known_values_push_down_for_pids_layers_and_ops(capture: Path) -> None:
    _, infos = _events(capture)
    listed = [i for i in infos if i.pids is not None]
    assert listed and any(i.pids is None for i in infos)
    for info in listed:
        p = info.pids
        assert p is not None
        gap = next((x for x in range(p[0], p[-1]) if x not in p), None)
        assert Compare("pid", "==", p[0]).bounds(info) == (True, len(p) == 1)
        assert Compare("pid", "!=", p[0]).bounds(info) == (len(p) > 1, False)
        if gap is not None:  # inside the range but not listed: the list rules it out
            assert Compare("pid", "==", gap).bounds(info) == (False, False)


def test_logic_combines_bounds_as_tightly_as_its_parts(capture: Path) -> None:
    """and/or/not of predicates whose bounds are known: 'or' must match when one side must,
    'and' can match only when both can, 'not' swaps and negates."""
    _, infos = _events(capture)
    info = infos[0]
    lo, hi = info.t_first, info.t_last
    always, never, maybe = f"ts >= {lo}", f"ts > {hi}", f"ts > {lo}"
    expect = {
        f"{always} or {never}": (True, True),
        f"{never} or {maybe}": (True, False),
        f"{never} or {never}": (False, False),
        f"{always} and {maybe}": (True, False),
        f"{always} and {never}": (False, False),
        f"{always} and {always}": (True, True),
        f"not ({always})": (False, False),
        f"not ({never})": (True, True),
        f"not ({maybe})": (True, False),
    }
    for text, want in expect.items():
        assert parse(text).root.bounds(info) == want, text
