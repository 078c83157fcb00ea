#!/usr/bin/env python3
"""Throughput and peak memory of the offline tools, against peers in the same run.

Generates a synthetic capture (10 M events by default, cached in bench/out/), then runs each
operation --repeat times (default 3), each in its own subprocess, and prints medians:
events/s (the operation's own time, after imports) against the targets of issue 13, and the
peak memory of the subprocess's whole tree measured from outside (bench/measure.py: VmHWM
summed over the tree, and a per-run cgroup's peak when run as root), plus the child's own
VmHWM. Never ru_maxrss (Linux carries the parent's peak into it).

    .venv/bin/python bench/bench_offline.py                       # 10 M events, every op
    .venv/bin/python bench/bench_offline.py --events 50000000      # the 50 M row of issue 13
    .venv/bin/python bench/bench_offline.py --events 200000 --repeat 3 --ops 'stats,replay text'

Peer for ``stats``: DuckDB computing the same latency percentiles (``quantile_cont`` over
p50/p90/p99/p99.9, grouped by layer and op) on the Parquet export of the same capture, in the
same run (pip install duckdb, the ``bench`` extra); the table prints stats' ratio to it. The
start-up rows time ``aether-rec --help`` and ``aether-rec info`` on the capture (format 1.2: the
header, the trailer and the SUMM block; issue 13's target: 0.2 s whatever the size) against
``python -c pass`` and ``import numpy``; ``--ops ''`` runs only them.

Ceiling for ``export parquet``: "pyarrow write", pyarrow alone writing the first row groups of
that export's file from memory, with the same writer options, on its one writer thread: what
export parquet would reach if reading the capture and building the arrays cost nothing.

The children set the C allocator as the CLI does (aether_rec/allocator.py: freed chunk memory
kept on the heap); ``--allocator both`` also runs each operation with glibc's default, the
runs of the two alternated, and prints both rows ("[glibc default]").

The machine is shared: treat absolute figures as noisy, ratios as meaningful. Every figure
in the README's offline tables comes from this script's output, which prints its date.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import median, run_tree, today  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out"
AETHER = str(ROOT / ".venv" / "bin" / "aether-rec")

# issue 13, section 3: events/s
TARGETS: dict[str, float | None] = {
    "stats": 25e6,
    "stats --by": None,
    "filter": 5e6,
    "filter (all)": 5e6,
    "merge (hosts)": 5e6,
    "merge (pieces)": 5e6,
    "replay text": 2e6,
    "replay jsonl": 2e6,
    "export csv": 3e6,
    "export jsonl": 2e6,
    "export parquet": 10e6,
    "duckdb percentiles": None,
    "pyarrow write": None,
}
DEFAULT_OPS = ("stats,stats --by,filter,filter (all),merge (hosts),merge (pieces),replay text,replay jsonl,"
               "export csv,export jsonl,export parquet,pyarrow write,duckdb percentiles")
MEM_LIMIT_MB = 300
PEERS = ("duckdb percentiles", "pyarrow write")  # other programs: no target, not our allocator setting
PYARROW_GROUPS = 16  # row groups (chunks of 131,072 rows) that "pyarrow write" holds and writes
# the child's C allocator: "tuned" as the CLI sets it (aether_rec/allocator.py), or glibc's default
ALLOCATOR_ENV = "AETHER_BENCH_ALLOCATOR"
INFO_TARGET_S = 0.2  # issue 13: `aether-rec info` of an indexed capture, wall, whatever its size
PCTS = (0.5, 0.9, 0.99, 0.999)


# -- child side: one operation, timed ------------------------------------------------------------


def own_hwm_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def child(op: str, args: list[str]) -> None:
    sys.path.insert(0, str(ROOT))
    import aether_rec
    from aether_rec.ops.filter import filter_capture
    from aether_rec.ops.merge import MergeInput, merge_captures
    from aether_rec.ops.report import render_stats
    from aether_rec.ops.stats import StatsOptions, compute
    from aether_rec.ops.window import select

    if op not in PEERS and os.environ.get(ALLOCATOR_ENV, "tuned") == "tuned":
        from aether_rec.allocator import tune_allocator

        tune_allocator()  # as the CLI does for every command but record and doctor
    t = time.perf_counter()
    cpu = time.process_time()  # every thread of the process: what to read on a busy machine
    events = 0
    if op in ("stats", "stats --by"):
        caps = [aether_rec.open(p) for p in args]
        by = ["comm", "op"] if op == "stats --by" else ["layer", "op"]
        doc = compute(caps, StatsOptions(by=by, all_fds=True))  # every event, as the peer
        render_stats(doc)
        events = doc["events"]
    elif op in ("filter", "filter (all)"):
        src, dst = args
        with aether_rec.open(src) as cap:
            exprs = [] if op == "filter (all)" else ["lat > 1ms and op in (read, write, pread)"]
            filter_capture(cap, dst, select(cap, exprs), overwrite=True)
            events = cap.n_events  # events scanned
    elif op.startswith("merge"):
        dst, *srcs = args
        caps = [aether_rec.open(p) for p in srcs]
        rep = merge_captures([MergeInput(c, p) for c, p in zip(caps, srcs)], dst, overwrite=True)
        events = rep.events_out
    elif op.startswith("replay"):
        from aether_rec.ops.replay import replay

        src, dst = args
        with aether_rec.open(src) as cap, open(dst, "w") as f:
            events = replay(cap, f, select(cap), fmt=op.split()[1]).events
    elif op in ("export csv", "export jsonl"):
        from aether_rec.ops.export import export_rows

        src, dst = args
        with aether_rec.open(src) as cap, open(dst, "w") as f:
            events = export_rows(cap, f, select(cap), op.split()[1]).events
    elif op == "export parquet":
        from aether_rec.ops.export import export_parquet

        src, dst = args
        with aether_rec.open(src) as cap:
            events = export_parquet(cap, dst, select(cap)).events
    elif op == "pyarrow write":
        # the ceiling of export parquet: pyarrow alone writing the same rows from memory, with
        # the writer options export uses (its first row groups: the whole file would not fit)
        import pyarrow.parquet as pq

        from aether_rec.ops.export import DEFAULT_PARQUET_COMPRESSION, _writer_options

        src, dst = args
        f = pq.ParquetFile(src)
        groups = [f.read_row_group(i) for i in range(min(f.num_row_groups, PYARROW_GROUPS))]
        import pyarrow as pa

        options = _writer_options(pa, f.schema_arrow, DEFAULT_PARQUET_COMPRESSION)
        t = time.perf_counter()
        cpu = time.process_time()
        w = pq.ParquetWriter(dst, f.schema_arrow, **options)
        for g in groups:
            w.write_table(g)
        w.close()
        events = sum(g.num_rows for g in groups)
    elif op == "duckdb percentiles":
        import duckdb

        (src,) = args
        t = time.perf_counter()  # after the import, as for aether-rec
        cpu = time.process_time()
        con = duckdb.connect()
        rows = con.execute(
            f"SELECT layer_name, op_name, count(*), quantile_cont(lat, {list(PCTS)}) "
            "FROM read_parquet(?) GROUP BY ALL ORDER BY ALL", [src]).fetchall()
        events = sum(r[2] for r in rows)
    else:
        raise SystemExit(f"unknown op {op}")
    print(json.dumps({"seconds": time.perf_counter() - t, "cpu": time.process_time() - cpu, "events": events,
                      "own_mb": own_hwm_mb()}))


# -- parent side ----------------------------------------------------------------------------------


def run_child(op: str, args: list[str], allocator: str = "tuned") -> dict[str, Any]:
    env = {**os.environ, ALLOCATOR_ENV: allocator}
    argv = [sys.executable, str(Path(__file__).resolve()), "--child", op, *args]
    u = run_tree(argv, tag="offline", env=env)
    res = json.loads(u.stdout.decode().strip().splitlines()[-1])
    res["tree_mb"] = u.peak_mb
    res["cgroup_mb"] = u.cgroup_peak_mb
    res["wall"] = u.seconds
    return res


def run_median(op: str, args: list[str], repeat: int, allocator: str = "tuned") -> dict[str, Any]:
    return summarise([run_child(op, args, allocator) for _ in range(repeat)])


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"events": runs[0]["events"], "runs": len(runs)}
    for k in ("seconds", "cpu", "own_mb", "tree_mb", "wall"):
        out[k] = median([r[k] for r in runs])
    cg = [r["cgroup_mb"] for r in runs if r["cgroup_mb"] is not None]
    out["cgroup_mb"] = median(cg) if cg else None
    out["spread"] = (min(r["seconds"] for r in runs), max(r["seconds"] for r in runs))
    return out


def run_alternated(op: str, args: list[str], repeat: int) -> dict[str, dict[str, Any]]:
    """``run_median`` of glibc's default allocator and of the tuned one, their runs alternated."""
    runs: dict[str, list[dict[str, Any]]] = {"default": [], "tuned": []}
    for _ in range(repeat):
        for alloc in runs:
            runs[alloc].append(run_child(op, args, alloc))
    return {alloc: summarise(rs) for alloc, rs in runs.items()}


