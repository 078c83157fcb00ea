"""stats: figures equal numpy's on the same events (percentiles within the stated error), the
JSON validates against its schema, several files add up, and filtered captures are right."""

from __future__ import annotations

import errno
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema_mini import validate
from ops_common import make_capture, read_all

import aether_rec
from aether_rec.errors import UsageError
from aether_rec.ops.expr import parse
from aether_rec.ops.filter import filter_capture
from aether_rec.ops.histogram import Histogram
from aether_rec.ops.report import render_stats
from aether_rec.ops.stats import StatsOptions, check_by, compute
from aether_rec.ops.window import select

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((ROOT / "docs" / "stats-json.schema.json").read_text())
QS = {"p50": 50, "p90": 90, "p99": 99, "p99_9": 99.9}


@pytest.fixture(scope="module")
def cap_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_capture(tmp_path_factory.mktemp("stats") / "a.aio", 300_000, seed=3, losses=2)


@pytest.fixture(scope="module")
def data(cap_path: Path) -> dict[str, np.ndarray]:
    return read_all(cap_path)


def _stats(paths: list[Path], **kw: Any) -> dict[str, Any]:
    caps = [aether_rec.open(str(p)) for p in paths]
    try:
        return compute(caps, StatsOptions(**kw))
    finally:
        for c in caps:
            c.close()


def _check_latency(lat: dict[str, Any], x: np.ndarray, rel: float) -> None:
    assert lat["count"] == x.size
    assert lat["min"] == int(x.min()) and lat["max"] == int(x.max())
    for key, q in QS.items():
        want = int(np.percentile(x, q, method="inverted_cdf"))
        assert abs(lat[key] - want) <= rel * want, (key, lat[key], want)


def test_totals_and_percentiles_match_numpy(cap_path: Path, data: dict[str, np.ndarray]) -> None:
    doc = _stats([cap_path])
    assert validate(doc, SCHEMA) == []
    lat = data["lat"]
    assert doc["events"] == lat.size
    assert doc["bytes"] == int(data["bytes"].sum())
    # EAGAIN (non-blocking I/O that would have waited) is not an error, but counted apart
    errors = (data["result"] < 0) & (data["result"] != -errno.EAGAIN)
    assert doc["errors"] == int(np.count_nonzero(errors))
    assert doc["would_block"] == int(np.count_nonzero(data["result"] == -errno.EAGAIN))
    _check_latency(doc["latency"], lat, doc["relative_error"])
    for row in doc["by_layer_op"]:
        from aether_rec.schema import LAYER_CODE, OP_CODE

        sel = (data["layer"] == LAYER_CODE[row["layer"]]) & (data["op"] == OP_CODE[row["op"]])
        assert row["events"] == int(sel.sum())
        assert row["bytes"] == int(data["bytes"][sel].sum())
        _check_latency(row["latency"], lat[sel], doc["relative_error"])
    errs = -data["result"][errors]
    assert {e["errno"]: e["count"] for e in doc["errnos"]} == dict(
        zip(*[a.tolist() for a in np.unique(errs, return_counts=True)])
    )
    # top: the slowest events, slowest first
    want_top = np.sort(lat)[::-1][:10].tolist()
    assert [e["lat"] for e in doc["top"]] == want_top
    # losses surfaced
    with aether_rec.open(str(cap_path)) as cap:
        assert doc["losses"]["total"] == sum(x.count for x in cap.losses()) > 0
    # block queue/service
    blk = data["layer"] == 2
    assert doc["block"]["events"] == int(blk.sum())
    svc = data["lat"][blk] - np.minimum(data["queue"][blk], data["lat"][blk])
    _check_latency(doc["block"]["service"], svc, doc["relative_error"])
    # the layer histograms add up to the whole and give the same percentiles
    total = Histogram()
    for layer in doc["by_layer"]:
        total.merge(Histogram.from_dict(layer["histogram"]))
    assert total.summary() == doc["latency"]
    text = render_stats(doc)
    assert "LOST EVENTS" in text and "usecs" in text and "top 10 slowest" in text


def test_several_files_add_up(tmp_path: Path, cap_path: Path, data: dict[str, np.ndarray]) -> None:
    other = make_capture(tmp_path / "b.aio", 50_000, seed=9)
    doc = _stats([cap_path, other])
    assert validate(doc, SCHEMA) == []
    both = np.concatenate([data["lat"], read_all(other)["lat"]])
    assert doc["events"] == both.size
    _check_latency(doc["latency"], both, doc["relative_error"])
    assert len(doc["inputs"]) == 2


