#!/usr/bin/env python3
"""Fleet features against their peers, in the same run (issue 15).

1. ``sql``: DuckDB over .aio captures (aether-rec's Arrow scan with index push-down) against the
   same query by DuckDB over the Parquet export of the same captures. Prints medians of
   ``--runs`` runs and the ratio, plus, for a one-minute ``time`` window, the bytes decompressed
   against those of the chunks that can match (target <= 1.2x).
2. ``perfetto-proto``: events/s and bytes/event of the protobuf export of a capture shaped like a
   recording (threads issue syscalls one at a time, linked block requests), against the Chrome
   JSON export of the same events (peer); the 10 M event projection of the output size
   (target <= 150 MB, >= 2 M events/s).
3. ``index`` (format 1.2, issues 13 and 15): a fleet-wide percentile from the index alone
   (``stats --from-index``) against ``stats``: bytes read as a fraction of the captures' bytes
   (target < 1 %), CPU seconds, and whether the counts agree; ``info`` on a capture of
   ``--info-events`` events (CPU seconds, target <= 0.2 s) and on one of ``--info-chunks`` tiny
   chunks served by range over HTTP (bytes transferred, target <= 256 KB).

Every measurement runs in its own subprocess (imports done before the clock starts), which
reports its wall and CPU time and its peak RSS (VmHWM; the child starts no processes of its
own). The machine is shared: keep the sizes small when others are working, and read ratios
rather than absolute figures.

    .venv/bin/python bench/bench_fleet.py                          # 8 captures x 1 M, 2 M perfetto
    .venv/bin/python bench/bench_fleet.py --captures 4 --events 200000 --perfetto-events 300000
    .venv/bin/python bench/bench_fleet.py --only index --captures 4 --info-events 10000000
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
QUERY = ("SELECT comm, count(*) AS n, quantile_cont(lat, 0.99) AS p99 FROM {t} "
         "WHERE lat > 100000 GROUP BY comm")


def _hwm_mb() -> float:
    """This process's peak RSS (VmHWM: the kernel's high-water mark of its own memory, which,
    unlike wait4's ru_maxrss, does not carry over the parent's across fork and exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child(op: str, args: list[str]) -> None:
    sys.path.insert(0, str(ROOT))
    import duckdb  # noqa: F401  imports are not what is measured
    import pyarrow  # noqa: F401

    import aether_rec  # noqa: F401
    from aether_rec.ops import export, perfetto, sql  # noqa: F401

    t0 = time.perf_counter()
    c0 = time.process_time()
    out: dict[str, Any] = {}
    if op == "sql":
        from aether_rec.ops import sql

        res = sql.run(QUERY.format(t="events"), args)
        out = {"rows": res.table.num_rows, "decompressed": res.scan.bytes_decompressed}
    elif op == "sql-window":
        from aether_rec.ops import sql

        lo, hi = args[0], args[1]
        q = (f"SELECT count(*) AS n FROM events WHERE time >= TIMESTAMP '{lo}' AND time < TIMESTAMP '{hi}'")
        res = sql.run(q, args[2:])
        out = {"rows": res.table.to_pylist()[0]["n"], "decompressed": res.scan.bytes_decompressed}
    elif op == "parquet":
        import duckdb

        files = ", ".join(f"'{a}'" for a in args)
        rows = duckdb.connect().sql(QUERY.format(t=f"read_parquet([{files}])")).fetchall()
        out = {"rows": len(rows)}
    elif op in ("perfetto-proto", "perfetto-json"):
        import aether_rec
        from aether_rec.ops.export import export_perfetto
        from aether_rec.ops.perfetto import export_perfetto_proto
        from aether_rec.ops.window import Selection

        with aether_rec.open(args[0]) as cap:
            if op == "perfetto-proto":
                with open(args[1], "wb") as f:
                    rep = export_perfetto_proto(cap, f)
                out = {"events": rep.events}
            else:
                with open(args[1], "w", encoding="utf-8") as f:
                    jrep = export_perfetto(cap, f, Selection(), max_events=10**9)
                out = {"events": jrep.events}
        out["bytes"] = os.path.getsize(args[1])
    out["seconds"] = time.perf_counter() - t0
    out["cpu_seconds"] = time.process_time() - c0
    out["rss_mb"] = _hwm_mb()
    print(json.dumps(out))


