"""replay (formats, pacing from a fixed start, --follow) and export (jsonl, csv, perfetto with its
size cap, parquet or its clear 'install pyarrow' error)."""

from __future__ import annotations

import builtins
import csv
import io
import json
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from ops_common import make_capture, read_all

import aether_rec
from aether_rec.cli import main
from aether_rec.errors import UsageError
from aether_rec.format.records import Loss
from aether_rec.format.synth import generate
from aether_rec.format.writer import CaptureWriter
from aether_rec.ops.export import MissingDependencyError, export_parquet, export_perfetto
from aether_rec.ops.expr import MATCH_ALL
from aether_rec.ops.replay import follow, replay
from aether_rec.ops.window import select


@pytest.fixture(scope="module")
def cap_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_capture(tmp_path_factory.mktemp("rx") / "a.aio", 30_000, seed=8, losses=2, chunk_events=8_000)


def cli(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


# -- replay ---------------------------------------------------------------------------------------


def test_replay_formats_agree(cap_path: Path) -> None:
    data = read_all(cap_path)
    sel = data["lat"] > 2_000_000
    r = cli("replay", str(cap_path), "lat > 2ms", "--format", "jsonl")
    recs = [json.loads(x) for x in r.stdout.splitlines()]
    assert [x["ts"] for x in recs] == data["ts"][sel].tolist()
    assert [x["comm"] for x in recs] == data["comm"][sel].tolist()
    assert all(x["time"].endswith("Z") for x in recs)
    r = cli("replay", str(cap_path), "lat > 2ms", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert [int(x["lat"]) for x in rows] == data["lat"][sel].tolist()
    r = cli("replay", str(cap_path), "--min-latency", "2ms")
    lines = r.stdout.splitlines()
    assert lines[0].startswith("TIME(UTC)")
    events = [x for x in lines[1:] if not x.startswith("#")]
    assert len(events) == int(sel.sum())
    with aether_rec.open(str(cap_path)) as cap:
        n_losses = len(cap.losses())
    assert n_losses > 0
    assert sum(1 for x in lines if x.startswith("# LOST")) == n_losses


def test_replay_rows_in_slices_keep_losses_in_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows are built and written a slice at a time: losses land between the same events as
    when a chunk is one slice, and a UTF-8 stream gets the same bytes as a str one."""
    from aether_rec.ops import rows

    gen = make_capture(tmp_path / "g.aio", 3_000, seed=4, chunk_events=700)
    with aether_rec.open(str(gen)) as g:
        parts = list(g.chunks())
        ts = g.to_numpy()["ts"]
    path = tmp_path / "l.aio"
    w = CaptureWriter(str(path), {"hostname": "l", "clock": g.header["clock"]})
    for p in parts:
        w.write_events(p)
    for i, at in enumerate([0, 1, 5, 12, 13, 14, 26, 699, 700, 701, 1500, 2998, 2999]):  # around slices
        t = int(ts[at]) + (i % 3) - 1  # just before, at and just after an event
        w.write_loss(Loss(i % 2, 10 + i, t, t + 5, "ringbuf"))
    w.write_loss(Loss(0, 1, int(ts[-1]) + 100, int(ts[-1]) + 200, "ringbuf"))  # after every event
    w.close()

    def run(fmt: str, out: Any) -> Any:
        with aether_rec.open(str(path)) as cap:
            replay(cap, out, select(cap), fmt=fmt)
        return out

    for fmt in ("text", "jsonl", "csv"):
        monkeypatch.setattr(rows, "SLICE", 10**9)
        whole = run(fmt, io.StringIO()).getvalue()
        monkeypatch.setattr(rows, "SLICE", 13)
        sliced = run(fmt, io.StringIO()).getvalue()
        assert sliced == whole
        if fmt == "text":
            lines = whole.splitlines()
            lost = [i for i, x in enumerate(lines) if x.startswith("# LOST")]
            assert len(lost) == 14 and 1 < lost[3] < lost[-2] < len(lines) - 2  # among the events
        raw = io.BytesIO()
        text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
        text.write("written before\n")  # still in the text layer: must come first
        run(fmt, text).flush()
        assert raw.getvalue() == b"written before\n" + whole.encode()
        raw = io.BytesIO()  # another encoding: through the text layer
        wrapper = run(fmt, io.TextIOWrapper(raw, encoding="utf-16", newline=""))
        wrapper.flush()
        assert raw.getvalue().decode("utf-16") == whole


class _Stamped(io.StringIO):
    """Remembers when each line was written."""

    def __init__(self) -> None:
        super().__init__()
        self.stamps: list[float] = []

    def write(self, s: str) -> int:
        now = time.monotonic()
        self.stamps.extend([now] * s.count("\n"))
        return super().write(s)


def test_replay_pacing_within_tolerance(tmp_path: Path) -> None:
    src = tmp_path / "slow.aio"
    generate(str(src), 300, seed=1, rate=250.0)  # ~1.2 s of events
    speed = 4.0
    with aether_rec.open(str(src)) as cap:
        ts = cap.to_numpy()["ts"].astype(np.int64)
        out = _Stamped()
        t_start = time.monotonic()
        rep = replay(cap, out, select(cap), fmt="jsonl", speed=speed, header=False)
    assert rep.events == 300 == len(out.stamps)
    expected = t_start + (ts - ts[0]) / 1e9 / speed
    late = np.array(out.stamps) - expected
    assert late.min() > -0.005  # never early
    assert late.max() < 0.08, late.max()  # shared 2-core machine: generous, still catches drift
    total = out.stamps[-1] - t_start
    assert abs(total - (ts[-1] - ts[0]) / 1e9 / speed) < 0.08


def test_replay_errors_do_not_add_up(cap_path: Path) -> None:
    """Every sleep overshoots by 3 ms (a fake clock): lateness stays ~3 ms, it does not grow."""
    clock = [100.0]

    def now() -> float:
        return clock[0]

    def sleep(s: float) -> None:
        clock[0] += s + 0.003

    with aether_rec.open(str(cap_path)) as cap:
        sel = select(cap, ["op == fsync"])
        rep = replay(cap, io.StringIO(), sel, fmt="text", speed=1.0, clock=now, sleep=sleep)
    assert rep.events > 100
    assert rep.max_late_s <= 0.0031


def test_replay_bad_speed_and_follow_combinations(cap_path: Path) -> None:
    with aether_rec.open(str(cap_path)) as cap, pytest.raises(UsageError, match="--speed"):
        replay(cap, io.StringIO(), select(cap), speed=-1)
    r = CliRunner().invoke(main, ["replay", str(cap_path), "--follow", "--speed", "2"])
    assert r.exit_code == 2 and "--speed cannot be combined with --follow" in r.stderr


def test_follow_a_growing_capture(tmp_path: Path) -> None:
    path = tmp_path / "live.aio"
    gen = tmp_path / "gen.aio"
    generate(str(gen), 5_000, seed=3)
    with aether_rec.open(str(gen)) as g:
        parts = list(g.chunks())
    batches = [p.take(slice(i, min(i + 1000, p.n))) for p in parts for i in range(0, p.n, 1000)]
    w = CaptureWriter(str(path), {"hostname": "live", "clock": g.header["clock"]})

    def recorder() -> None:
        for b in batches:
            w.write_events(b)
            w.flush()
            time.sleep(0.02)
        w.write_loss(Loss(0, 7, 1, 2, "ringbuf"))
        w.close()

    t = threading.Thread(target=recorder)
    t.start()
    out = io.StringIO()
    try:
        with aether_rec.open(str(path)) as cap:
            deadline = time.monotonic() + 20
            rep = follow(
                cap, out, MATCH_ALL, fmt="jsonl", poll=0.01, stop=lambda: time.monotonic() > deadline
            )
    finally:
        t.join()
    assert rep.events == 5_000 and rep.losses == 1
    assert [json.loads(x)["ts"] for x in out.getvalue().splitlines()] == read_all(gen)["ts"].tolist()


# -- export ---------------------------------------------------------------------------------------


def test_perfetto_parses_with_the_right_slice_count(tmp_path: Path, cap_path: Path) -> None:
    out = tmp_path / "t.json"
    r = cli("export", str(cap_path), "--format", "perfetto", "-o", str(out), "lat > 100us")
    assert r.exit_code == 0, r.stderr
    doc = json.loads(out.read_text())
    data = read_all(cap_path)
    sel = data["lat"] > 100_000
    ph = Counter(e["ph"] for e in doc["traceEvents"])
    n_block = int((sel & (data["layer"] == 2)).sum())
    assert ph["X"] == int(sel.sum()) - n_block
    assert ph["b"] == ph["e"] == n_block
    assert ph["X"] + ph["b"] == int(sel.sum())
    with aether_rec.open(str(cap_path)) as cap:
        assert ph["i"] == len(cap.losses()) > 0  # the loss records
    names = {e["args"]["name"] for e in doc["traceEvents"] if e["ph"] == "M" and e["name"] == "process_name"}
    assert "postgres (2201)" in names
    x = [e for e in doc["traceEvents"] if e["ph"] == "X"]
    assert all(e["dur"] >= 0 and e["ts"] >= 0 for e in x)
    first = x[0]
    i = int(np.flatnonzero(sel & (data["layer"] != 2))[0])
    assert first["dur"] == round(int(data["lat"][i]) / 1000, 3)
    assert doc["otherData"]["start"].startswith("2026-01-01T00:00:00")


def test_perfetto_size_cap(tmp_path: Path, cap_path: Path) -> None:
    out = tmp_path / "big.json"
    r = CliRunner().invoke(
        main, ["export", str(cap_path), "--format", "perfetto", "-o", str(out), "--max-events", "1000"]
    )
    assert r.exit_code == 2 and "--sample" in r.stderr and "30,000 events" in r.stderr
    assert not out.exists()
    r = cli(
        "export", str(cap_path), "--format", "perfetto", "-o", str(out), "--max-events", "1000", "--sample"
    )
    assert r.exit_code == 0 and "every 30th" in r.stderr
    doc = json.loads(out.read_text())
    ph = Counter(e["ph"] for e in doc["traceEvents"])
    assert ph["X"] + ph["b"] == 1000 and doc["otherData"]["sampled_every"] == 30


def test_perfetto_to_a_stream(cap_path: Path) -> None:
    with aether_rec.open(str(cap_path)) as cap:
        buf = io.StringIO()
        rep = export_perfetto(cap, buf, select(cap, ["pid == 2201"], "+0.01s", "+0.02s"))
    doc = json.loads(buf.getvalue())
    assert rep.slices == sum(1 for e in doc["traceEvents"] if e["ph"] in ("X", "b"))
    assert {e["pid"] for e in doc["traceEvents"] if e["ph"] in ("X", "b")} == {2201}


def test_export_jsonl_and_csv(tmp_path: Path, cap_path: Path) -> None:
    data = read_all(cap_path)
    r = cli("export", str(cap_path), "--format", "csv", "layer == block")
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    blk = data["layer"] == 2
    assert len(rows) == int(blk.sum())
    assert [int(x["offset"]) for x in rows] == data["offset"][blk].tolist()
    assert [x["path"] for x in rows] == data["path"][blk].tolist()
    out = tmp_path / "e.jsonl"
    r = cli("export", str(cap_path), "--format", "jsonl", "-o", str(out))
    assert r.stdout == "" and "exported 30,000 events" in r.stderr
    assert sum(1 for _ in out.open()) == 30_000
    r = CliRunner().invoke(main, ["export", str(cap_path), "--format", "jsonl", "-o", str(out)])
    assert r.exit_code == 1 and "already exists" in r.stderr


def test_parquet_without_pyarrow_says_how_to_install(
    tmp_path: Path, cap_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_import = builtins.__import__

    def no_pyarrow(name: str, *a: Any, **kw: Any) -> Any:
        if name == "pyarrow" or name.startswith("pyarrow."):
            raise ImportError("No module named 'pyarrow'")
        return real_import(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_pyarrow)
    with aether_rec.open(str(cap_path)) as cap, pytest.raises(MissingDependencyError, match="pip install"):
        export_parquet(cap, str(tmp_path / "x.parquet"), select(cap))
    r = CliRunner().invoke(
        main, ["export", str(cap_path), "--format", "parquet", "-o", str(tmp_path / "y.parquet")]
    )
    assert r.exit_code == 1 and "needs pyarrow" in r.stderr and r.stderr.count("\n") == 1
    assert not (tmp_path / "y.parquet").exists()
    r = CliRunner().invoke(main, ["export", str(cap_path), "--format", "parquet"])
    assert r.exit_code == 2 and "-o FILE.parquet" in r.stderr


def test_parquet_roundtrip(tmp_path: Path, cap_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "a.parquet"
    with aether_rec.open(str(cap_path)) as cap:
        export_parquet(cap, str(out), select(cap))
    table = pq.read_table(str(out))
    data = read_all(cap_path)
    assert table.num_rows == 30_000
    assert table.column("lat").to_numpy().tolist() == data["lat"].tolist()
    assert table.column("comm").to_pylist() == data["comm"].tolist()
    assert set(table.column("op_name").to_pylist()) >= {"read", "write"}


def test_parquet_every_column_as_the_capture_holds_it(tmp_path: Path, cap_path: Path) -> None:
    """Names, Arrow types and values of every column (the types of the export before the
    writer was tuned for speed), non-nullable, statistics on the time columns only, and the
    codec asked for."""
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    from aether_rec.schema import COLUMNS, LAYERS, OPS

    data = read_all(cap_path)
    for comp, codec in (("lz4", "LZ4"), ("zstd", "ZSTD"), ("none", "UNCOMPRESSED")):
        out = tmp_path / f"{comp}.parquet"
        with aether_rec.open(str(cap_path)) as cap:
            rep = export_parquet(cap, str(out), select(cap), compression=comp)
            real = cap.mono_to_real(data["ts"])
        assert rep.events == 30_000
        f = pq.ParquetFile(str(out))
        assert f.metadata.num_row_groups == 4  # one per chunk of 8,000 events
        rg = f.metadata.row_group(0)
        for i in range(rg.num_columns):
            col = rg.column(i)
            assert col.compression == codec
            assert col.is_stats_set == (col.path_in_schema in ("time", "ts")), col.path_in_schema
        table = f.read()
        dict_str = pa.dictionary(pa.int32(), pa.string())
        want = [("time", pa.timestamp("ns", tz="UTC"))]
        want += [(c.name, dict_str if c.is_str else pa.from_numpy_dtype(c.dtype)) for c in COLUMNS]
        want += [("layer_name", dict_str), ("op_name", dict_str)]
        assert [(fl.name, fl.type) for fl in table.schema] == want
        assert not any(fl.nullable for fl in table.schema)
        assert table.column("time").cast(pa.int64()).to_numpy().tolist() == real.tolist()
        for c in COLUMNS:  # a column the capture lacks reads as its default
            got = table.column(c.name)
            held = data.get(c.name, np.full(30_000, c.default, dtype=object if c.is_str else c.dtype))
            if c.is_str:
                assert got.to_pylist() == held.tolist(), c.name
            else:
                assert got.to_numpy().tolist() == held.tolist(), c.name
        assert table.column("layer_name").to_pylist() == [LAYERS[x] for x in data["layer"].tolist()]
        assert table.column("op_name").to_pylist() == [OPS[x] for x in data["op"].tolist()]


def test_parquet_read_by_duckdb(tmp_path: Path, cap_path: Path) -> None:
    """What bench_offline's peer query reads: names, counts and latencies per layer and op."""
    pytest.importorskip("pyarrow")
    duckdb = pytest.importorskip("duckdb")
    out = tmp_path / "d.parquet"
    with aether_rec.open(str(cap_path)) as cap:
        export_parquet(cap, str(out), select(cap))
    data = read_all(cap_path)
    rows = duckdb.connect().execute(
        "SELECT layer_name, op_name, count(*), sum(lat), max(lat) FROM read_parquet(?) "
        "GROUP BY ALL ORDER BY ALL",
        [str(out)]).fetchall()
    from aether_rec.schema import LAYERS, OPS

    want = Counter()
    for layer, op, lat in zip(data["layer"].tolist(), data["op"].tolist(), data["lat"].tolist()):
        key = (LAYERS[layer], OPS[op])
        n, s, m = want.get(key, (0, 0, 0))
        want[key] = (n + 1, s + lat, max(m, lat))
    assert [(a, b, n, int(s), m) for a, b, n, s, m in rows] == sorted((k + v for k, v in want.items()))


def test_parquet_writer_failure_is_raised_not_hung(tmp_path: Path, cap_path: Path) -> None:
    pytest.importorskip("pyarrow")
    with aether_rec.open(str(cap_path)) as cap, pytest.raises(OSError):
        export_parquet(cap, str(tmp_path / "no" / "such" / "dir.parquet"), select(cap))
    r = cli("export", str(cap_path), "--format", "parquet", "--compression", "zstd",
            "-o", str(tmp_path / "z.parquet"))
    assert r.exit_code == 0
    pq = pytest.importorskip("pyarrow.parquet")
    assert pq.ParquetFile(str(tmp_path / "z.parquet")).metadata.row_group(0).column(1).compression == "ZSTD"
