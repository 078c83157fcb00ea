"""Arrow access, the push-down dataset and `aether-rec sql` (DuckDB)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner
from ops_common import make_capture

import aether_rec
from aether_rec.cli import main
from aether_rec.ops import sql as sql_ops
from aether_rec.ops.dataset import CaptureDataset

N = 60_000


@pytest.fixture(scope="module")
def caps(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    d = tmp_path_factory.mktemp("sql")
    return [
        make_capture(d / "a.aio", N, seed=1, chunk_events=2000, losses=3),
        make_capture(d / "b.aio", N // 2, seed=2, chunk_events=2000, header={"hostname": "db2"}),
    ]


def _truth(paths: list[Path]) -> dict[str, np.ndarray]:
    parts: dict[str, list[np.ndarray]] = {}
    for k, p in enumerate(paths):
        with aether_rec.open(str(p)) as cap:
            cols = cap.to_numpy()
            cols["time"] = np.asarray(cap.mono_to_real(cols["ts"]), dtype=np.int64)
            cols["capture"] = np.full(len(cols["ts"]), k)
        for name, arr in cols.items():
            parts.setdefault(name, []).append(arr)
    return {k: np.concatenate(v) for k, v in parts.items()}


def test_to_arrow_matches_numpy(caps: list[Path]) -> None:
    with aether_rec.open(str(caps[0])) as cap:
        table = cap.to_arrow()
        cols = cap.to_numpy()
        real = np.asarray(cap.mono_to_real(cols["ts"]), dtype=np.int64)
    assert table.num_rows == N
    assert pa.types.is_dictionary(table.schema.field("comm").type)
    assert pa.types.is_dictionary(table.schema.field("path").type)
    for name in ("ts", "lat", "pid", "tid", "cpu", "layer", "op", "fd", "dev", "offset", "bytes",
                 "result", "queue", "cgroup", "flags"):
        assert np.array_equal(table.column(name).to_numpy(), cols[name]), name
    for name in ("comm", "path"):
        assert table.column(name).to_pylist() == list(cols[name]), name
    assert np.array_equal(table.column("time").cast(pa.int64()).to_numpy(), real)
    layer_names = set(table.column("layer_name").to_pylist())
    assert layer_names == {"syscall", "block"}
    assert set(table.column("source").to_pylist()) == {"vm"}


def test_reader_over_many_captures_with_columns(caps: list[Path]) -> None:
    with CaptureDataset([str(p) for p in caps]) as ds:
        reader = ds.to_reader(["capture", "source", "lat"])
        assert isinstance(reader, pa.RecordBatchReader)
        assert reader.schema.names == ["source", "capture", "lat"]
        table = reader.read_all()
    assert table.num_rows == N + N // 2
    counts = dict(zip(*np.unique(table.column("capture").to_numpy(), return_counts=True)))
    assert counts == {0: N, 1: N // 2}
    assert set(table.column("source").to_pylist()) == {"vm", "db2"}
    with pytest.raises(ValueError, match="unknown column"):
        CaptureDataset([str(caps[0])]).to_table(["nope"])


def _matching_chunk_bytes(path: Path, pred) -> int:  # type: ignore[no-untyped-def]
    """Decompressed bytes of the chunks holding at least one event ``pred`` accepts."""
    total = 0
    with aether_rec.open(str(path)) as cap:
        to_real = lambda ts: np.asarray(cap.mono_to_real(ts), dtype=np.int64)  # noqa: E731
        for chunk in cap.chunks(ordered=False):
            cols = {"lat": chunk.column("lat"), "time": to_real(chunk.column("ts"))}
            if pred(cols).any():
                assert chunk.info is not None
                total += chunk.info.raw
    return total


def test_dataset_filter_pushdown_reads_only_matching_chunks(caps: list[Path]) -> None:
    truth = _truth(caps[:1])
    t0 = int(truth["time"].min())
    lo, hi = t0 + 50_000_000, t0 + 150_000_000
    with CaptureDataset([str(caps[0])]) as ds:
        table = ds.to_table(["lat", "time"], filter="lat > 1us", time_min=lo, time_max=hi)
        st = ds.scan_stats
    want = (truth["lat"] > 1000) & (truth["time"] >= lo) & (truth["time"] <= hi)
    assert table.num_rows == int(want.sum()) > 0
    assert sorted(table.column("lat").to_pylist()) == sorted(truth["lat"][want].tolist())
    need = _matching_chunk_bytes(caps[0], lambda c: (c["lat"] > 1000) & (c["time"] >= lo)
                                 & (c["time"] <= hi))
    assert 0 < st.bytes_decompressed <= 1.2 * need
    assert st.chunks_read < st.chunks_total
    # a rare latency: the index's lat_max skips most chunks
    with CaptureDataset([str(caps[0])]) as ds:
        table = ds.to_table(["lat"], filter="lat > 15ms")
        st = ds.scan_stats
    assert table.num_rows == int((truth["lat"] > 15_000_000).sum())
    assert 0 < st.bytes_decompressed <= 1.2 * _matching_chunk_bytes(caps[0], lambda c: c["lat"] > 15_000_000)


def test_sql_group_by_matches_numpy(caps: list[Path]) -> None:
    truth = _truth(caps)
    res = sql_ops.run("SELECT comm, quantile_cont(lat, 0.99) AS p99, count(*) AS n, sum(bytes) AS b "
                      "FROM events GROUP BY comm ORDER BY comm", [str(p) for p in caps])
    rows = res.table.to_pylist()
    comms = sorted(set(truth["comm"].tolist()))
    assert [r["comm"] for r in rows] == comms
    for r in rows:
        sel = truth["comm"] == r["comm"]
        assert r["n"] == int(sel.sum())
        assert r["b"] == int(truth["bytes"][sel].sum())
        assert r["p99"] == pytest.approx(float(np.quantile(truth["lat"][sel].astype(float), 0.99)))
    assert res.pushdown.columns == ["bytes", "lat", "comm"] or set(res.pushdown.columns or []) == {
        "bytes", "lat", "comm"}


def test_sql_where_on_time_and_latency_reaches_the_index(caps: list[Path]) -> None:
    truth = _truth(caps[:1])
    t0 = int(truth["time"].min())
    lo, hi = (t0 + 100_000_000) // 1000 * 1000, (t0 + 200_000_000) // 1000 * 1000  # TIMESTAMP: us
    from aether_rec.ops.units import iso_utc

    a, b = iso_utc(lo)[:-1].replace("T", " "), iso_utc(hi)[:-1].replace("T", " ")  # type: ignore[index]
    q = (f"SELECT count(*) AS n, max(lat) AS m FROM events e WHERE e.time >= TIMESTAMP '{a}' "
         f"AND time < TIMESTAMP '{b}' AND 1000 < lat")
    res = sql_ops.run(q, [str(caps[0])])
    want = (truth["time"] >= lo) & (truth["time"] < hi) & (truth["lat"] > 1000)
    assert res.table.to_pylist() == [{"n": int(want.sum()), "m": int(truth["lat"][want].max())}]
    assert res.pushdown.time_min == lo - 1000 and res.pushdown.time_max == hi + 1000
    assert res.pushdown.terms == ["lat >= 1000"]
    need = _matching_chunk_bytes(caps[0], lambda c: (c["time"] >= lo) & (c["time"] < hi) & (c["lat"] > 1000))
    assert 0 < res.scan.bytes_decompressed <= 1.2 * need
    # latency alone: only chunks whose lat_max passes are read
    res = sql_ops.run("SELECT count(*) AS n FROM events WHERE lat BETWEEN 15000000 AND 1e12", [str(caps[0])])
    want = (truth["lat"] >= 15_000_000)
    assert res.table.to_pylist() == [{"n": int(want.sum())}]
    need = _matching_chunk_bytes(caps[0], lambda c: c["lat"] >= 15_000_000)
    assert res.scan.bytes_decompressed <= 1.2 * need


def test_sql_pushdown_never_changes_answers() -> None:
    """OR, NOT, subqueries and self-joins push nothing or stay correct."""
    con = sql_ops._connect()
    pd = sql_ops.plan(con, "SELECT * FROM events WHERE lat > 5 OR ts < 3")
    assert pd.terms == [] and pd.columns is None
    pd = sql_ops.plan(con, "SELECT count(*) FROM (SELECT * FROM events) WHERE lat > 5")
    assert pd.terms == []
    pd = sql_ops.plan(con, "SELECT lat FROM events WHERE NOT lat > 5 AND ts >= 7")
    assert pd.terms == ["ts >= 7"] and pd.columns == ["ts", "lat"]
    pd = sql_ops.plan(con, "SELECT count(*) FROM events a JOIN events b USING (ts) WHERE a.lat > 9")
    assert pd.events_refs == 2 and pd.terms == []


def test_sql_agrees_with_the_parquet_export(caps: list[Path], tmp_path: Path) -> None:
    """Peer: DuckDB over the Parquet export of the same capture gives the same answer."""
    from aether_rec.ops.export import export_parquet
    from aether_rec.ops.window import Selection

    pq = tmp_path / "a.parquet"
    with aether_rec.open(str(caps[0])) as cap:
        export_parquet(cap, str(pq), Selection())
    q = ("SELECT op_name, count(*) n, quantile_cont(lat, 0.5) p50 FROM {} WHERE lat > 3000 "
         "GROUP BY 1 ORDER BY 1")
    ours = sql_ops.run(q.format("events"), [str(caps[0])]).table.to_pylist()
    con = sql_ops._connect()
    theirs = con.sql(q.format(f"read_parquet('{pq}')")).fetchall()
    assert [(r["op_name"], r["n"], r["p50"]) for r in ours] == [tuple(t) for t in theirs]


def test_losses_and_captures_tables(caps: list[Path]) -> None:
    res = sql_ops.run("SELECT capture, source, count(*) AS n, sum(count) AS lost FROM losses GROUP BY ALL",
                      [str(p) for p in caps])
    with aether_rec.open(str(caps[0])) as cap:
        losses = cap.losses()
    assert res.table.to_pylist() == [{"capture": 0, "source": "vm", "n": len(losses),
                                      "lost": sum(x.count for x in losses)}]
    res = sql_ops.run("SELECT capture, hostname, events, chunks, bytes FROM captures ORDER BY capture",
                      [str(p) for p in caps])
    assert res.table.to_pylist() == [
        {"capture": 0, "hostname": "vm", "events": N, "chunks": N // 2000, "bytes": caps[0].stat().st_size},
        {"capture": 1, "hostname": "db2", "events": N // 2, "chunks": (N // 2 + 1999) // 2000,
         "bytes": caps[1].stat().st_size},
    ]


def test_cli_sql_outputs_and_errors(caps: list[Path]) -> None:
    runner = CliRunner()
    q = "SELECT comm, count(*) AS n FROM events WHERE lat > 1000000 GROUP BY comm ORDER BY n DESC, comm"
    truth = _truth(caps[:1])
    sel = truth["lat"] > 1_000_000
    names, counts = np.unique(truth["comm"][sel], return_counts=True)
    want = sorted(zip(names.tolist(), counts.tolist()), key=lambda x: (-x[1], x[0]))
    r = runner.invoke(main, ["sql", q, str(caps[0]), "--csv"])
    assert r.exit_code == 0, r.output
    rows = list(csv.reader(io.StringIO(r.stdout)))
    assert rows[0] == ["comm", "n"] and [(a, int(b)) for a, b in rows[1:]] == want
    r = runner.invoke(main, ["sql", q, str(caps[0]), "--json"])
    assert [(d["comm"], d["n"]) for d in json.loads(r.stdout)] == want
    r = runner.invoke(main, ["sql", q, str(caps[0]), "--explain"])
    assert r.exit_code == 0 and f"({len(want)} rows)" in r.stdout
    assert "pushed down: lat >= 1000000" in r.stderr
    r = runner.invoke(main, ["sql", "SELECT min(time) AS t FROM events", str(caps[0]), "--json"])
    assert json.loads(r.stdout)[0]["t"].startswith("2026-01-01T00:00:00.")
    r = runner.invoke(main, ["sql", "SELEC 1", str(caps[0])])
    assert r.exit_code == 2 and "syntax error" in r.stderr and "Traceback" not in r.output
    r = runner.invoke(main, ["sql", "SELECT nope FROM events", str(caps[0])])
    assert r.exit_code == 2 and "nope" in r.stderr
    r = runner.invoke(main, ["sql", "SELECT 1", str(caps[0]) + ".missing"])
    assert r.exit_code == 1 and "no such file" in r.stderr


def test_cli_sql_damaged_capture(caps: list[Path], tmp_path: Path) -> None:
    bad = tmp_path / "bad.aio"
    data = bytearray(caps[0].read_bytes())
    with aether_rec.open(str(caps[0])) as cap:
        info = cap.chunk_infos()[3]
    data[info.offset + info.length // 2] ^= 0xFF  # inside a chunk: its checksum fails
    bad.write_bytes(bytes(data))
    runner = CliRunner()
    r = runner.invoke(main, ["sql", "SELECT count(*) AS n FROM events", str(bad), "--strict"])
    assert r.exit_code == 1 and "bad.aio" in r.stderr and "Traceback" not in r.output
    r = runner.invoke(main, ["sql", "SELECT count(*) AS n FROM events", str(bad), "--csv"])
    assert r.exit_code == 0 and "warning" in r.stderr
    assert r.stdout.splitlines()[1] == str(N - info.n)


@pytest.mark.parametrize(("args", "extra"), [
    (["sql", "SELECT 1"], "sql"),
    (["info"], "remote"),
])
def test_missing_optional_package_names_the_extra(
    caps: list[Path], monkeypatch: pytest.MonkeyPatch, args: list[str], extra: str
) -> None:
    import importlib

    import aether_rec.optional as optional

    real = importlib.import_module

    def fake(name: str, package: str | None = None):  # type: ignore[no-untyped-def]
        if name.split(".")[0] in ("duckdb", "fsspec"):
            raise ImportError(name)
        return real(name, package)

    monkeypatch.setattr(optional.importlib, "import_module", fake)
    target = "https://127.0.0.1:9/x.aio" if extra == "remote" else str(caps[0])
    r = CliRunner().invoke(main, [*args, target])
    assert r.exit_code == 1 and f"pip install 'aether-rec[{extra}]'" in r.stderr
    assert "Traceback" not in r.output
