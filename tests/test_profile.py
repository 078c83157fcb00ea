"""The binned profile (ops/profile.py) and heatmaps (ops/heatmap.py) against numpy over the
raw events, and heatmap cells against the `filter` command selecting them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from ops_common import make_capture, make_undecodable, read_all

import aether_rec
from aether_rec.cli import main
from aether_rec.format.writer import CaptureWriter
from aether_rec.ops import heatmap as hm
from aether_rec.ops.histogram import DEFAULT_PRECISION, Histogram, bucket_index, relative_error
from aether_rec.ops.profile import COLUMN_PRECISION, _Values, collect, nice_width, plan_columns
from aether_rec.ops.window import select

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def _write_mixed_dicts(path: Path, seed: int = 3) -> Path:
    """Chunks whose string dictionaries differ (new names appear later, codes reshuffled)."""
    rng = np.random.default_rng(seed)
    with CaptureWriter(str(path), {"hostname": "h"}, chunk_events=700, overwrite=True) as w:
        t = 10_000_000_000
        for k in range(6):
            n = 700
            names = np.array([f"proc{(k + j) % 9}" for j in range(5)], dtype=object)
            paths = np.array([f"/d/{j}" for j in range(k + 2)], dtype=object)
            ts = t + np.sort(rng.integers(0, 50_000_000, n)).astype(np.uint64)
            t = int(ts[-1]) + 1
            w.write_events({
                "ts": ts,
                "lat": rng.lognormal(10, 2, n).astype(np.uint64),
                "layer": rng.choice([1, 2], n).astype(np.uint8),
                "op": rng.choice([1, 2, 3, 11], n).astype(np.uint8),
                "bytes": rng.choice([512, 4096], n).astype(np.uint64),
                "result": rng.choice([-5, 0, 4096], n).astype(np.int64),
                "dev": rng.choice([0, (8 << 20) | 1, (259 << 20) | 3, 65536 + 5, 5], n).astype(np.uint32),
                "pid": rng.integers(1, 50, n).astype(np.uint32),
                "comm": names[rng.integers(0, len(names), n)],
                "path": paths[rng.integers(0, len(paths), n)],
            })
    return path


@pytest.fixture(scope="module")
def mixed_dicts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_mixed_dicts(tmp_path_factory.mktemp("prof") / "dicts.aio")


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_capture(tmp_path_factory.mktemp("prof") / "synth.aio", 60_000, seed=5, chunk_events=7000)


def _profile(path: Path, exprs: list[str] | None = None, **kw: object):
    with aether_rec.open(str(path)) as cap:
        return collect(cap, select(cap, exprs or []), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("which", ["mixed_dicts", "synth", "fixture"])
def test_profile_matches_numpy(which: str, request: pytest.FixtureRequest) -> None:
    path = FIXTURES / "mixed.aio" if which == "fixture" else request.getfixturevalue(which)
    p = _profile(path)
    d = read_all(path)
    assert p.events == d["ts"].size
    key = d["layer"].astype(np.int64) << 8 | d["op"]
    for k in np.unique(key).tolist():
        m = key == k
        h = p.layer_op[k]
        assert h.total == int(m.sum())
        assert h.min == int(d["lat"][m].min()) and h.max == int(d["lat"][m].max())
        assert h.sum == int(d["lat"][m].sum())
        assert p.layer_op_bytes[k] == int(d["bytes"][m].sum())
        assert p.layer_op_errors[k] == int((d["result"][m] < 0).sum())
        for q in (50, 99):
            exact = float(np.percentile(d["lat"][m], q, method="inverted_cdf"))
            assert abs(h.percentile(q) - exact) <= exact * relative_error() + 1
    assert set(p.layer_op) == set(np.unique(key).tolist())
    # per time column and layer: counts, bytes, errors, max
    col = (d["ts"].astype(np.int64) - p.t0) // p.width
    assert col.min() >= 0 and col.max() < p.ncols
    for lay in np.unique(d["layer"]).tolist():
        m = d["layer"] == lay
        counts = np.bincount(col[m], minlength=p.ncols)
        got = np.array([h.total for h in p.column_hists(lay)])
        assert (got == counts).all()
        want_bytes = np.bincount(col[m], weights=d["bytes"][m], minlength=p.ncols)
        assert np.allclose(p.layer_col_bytes[lay], want_bytes)
        errs = np.bincount(col[m & (d["result"] < 0)], minlength=p.ncols)
        assert (p.layer_col_errors[lay] == errs).all()
        c = int(np.argmax(counts))
        assert p.column_hists(lay)[c].max == int(d["lat"][m & (col == c)].max())
        assert p.column_hists(lay)[c].precision == COLUMN_PRECISION
    # tables: per comm and per path (strings decoded from each chunk's own dictionary)
    with aether_rec.open(str(path)) as cap:
        comm = np.concatenate([c.strings("comm") for c in cap.chunks()])
        paths = np.concatenate([c.strings("path") for c in cap.chunks()])
    for name, values in (("comm", comm), ("path", paths)):
        want = {str(v): int(n) for v, n in zip(*np.unique(values.astype(str), return_counts=True))}
        got = {k[0]: h.total for k, h, _, _ in p.tables[name].rows()}
        assert got == want, name
    devs = {int(v): int(n) for v, n in zip(*np.unique(d["dev"], return_counts=True))}
    assert {int(k[0]): h.total for k, h, _, _ in p.tables["dev"].rows()} == devs
    # the slowest I/Os, in order, each with its own fields (their columns are not decoded
    # with the others: they come from the chunk's body, row by row)
    top = np.sort(d["lat"])[::-1][: len(p.top)]
    assert [r["lat"] for r in p.top] == top.tolist()
    _check_top_rows(p.top, d)


def _check_top_rows(rows: list[dict[str, Any]], d: dict[str, np.ndarray]) -> None:
    assert rows
    for r in rows:
        (i,) = np.flatnonzero((d["lat"] == r["lat"]) & (d["ts"] == r["ts"]))
        for name in ("pid", "tid", "offset", "bytes", "result", "comm", "path"):
            if name in d:  # a capture may lack a column (written without it)
                assert r[name] == d[name][i], (name, r)


def test_slowest_rows_in_a_time_window(synth: Path) -> None:
    """A window cuts chunks (their events are taken in part): the slowest rows of the window
    still carry their own fields."""
    d = read_all(synth)
    ts = d["ts"].astype(np.int64)
    t_lo, t_hi = int(np.quantile(ts, 0.31)), int(np.quantile(ts, 0.34))
    with aether_rec.open(str(synth)) as cap:
        t0 = int(ts.min())
        sel = select(cap, [], since=f"+{(t_lo - t0) / 1e9}s", until=f"+{(t_hi - t0) / 1e9}s")
        p = collect(cap, sel, top=7)
    keep = (ts >= sel.t_min) & (ts < sel.t_max)
    assert 0 < p.events == int(keep.sum()) < ts.size
    w = {k: v[keep] for k, v in d.items()}
    assert [r["lat"] for r in p.top] == np.sort(w["lat"])[::-1][:7].tolist()
    _check_top_rows(p.top, w)


def test_profile_respects_the_selection(synth: Path) -> None:
    p = _profile(synth, ["lat > 100us and comm == \"postgres\""])
    with aether_rec.open(str(synth)) as cap:
        n = sum(int(((c.column("lat") > 100_000) & (c.strings("comm") == "postgres")).sum())
                for c in cap.chunks())
    assert p.events == n > 0
    assert [k[0] for k, *_ in p.tables["comm"].rows()] == ["postgres"]
    assert p.where_text and "postgres" in p.where_text


def test_by_table_and_lumping(synth: Path) -> None:
    p = _profile(synth, by=["layer", "comm"])
    d = read_all(synth)
    assert p.by is not None
    rows = {k: h.total for k, h, _, _ in p.by.rows()}
    assert sum(rows.values()) == d["ts"].size
    assert all(len(k) == 2 for k in rows)
    # a derived column, with only the needed columns decoded
    p = _profile(synth, by=["errno", "cpu"], tables=())
    assert p.by is not None
    got = {}
    for k, h, _, _ in p.by.rows():
        got[k[0]] = got.get(k[0], 0) + h.total
    errno = np.where(d["result"] < 0, -d["result"], 0)
    assert got == {int(v): int(n) for v, n in zip(*np.unique(errno, return_counts=True))}
    assert p.tables == {}


def test_values_ids_survive_hash_collisions() -> None:
    v = _Values()
    a = v.ids(np.array([1, 5, 1], dtype=np.uint32))
    # 0x10000 hashes like 1 (bits folded in 16-bit pieces): the binary-search path takes over
    b = v.ids(np.array([0x10000, 1, 5, 0x10000], dtype=np.uint32))
    assert v.collided
    vals = v.values
    assert [vals[i] for i in a] == [1, 5, 1]
    assert [vals[i] for i in b] == [0x10000, 1, 5, 0x10000]
    c = v.ids(np.array([7, 0x10000], dtype=np.uint32))
    assert [vals[i] for i in c] == [7, 0x10000]
    # 8-byte values above 2**63 and signed narrow ones keep their identity
    w = _Values()
    big = np.array([2**64 - 1, 2**64 - 2, 5, 2**64 - 1], dtype=np.uint64)
    assert [w.values[i] for i in w.ids(big)] == [2**64 - 1, 2**64 - 2, 5, 2**64 - 1]
    s = _Values()
    assert [s.values[i] for i in s.ids(np.array([-1, 3, -1], dtype=np.int16))] == [-1, 3, -1]


def test_nice_width_and_plan() -> None:
    assert nice_width(1000, 10) == 100
    assert nice_width(1001, 10) == 200
    assert nice_width(2_271_000_000, 240) == 10_000_000
    assert nice_width(1, 240) == 1
    with aether_rec.open(str(FIXTURES / "mixed.aio")) as cap:
        t0, width, ncols = plan_columns(cap, select(cap, []), 240)
        last = max(i.t_last for i in cap.chunk_infos())
    assert ncols <= 240 and t0 + ncols * width > last >= t0 + (ncols - 1) * width


# -- heatmap ------------------------------------------------------------------------------------


def test_rows_hold_everything_and_align_with_buckets() -> None:
    rng = np.random.default_rng(1)
    h = Histogram()
    vals = np.concatenate([rng.lognormal(11, 0.5, 5000), [3, 10**10]]).astype(np.uint64)
    h.add(vals)
    rows = hm.choose_rows(h)
    assert rows.n <= hm.MAX_ROWS + 2
    counts = hm.hist_rows(h, rows)
    want = np.bincount(rows.index(vals.astype(np.float64)), minlength=rows.n)
    assert (counts == want).all()
    assert counts[0] >= 1 and counts[-1] >= 1  # the outliers land in the under/overflow rows
    # at the column precision too (edges are bucket edges there as well)
    h6 = Histogram(COLUMN_PRECISION)
    h6.add(vals)
    assert (hm.hist_rows(h6, rows) == want).all()


def test_heatmap_cells_match_events_and_filter(tmp_path: Path) -> None:
    path = FIXTURES / "mixed.aio"
    p = _profile(path)
    d = read_all(path)
    runner = CliRunner()
    for lay in p.layers:
        rows = hm.choose_rows(p.layer_hist(lay))
        ht = hm.heat(p, lay, rows)
        m = d["layer"] == lay
        c = (d["ts"][m].astype(np.int64) - p.t0) // p.width
        r = np.searchsorted(np.array(rows.edges), d["lat"][m], side="right")
        want = np.zeros_like(ht.counts)
        np.add.at(want, (c, r), 1)
        assert (want == ht.counts).all()
        # the busiest cell, extracted with its filter expression, holds exactly its I/Os
        cc, rr = np.unravel_index(int(np.argmax(ht.counts)), ht.counts.shape)
        expr = hm.cell_expression(p, lay, rows, int(cc), int(rr))
        out = tmp_path / f"cell{lay}.aio"
        res = runner.invoke(main, ["filter", str(path), "-o", str(out), expr])
        assert res.exit_code == 0, res.output
        assert read_all(out)["ts"].size == ht.counts[cc, rr] > 0


def _reference_hist(lats: list[int], precision: int) -> Histogram:
    """A histogram the slow way: one value at a time, latencies of 2**44 ns and more counted in
    the last bucket (as the profile's dense histograms do), min/max/sum exact."""
    h = Histogram(precision)
    cap = int(bucket_index(np.array([1 << 44], dtype=np.uint64), precision)[0])
    for v in lats:
        idx = min(int(bucket_index(np.array([v], dtype=np.uint64), precision)[0]), cap)
        h.add_indexed(np.array([idx]), np.array([v], dtype=np.uint64))
    return h


def test_binning_equals_a_per_event_reference(tmp_path: Path) -> None:
    """The chunk-at-a-time binning (shared float conversion, joint key over chunk codes, time
    column by integer division) against one event at a time in plain Python, on random events
    with the edges: latency 0 and other values below 2**7, 2**44 ns and beyond (the last bucket),
    and start times on, just before and just after column edges."""
    rng = np.random.default_rng(11)
    t0, width, ncols = 5_000_000_000, 1_000, 40
    edges = t0 + width * np.arange(ncols, dtype=np.int64)
    n_rand = 6_000
    ts = np.concatenate([edges, edges[1:] - 1, edges + 1, [t0 + width * ncols - 1],
                         t0 + rng.integers(0, width * ncols, n_rand)])
    n = ts.size
    order = np.argsort(ts, kind="stable")
    lat = rng.lognormal(9, 3, n).astype(np.uint64)
    lat[lat >= 1 << 44] = 1 << 40
    special = [0, 1, 2, 63, 64, 127, 128, 255, 256, (1 << 44) - 1, 1 << 44]
    lat[rng.choice(n, len(special) * 20, replace=False)] = np.repeat(np.array(special, dtype=np.uint64), 20)
    lat[order[[1_000, 4_000]]] = [(1 << 47) + 3, (3 << 43) + 12_345]  # chunks 0 and 2 (chunk sums stay
    # below 2**53: exact in float64, as documented)
    comms = np.array([f"c{i}" for i in range(7)], dtype=object)
    paths = np.array(["", "/a", "/b/c", "/d"], dtype=object)
    ev = {
        "ts": ts[order].astype(np.uint64),
        "lat": lat[order],
        "layer": rng.choice([1, 2, 3], n).astype(np.uint8),
        "op": rng.choice([1, 2, 3, 11, 33], n).astype(np.uint8),
        "bytes": rng.choice([0, 512, 4096], n).astype(np.uint64),
        "result": rng.choice([-5, 0, 4096], n).astype(np.int64),
        "dev": rng.choice([0, (8 << 20) | 1, (259 << 20) | 3, 0x10000, 1], n).astype(np.uint32),
        "comm": comms[rng.integers(0, len(comms), n)],
        "path": paths[rng.integers(0, len(paths), n)],
    }
    path = tmp_path / "edges.aio"
    with CaptureWriter(str(path), {"hostname": "h"}, chunk_events=1_500, overwrite=True) as w:
        w.write_events(ev)
    p = _profile(path, max_columns=ncols, top=5)
    assert (p.t0, p.width, p.ncols) == (t0, width, ncols)
    want: dict[tuple[str, Any], list[int]] = {}
    for i in range(n):
        v, lay = int(ev["lat"][i]), int(ev["layer"][i])
        col = (int(ev["ts"][i]) - t0) // width
        for key in (("col", (lay, col)), ("lo", lay << 8 | int(ev["op"][i])), ("comm", str(ev["comm"][i])),
                    ("path", str(ev["path"][i])), ("dev", int(ev["dev"][i]))):
            want.setdefault(key, []).append(v)
    for (kind, key), lats in want.items():
        if kind == "col":
            got = p.column_hists(key[0])[key[1]]
        elif kind == "lo":
            got = p.layer_op[key]
        else:
            (got,) = [h for k, h, _, _ in p.tables[kind].rows() if k == (key,)]
        prec = DEFAULT_PRECISION if kind == "lo" else COLUMN_PRECISION
        assert got == _reference_hist(lats, prec), (kind, key)
    assert sum(h.total for lay in p.layers for h in p.column_hists(lay)) == n
    assert [r["lat"] for r in p.top] == sorted(ev["lat"].tolist(), reverse=True)[:5]


def test_parallel_decode_keeps_order_and_warns_damaged_chunks(
    synth: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``report`` decodes chunks on two threads (Selection.chunks with workers): the same
    chunks in file order as one thread gives, and an undecodable chunk skipped with its
    warning, in file order (raised with --strict), as the sequential path does."""
    from aether_rec.errors import DamagedCaptureError

    with aether_rec.open(str(synth)) as cap:
        sel = select(cap, ["lat > 20us"])
        one = [c.column("ts").copy() for c in sel.chunks(cap, ordered=False)]
        two = [c.column("ts").copy() for c in sel.chunks(cap, workers=2, ordered=False)]
        infos = cap.chunk_infos()
    assert len(one) == len(two) == len(infos) > 3
    assert all(np.array_equal(a, b) for a, b in zip(one, two))
    bad = {infos[1].offset, infos[3].offset}
    make_undecodable(monkeypatch, bad)
    with aether_rec.open(str(synth)) as cap:
        p = collect(cap, select(cap, []))
        assert p.events == sum(i.n for i in infos if i.offset not in bad)
        assert [w.split(": ", 1)[1] for w in p.warnings] == [
            f"chunk at offset {o}: column 'lat' runs past the chunk body; skipped it" for o in sorted(bad)]
    with aether_rec.open(str(synth), strict=True) as cap:
        with pytest.raises(DamagedCaptureError, match="skipped it"):
            collect(cap, select(cap, []))


def _same_profile(a: Any, b: Any) -> None:
    assert a.events == b.events and a.first_ts == b.first_ts and a.last_end == b.last_end
    assert a.layer_cols.keys() == b.layer_cols.keys()
    for lay in a.layer_cols:
        assert a.layer_cols[lay] == b.layer_cols[lay], lay
        assert (a.layer_col_bytes[lay] == b.layer_col_bytes[lay]).all()
        assert (a.layer_col_errors[lay] == b.layer_col_errors[lay]).all()
    assert a.layer_op == b.layer_op
    assert a.layer_op_bytes == b.layer_op_bytes and a.layer_op_errors == b.layer_op_errors
    def rows(t: Any) -> dict[Any, Any]:
        return {k: (h, nb, ne) for k, h, nb, ne in t.rows()}

    for name in a.tables:
        assert rows(a.tables[name]) == rows(b.tables[name]), name
    assert a.by is not None and b.by is not None and rows(a.by) == rows(b.by)
    assert [(r["lat"], r["ts"], r["pid"]) for r in a.top] == [(r["lat"], r["ts"], r["pid"]) for r in b.top]


@pytest.mark.parametrize("which", ["mixed_dicts", "synth"])
def test_collectors_merge_to_one_pass(which: str, request: pytest.FixtureRequest) -> None:
    """collect() bins on two threads, a collector each, and merges them: the chunks split
    between two collectors (alternately, so their numeric ids differ) and merged give what
    one collector gives over every chunk."""
    from aether_rec.ops import profile as P

    path = request.getfixturevalue(which)
    with aether_rec.open(str(path)) as cap:
        sel = select(cap, [])
        plan = P.plan_columns(cap, sel)
        chunks = list(cap.chunks())
        assert len(chunks) >= 4

        def collector(strings: Any = None) -> Any:
            prof = P._new_profile(cap, sel, "x", plan, None)
            return P._Collector(prof, 5, ["comm", "op"], P.TABLES, strings)

        one = collector()
        for c in chunks:
            one.add(c)
        one.finish()
        a = collector()
        b = collector(a.strings)
        for i, c in enumerate(reversed(chunks)):
            (a if i % 2 else b).add(c)
        a.finish()
        b.finish()
        P._merge(a.p, b.p, 5)
    _same_profile(a.p, one.p)