def startup(repeat: int, capture: Path) -> list[tuple[str, float, float]]:
    """(what, median wall seconds, median tree peak MB) of starting things, 5 runs at least,
    the cases interleaved. The wall time is of a bare run: measure.py's tree watcher reads
    /proc every 10 ms, which on this 2-core machine made a 0.04 s start take 0.06 s and
    info's 0.12 s 0.18 s; the memory comes from as many watched runs."""
    py = sys.executable
    cases = [
        ("python -c pass", [py, "-c", "pass"]),
        ("python -c 'import numpy'", [py, "-c", "import numpy"]),
        ("aether-rec --help", [AETHER, "--help"]),
        ("aether-rec info", [AETHER, "info", str(capture)]),
    ]
    walls: dict[str, list[float]] = {name: [] for name, _ in cases}
    mbs: dict[str, list[float]] = {name: [] for name, _ in cases}
    for _ in range(max(repeat, 5)):
        for name, argv in cases:
            t = time.perf_counter()
            subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
            walls[name].append(time.perf_counter() - t)
            mbs[name].append(run_tree(argv, tag="start").peak_mb)
    return [(name, median(walls[name]), median(mbs[name])) for name, _ in cases]


def ensure_capture(path: Path, n: int, seed: int = 0, **kw: Any) -> Path:
    if path.exists():
        return path
    sys.path.insert(0, str(ROOT))
    from aether_rec.format.synth import generate

    t = time.perf_counter()
    generate(str(path), n, seed=seed, **kw)
    print(
        f"  generated {path.name}: {n:,} events, {path.stat().st_size / 1e6:.0f} MB in "
        f"{time.perf_counter() - t:.1f}s",
        file=sys.stderr,
    )
    return path