def test_by_and_interval(cap_path: Path, data: dict[str, np.ndarray]) -> None:
    doc = _stats([cap_path], by=["comm", "op"], interval_ns=250_000_000, top=0)
    assert validate(doc, SCHEMA) == []
    rows = doc["groups"]["rows"]
    assert sum(r["events"] for r in rows) == data["lat"].size
    # grouped rows keep layers apart (issue 12: a read syscall and a block read are two things)
    pg_read = [r for r in rows if r["key"] == {"comm": "postgres", "layer": "syscall", "op": "read"}][0]
    sel = (data["comm"] == "postgres") & (data["op"] == 1) & (data["layer"] == 1)
    assert pg_read["events"] == int(sel.sum())
    _check_latency(pg_read["latency"], data["lat"][sel], doc["relative_error"])
    iv = doc["intervals"]["rows"]
    assert sum(r["events"] for r in iv) == data["lat"].size
    assert all(b["start_ns"] - a["start_ns"] == 250_000_000 for a, b in zip(iv, iv[1:]))
    assert doc["top"] == []


def test_max_groups_lumps_the_rest(cap_path: Path, data: dict[str, np.ndarray]) -> None:
    doc = _stats([cap_path], by=["tid"], max_groups=3, top=0)
    rows = doc["groups"]["rows"]
    assert len(rows) == 4
    assert sum(r["events"] for r in rows) == data["lat"].size
    assert doc["groups"]["lumped_events"] > 0


def test_check_by() -> None:
    assert check_by(["Comm", "latency", "comm"]) == ["comm", "lat"]
    with pytest.raises(UsageError, match="unknown column 'nope'"):
        check_by(["nope"])


def test_filtered_stats_equal_numpy(cap_path: Path, data: dict[str, np.ndarray]) -> None:
    doc = _stats([cap_path], where=parse('lat > 1ms and comm == "java"'))
    sel = (data["lat"] > 1_000_000) & (data["comm"] == "java")
    assert doc["events"] == int(sel.sum()) > 0
    _check_latency(doc["latency"], data["lat"][sel], doc["relative_error"])
    assert doc["filter"] == 'lat > 1ms and comm == "java"'


def test_empty_selection(cap_path: Path) -> None:
    doc = _stats([cap_path], where=parse("lat > 100s"))
    assert validate(doc, SCHEMA) == []
    assert doc["events"] == 0 and doc["latency"]["p50"] is None and doc["top"] == []
    assert "no events match the filter" in render_stats(doc)


# -- filter ---------------------------------------------------------------------------------------


def _filter(
    src: Path, dst: Path, exprs: list[str], since: str | None = None, until: str | None = None
) -> Any:
    with aether_rec.open(str(src)) as cap:
        return filter_capture(cap, str(dst), select(cap, exprs, since, until), overwrite=True)


def test_filter_output_is_the_selection(tmp_path: Path, cap_path: Path, data: dict[str, np.ndarray]) -> None:
    out = tmp_path / "f.aio"
    rep = _filter(cap_path, out, ["lat > 2ms and op in (read, write)"], since="+0.5s", until="+1.2s")
    got = read_all(out)
    t0 = int(data["ts"].min())
    sel = (
        (data["lat"] > 2_000_000)
        & np.isin(data["op"], [1, 2])
        & (data["ts"] >= t0 + 500_000_000)
        & (data["ts"] < t0 + 1_200_000_000)
    )
    assert rep.events_out == int(sel.sum()) == got["lat"].size
    for k in ("ts", "lat", "pid", "comm", "path", "op", "layer", "bytes", "result"):
        np.testing.assert_array_equal(got[k], data[k][sel], err_msg=k)
    assert rep.chunks_read < rep.chunks_total  # the window skipped chunks unread
    with aether_rec.open(str(out)) as cap, aether_rec.open(str(cap_path)) as orig:
        h = cap.header
        assert h["hostname"] == orig.header["hostname"]
        assert h["clock"] == orig.header["clock"]
        assert h["derived_from"][0]["capture_id"] == orig.header["capture_id"]
        assert h["capture_id"] != orig.header["capture_id"]
        assert "lat > 2ms" in h["filter"] and h["filter_history"] == [h["filter"]]
        lo, hi = t0 + 500_000_000, t0 + 1_200_000_000
        want_losses = [x for x in orig.losses() if x.t_last >= lo and x.t_first < hi]
        assert [(x.cpu, x.count) for x in cap.losses()] == [(x.cpu, x.count) for x in want_losses]
        assert cap.meta("procs") == orig.meta("procs")