def run(op: str, args: list[str]) -> dict[str, Any]:
    proc = subprocess.Popen([sys.executable, __file__, "--child", op, *args], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    data = proc.stdout.read()
    if proc.wait() != 0:
        raise SystemExit(f"{op} failed (status {proc.returncode})")
    res: dict[str, Any] = json.loads(data)
    return res


def median_of(op: str, args: list[str], runs: int) -> dict[str, Any]:
    results = [run(op, args) for _ in range(runs)]
    out = dict(results[-1])
    out["seconds"] = statistics.median(r["seconds"] for r in results)
    out["cpu_seconds"] = statistics.median(r["cpu_seconds"] for r in results)
    out["rss_mb"] = max(r["rss_mb"] for r in results)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--captures", type=int, default=8)
    ap.add_argument("--events", type=int, default=1_000_000, help="events per capture (sql)")
    ap.add_argument("--perfetto-events", type=int, default=2_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--info-events", type=int, default=10_000_000, help="events of the info capture")
    ap.add_argument("--info-chunks", type=int, default=25_000, help="chunks of the remote info capture")
    ap.add_argument("--only", choices=["sql", "perfetto", "index"], action="append",
                    help="run only these sections (repeatable; default: all)")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a.child[0], a.child[1:])
        return
    only = set(a.only or ["sql", "perfetto", "index"])
    sys.path.insert(0, str(ROOT))
    import aether_rec
    from aether_rec.format.synth import generate
    from aether_rec.ops.export import export_parquet
    from aether_rec.ops.window import Selection

    with tempfile.TemporaryDirectory(prefix="aether-fleet-") as tmp:
        d = Path(tmp)
        caps, pqs = [], []
        for k in range(a.captures):
            p = d / f"c{k}.aio"
            generate(str(p), a.events, seed=k, rate=20_000.0, header={"hostname": f"h{k}"})
            caps.append(str(p))
            if "sql" in only:
                q = d / f"c{k}.parquet"
                with aether_rec.open(str(p)) as cap:
                    export_parquet(cap, str(q), Selection())
                pqs.append(str(q))
        if "index" in only:
            index_section(a, d, caps)
        if "sql" in only:
            sql_section(a, caps, pqs)
        if "perfetto" in only:
            perfetto_section(a, d)


def sql_section(a: Any, caps: list[str], pqs: list[str]) -> None:
    import aether_rec
    from aether_rec.ops.units import iso_utc

    if True:
        ours = median_of("sql", caps, a.runs)
        peer = median_of("parquet", pqs, a.runs)
        print(f"sql: {a.captures} captures x {a.events:,} events, query: {QUERY.format(t='events')}")
        for name, r in (("aether-rec sql (.aio)", ours), ("duckdb over Parquet (peer)", peer)):
            print(f"  {name:<27}{r['seconds']:8.3f} s wall {r['cpu_seconds']:8.3f} s CPU "
                  f"{r['rss_mb']:7.1f} MB peak")
        print(f"  ratio .aio / Parquet       {ours['seconds'] / peer['seconds']:8.2f}x wall "
              f"{ours['cpu_seconds'] / peer['cpu_seconds']:5.2f}x CPU "
              f"(same rows: {ours['rows'] == peer['rows']})")
        # a one-minute window: bytes decompressed against the chunks that can match
        with aether_rec.open(caps[0]) as cap:
            infos = cap.chunk_infos()
            t0 = min(i.t_first for i in infos)
            lo_m, hi_m = t0 + 10_000_000_000, t0 + 70_000_000_000
            lo = int(cap.mono_to_real(lo_m)) // 1000 * 1000
            hi = int(cap.mono_to_real(hi_m)) // 1000 * 1000
            need = 0
            for chunk in cap.chunks(ordered=False):
                real = cap.mono_to_real(chunk.column("ts"))
                if ((real >= lo) & (real < hi)).any():
                    need += chunk.info.raw if chunk.info else 0
        win = run("sql-window", [iso_utc(lo)[:-1], iso_utc(hi)[:-1], caps[0]])  # type: ignore[index]
        ratio = win["decompressed"] / need if need else float("nan")
        print(f"  1-minute time window: {win['rows']:,} events, {win['decompressed']:,} bytes decompressed, "
              f"{need:,} in the chunks that can match: {ratio:.3f}x (target <= 1.2x)")


def perfetto_section(a: Any, d: Path) -> None:
    from aether_rec.format.synth_traced import generate_traced

    if True:
        src = d / "traced.aio"
        counts = generate_traced(src, int(a.perfetto_events / 1.25), seed=1)
        pb = median_of("perfetto-proto", [str(src), str(d / "t.pftrace")], a.runs)
        js = median_of("perfetto-json", [str(src), str(d / "t.json")], a.runs)
        n = counts["events"]
        print(f"perfetto: {n:,} events ({counts['links']:,} flows)")
        for name, r in (("perfetto-proto", pb), ("perfetto JSON (peer)", js)):
            print(f"  {name:<22} {n / r['seconds'] / 1e6:6.2f} M events/s ({n / r['cpu_seconds'] / 1e6:5.2f} "
                  f"per CPU second)  {r['bytes'] / n:7.2f} B/event  {r['rss_mb']:7.1f} MB peak")
        print(f"  proto vs JSON: {js['seconds'] / pb['seconds']:.1f}x faster, "
              f"{js['bytes'] / pb['bytes']:.1f}x smaller; 10 M events -> "
              f"{pb['bytes'] / n * 10e6 / 1e6:.0f} MB (target <= 150 MB), rate target >= 2 M events/s")


def index_section(a: Any, d: Path, caps: list[str]) -> None:
    """Format 1.2: percentiles from the index, info from SUMM (see the module docstring)."""
    import dataclasses

    import fsspec

    import aether_rec
    from aether_rec.format.remote import RangeFile
    from aether_rec.format.synth import generate
    from aether_rec.format.writer import CaptureWriter
    from aether_rec.ops.info import capture_info
    from aether_rec.ops.stats import compute
    from aether_rec.ops.stats_index import compute_from_index

    sys.path.insert(0, str(ROOT / "tests"))
    from http_range import serve

    print(f"index ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}): "
          f"{len(caps)} captures x {a.events:,} events")
    files = [RangeFile(p, fs=fsspec.filesystem("file")) for p in caps]
    def cpu_timed(fn: Any, sources: list[Any]) -> tuple[dict[str, Any], float]:
        """``fn`` over the captures opened from ``sources``, and its CPU seconds."""
        opened = [aether_rec.open(x) for x in sources]
        c0 = time.process_time()
        doc = fn(opened)
        cpu = time.process_time() - c0
        for cap in opened:
            cap.close()
        return doc, cpu

    fast, fast_cpu = cpu_timed(compute_from_index, files)
    size = sum(os.path.getsize(p) for p in caps)
    read = sum(f.bytes_fetched for f in files)
    full, full_cpu = cpu_timed(compute, list(caps))
    same = all(fast[k] == full[k] for k in ("events", "bytes", "errors", "span", "by_layer_op", "latency"))
    print(f"  stats --from-index: {read:,} of {size:,} bytes read = {100 * read / size:.3f} % "
          f"(target < 1 %), {fast_cpu:.3f} s CPU; stats: {full_cpu:.3f} s CPU; "
          f"events {fast['events']:,}, every count and percentile equal: {same}")
    print(f"  fleet p99 from the index: {fast['latency']['p99']:,} ns (stats: {full['latency']['p99']:,} ns)")

    big = d / "info.aio"
    generate(str(big), a.info_events, seed=7)
    c0 = time.process_time()
    with aether_rec.open(str(big), lazy_index=True) as cap:
        info = capture_info(cap)
    cpu = time.process_time() - c0
    print(f"  info on {a.info_events:,} events ({os.path.getsize(big):,} bytes, {info['chunks']:,} chunks): "
          f"{cpu:.4f} s CPU (target <= 0.2 s), from SUMM: {info['from_summary']}")
    cli = [os.path.join(os.path.dirname(sys.executable), "aether-rec"), "info", str(big)]
    for what, cmd in (("the CLI process, `aether-rec info`", cli),
                      ("(`python -c 'import numpy'`, its floor)", [sys.executable, "-c", "import numpy"])):
        before = os.times()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True)
        after = os.times()
        child_cpu = (after.children_user - before.children_user
                     + after.children_system - before.children_system)
        print(f"    {what}: {child_cpu:.2f} s CPU, interpreter start-up and imports included")

    (d / "srv").mkdir()
    many = d / "srv" / "many.aio"
    src = d / "tiny.aio"
    generate(str(src), 64, seed=4, chunk_events=4)
    with aether_rec.open(str(src)) as cap, CaptureWriter(str(many), dict(cap.header), atomic=True) as w:
        infos = cap.chunk_infos()
        raws = [cap.raw_chunk(i) for i in infos]
        for k in range(a.info_chunks):
            w.copy_chunk_block(raws[k % len(raws)] or b"", dataclasses.replace(infos[k % len(infos)]))
    with aether_rec.open(str(many)) as cap:
        index_bytes = cap.size - (cap._index_offset or 0)
    with serve(d / "srv") as (base, served):
        with aether_rec.open(f"{base}/many.aio", lazy_index=True) as cap:
            info = capture_info(cap)
        sent = served.bytes
    print(f"  info by range on {info['chunks']:,} chunks ({os.path.getsize(many):,} bytes, index "
          f"{index_bytes:,} bytes): {sent:,} bytes transferred (target <= 262,144)")


if __name__ == "__main__":
    main()