def pieces(src: Path, k: int) -> list[Path]:
    """``src`` cut into ``k`` consecutive pieces, as rotation would (cached)."""
    out = [OUT / f"{src.stem}-piece{i}of{k}.aio" for i in range(k)]
    if all(p.exists() for p in out):
        return out
    sys.path.insert(0, str(ROOT))
    import aether_rec
    from aether_rec.ops.filter import filter_capture
    from aether_rec.ops.window import select

    with aether_rec.open(str(src)) as cap:
        infos = cap.chunk_infos()
        t0, t1 = infos[0].t_first, max(i.t_last for i in infos)
        cuts = [(t1 - t0) * i // k for i in range(1, k)]
        bounds = [None, *[f"+{c}ns" for c in cuts], None]
        for i, p in enumerate(out):
            filter_capture(cap, str(p), select(cap, [], bounds[i], bounds[i + 1]), overwrite=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--repeat", type=int, default=3, help="runs per operation (median; at least 3)")
    ap.add_argument("--sizes", default="", help="extra capture sizes for the memory check (comma list)")
    ap.add_argument("--ops", default=DEFAULT_OPS, help=f"comma list of: {DEFAULT_OPS}")
    ap.add_argument("--allocator", choices=("tuned", "default", "both"), default="tuned",
                    help="the children's C allocator: as the CLI sets it (tuned), glibc's default, or "
                         "both, alternated run by run (aether_rec/allocator.py)")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a.child[0], a.child[1:])
        return
    if a.repeat < 3:
        print("note: fewer than 3 runs per figure: not for the README", file=sys.stderr)
    OUT.mkdir(parents=True, exist_ok=True)
    n = a.events
    main_cap = ensure_capture(OUT / f"offline-{n}.aio", n, seed=1)
    ops = [o.strip() for o in a.ops.split(",") if o.strip()]
    rows: list[tuple[str, int, dict[str, Any]]] = []
    with tempfile.TemporaryDirectory(dir=OUT) as tmp:
        parquet = os.path.join(tmp, "e.parquet")
        for op in ops:
            if op.startswith("stats"):
                args = [str(main_cap)]
            elif op.startswith("filter"):
                args = [str(main_cap), os.path.join(tmp, "f.aio")]
            elif op == "merge (hosts)":  # two hosts interleaved in time: every event is re-sorted
                half = n // 2
                host_a = ensure_capture(OUT / f"offline-{half}-a.aio", half, seed=2,
                                        header={"hostname": "bench-a"})
                host_b = ensure_capture(
                    OUT / f"offline-{half}-b.aio", half, seed=3, start_ns=7_000_000_000,
                    header={"hostname": "bench-b", "clock": [[7_000_000_000, 1_767_225_600_000_000_000]]})
                args = [os.path.join(tmp, "m.aio"), str(host_a), str(host_b)]
            elif op == "merge (pieces)":  # rotated pieces of one recording
                args = [os.path.join(tmp, "m.aio"), *map(str, pieces(main_cap, 4))]
            elif op == "export parquet":
                args = [str(main_cap), parquet]
            elif op in PEERS:  # both read export parquet's file
                if not os.path.exists(parquet):
                    run_child("export parquet", [str(main_cap), parquet])
                args = [parquet] if op == "duckdb percentiles" else [parquet, os.path.join(tmp, "w.parquet")]
            elif op.startswith(("replay", "export")):  # rows to /dev/null: 50 M jsonl rows are 20 GB
                args = [str(main_cap), os.devnull]
            else:
                raise SystemExit(f"unknown op {op}")
            if a.allocator == "both" and op not in PEERS:  # runs alternated: both see the same machine
                both = run_alternated(op, args, a.repeat)
                rows += [(f"{op} [glibc default]", n, both["default"]), (op, n, both["tuned"])]
            else:
                rows.append((op, n, run_median(op, args, a.repeat, a.allocator)))
            res = rows[-1][2]
            print(f"  {op}: {res['events'] / res['seconds'] / 1e6:.2f} M events/s, {res['cpu']:.2f} CPU s, "
                  f"{res['tree_mb']:.0f} MB", file=sys.stderr)
        for size in [int(x) for x in a.sizes.split(",") if x.strip()]:
            cap = ensure_capture(OUT / f"offline-{size}.aio", size, seed=1)
            rows.append(("stats", size, run_median("stats", [str(cap)], a.repeat)))
    starts = startup(a.repeat, main_cap)

    print(f"\nOffline tools, synthetic capture, median of {a.repeat} runs each, {today()}, "
          f"{os.cpu_count()} CPUs (bench/bench_offline.py)")
    w = max([20] + [len(op) for op, _, _ in rows])
    print(f"{'operation':<{w}} {'capture':>12} {'seconds':>8} {'min-max':>13} {'CPU s':>6} {'M ev/s':>8} "
          f"{'target':>7} {'tree MB':>8} {'own MB':>7} {'cgroup MB':>9}  ok")
    for op, size, res in rows:
        rate = res["events"] / res["seconds"]
        target = TARGETS.get(op.split(" [")[0])
        ok = (target is None or rate >= target) and res["tree_mb"] <= MEM_LIMIT_MB
        tgt = f">={target / 1e6:g}" if target else "-"
        cg = f"{res['cgroup_mb']:.0f}" if res["cgroup_mb"] is not None else "-"
        lo, hi = res["spread"]
        print(f"{op:<{w}} {size:>12,} {res['seconds']:>8.2f} {f'{lo:.2f}-{hi:.2f}':>13} {res['cpu']:>6.2f} "
              f"{rate / 1e6:>8.2f} "
              f"{tgt:>7} {res['tree_mb']:>8.0f} {res['own_mb']:>7.0f} {cg:>9}  "
              f"{'peer' if op in PEERS else 'yes' if ok else 'NO'}")
    by = {op: res for op, size, res in rows if size == n}
    if "stats" in by and "duckdb percentiles" in by:
        s, d = by["stats"]["seconds"], by["duckdb percentiles"]["seconds"]
        print(f"\nstats (p50/p90/p99/p99.9 by layer, op, every event) vs DuckDB quantile_cont on the Parquet "
              f"export of the same capture: {s:.2f} s vs {d:.2f} s = {d / s:.2f}x "
              f"({'stats faster' if s <= d else 'DuckDB faster'}; target: stats no slower)")
    if "export parquet" in by and "pyarrow write" in by:
        e, p = (by[k]["events"] / by[k]["seconds"] / 1e6 for k in ("export parquet", "pyarrow write"))
        print(f"\nexport parquet {e:.2f} M events/s; pyarrow alone writing the same rows from memory "
              f"(one writer thread, the same options) {p:.2f} M rows/s: export reaches {e / p:.0%} of it")
    print(f"\nStart-up (medians of at least 5 runs; info on the {n:,}-event capture)")
    for name, secs, mb in starts:
        met = f"  target <= {INFO_TARGET_S} s: {'yes' if secs <= INFO_TARGET_S else 'NO'}" if name.endswith(
            " info") else ""
        print(f"  {name:<28} {secs:>6.3f} s {mb:>6.0f} MB{met}")


if __name__ == "__main__":
    main()