def test_filter_wallclock_window(tmp_path: Path, cap_path: Path, data: dict[str, np.ndarray]) -> None:
    # the synthetic capture maps its first instant to 2026-01-01T00:00:00Z
    out = tmp_path / "w.aio"
    _filter(cap_path, out, [], since="2026-01-01T00:00:00.5Z", until="2026-01-01T00:00:01Z")
    got = read_all(out)
    with aether_rec.open(str(cap_path)) as cap:
        real = cap.mono_to_real(data["ts"].astype(np.int64))
    base = 1_767_225_600_000_000_000
    sel = (real >= base + 500_000_000) & (real < base + 1_000_000_000)
    assert got["ts"].size == int(sel.sum()) > 0


FILTER_ATOMS = [
    "lat > 1ms",
    "lat <= 300us",
    'comm == "postgres"',
    'comm != "j*"',
    "op in (read, pread)",
    "layer == block",
    "pid != 2201",
    "bytes >= 64K",
    "result < 0",
    "not (cpu == 1)",
]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(FILTER_ATOMS), st.sampled_from(FILTER_ATOMS))
def test_filter_a_then_b_equals_a_and_b(tmp_path: Path, a: str, b: str) -> None:
    src = tmp_path / "src.aio"
    if not src.exists():
        make_capture(src, 40_000, seed=5)
    _filter(src, tmp_path / "a.aio", [a])
    _filter(tmp_path / "a.aio", tmp_path / "ab.aio", [b])
    _filter(src, tmp_path / "both.aio", [f"({a}) and ({b})"])
    x, y = read_all(tmp_path / "ab.aio"), read_all(tmp_path / "both.aio")
    assert set(x) == set(y)
    for k in x:
        np.testing.assert_array_equal(x[k], y[k], err_msg=k)
    with aether_rec.open(str(tmp_path / "ab.aio")) as cap:
        assert cap.header["filter_history"] == [a, b]


# -- each chunk counted on a helper thread, merged in file order == one pass -----------------------


def _one_pass(path: str, opts: StatsOptions, expr: list[str]) -> dict[str, Any]:
    """The stats document of one serial pass: every selected chunk added to one accumulator by
    ``add_chunk`` (as before compute() counted chunks on its helper threads)."""
    from aether_rec.ops import stats as stm
    from aether_rec.ops.window import source_name

    with aether_rec.open(path) as cap:
        sel = select(cap, expr)
        opts.where, opts.by = sel.where, stm.grouping(opts.by)
        inp = stm._Input(0, cap, cap.chunk_infos(), bool(cap.clock_map()), source_name(cap), cap.clock_map())
        acc = stm.new_acc(opts)
        for chunk in sel.chunks(cap):
            stm.add_chunk(acc, inp, chunk, inp.has_clock)
        return stm._document(acc, [inp], inp.has_clock)


@pytest.mark.parametrize("by,top,all_fds,expr", [
    ([], 0, True, []),
    (["layer", "op"], 10, True, []),
    (["layer"], 3, False, []),
    (["comm", "op"], 7, False, ["lat > 20us"]),
    (["path"], 5, True, ["op in (read, write, pread)"]),
])
@pytest.mark.parametrize("capture", ["fixtures/truth.aio", "fixtures/mixed.aio", "synthetic"])
def test_chunks_counted_apart_and_merged_equal_one_pass(
    tmp_path: Path, capture: str, by: list[str], top: int, all_fds: bool, expr: list[str]
) -> None:
    if capture == "synthetic":  # many small chunks: many merges, groups appearing late
        path = str(make_capture(tmp_path / "s.aio", 40_000, seed=11, chunk_events=1500, batch=1500))
    else:
        path = str(ROOT / capture)
    with aether_rec.open(path) as cap:
        sel = select(cap, expr)
        got = compute([cap], StatsOptions(by=list(by), top=top, all_fds=all_fds, where=sel.where))
    want = _one_pass(path, StatsOptions(by=list(by), top=top, all_fds=all_fds), expr)
    assert got["events"] > 0
    assert json.dumps(got, sort_keys=True, default=str) == json.dumps(want, sort_keys=True, default=str)
