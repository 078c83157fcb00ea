#!/usr/bin/env python3
"""Throughput and peak memory of the offline tools (stats, filter, merge, replay, export).

Generates a synthetic capture (10 M events by default, cached in bench/out/), then runs each
operation in its own subprocess and reads that child's peak RSS from ``wait4`` (so one run's
memory does not hide another's). Prints a table with events/s against the targets of issue 4:
stats >= 10 M events/s, filter and merge >= 5 M events/s, peak memory <= 300 MB whatever the size.

    .venv/bin/python bench/bench_offline.py                 # 10 M events
    .venv/bin/python bench/bench_offline.py --events 2000000 --sizes 1000000,4000000
    .venv/bin/python bench/bench_offline.py --perf-data perf.data   # + `perf report` peer

Peer: ``perf report`` over the same I/Os recorded by ``perf record`` (NOTES.md section 2). Pass
the perf.data with ``--perf-data`` (and ``--perf-events`` = samples in it, if known); the table
then shows perf report's rate and the ratio to ``stats``. Without linux-perf the row says so.

The machine is shared: run it when nobody else is benchmarking, and treat absolute figures as
noisy, ratios as meaningful.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out"

TARGETS = {
    "stats": 10e6,
    "stats --by": None,
    "filter": 5e6,
    "filter (all)": 5e6,
    "merge (hosts)": 5e6,
    "merge (pieces)": 5e6,
}
MEM_LIMIT_MB = 300


# -- child side: one operation, timed ------------------------------------------------------------


def child(op: str, args: list[str]) -> None:
    sys.path.insert(0, str(ROOT))
    import aether_rec
    from aether_rec.ops.filter import filter_capture
    from aether_rec.ops.merge import MergeInput, merge_captures
    from aether_rec.ops.report import render_stats
    from aether_rec.ops.stats import StatsOptions, compute
    from aether_rec.ops.window import select

    t = time.perf_counter()
    events = 0
    if op in ("stats", "stats --by"):
        caps = [aether_rec.open(p) for p in args]
        opts = StatsOptions(by=["comm", "op"]) if op == "stats --by" else StatsOptions()
        doc = compute(caps, opts)
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
    elif op == "export jsonl":
        src, dst = args
        from aether_rec.ops.export import export_rows

        with aether_rec.open(src) as cap, open(dst, "w") as f:
            events = export_rows(cap, f, select(cap), "jsonl").events
    else:
        raise SystemExit(f"unknown op {op}")
    print(json.dumps({"seconds": time.perf_counter() - t, "events": events}))


# -- parent side ----------------------------------------------------------------------------------


def run_child(op: str, args: list[str]) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", op, *args]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout is not None and p.stderr is not None
    out = p.stdout.read()
    err = p.stderr.read()
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise SystemExit(f"{op} failed ({p.returncode}):\n{err}")
    res = json.loads(out.strip().splitlines()[-1])
    res["rss_mb"] = usage.ru_maxrss / 1024.0  # KiB on Linux
    return res


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


def perf_peer(perf_data: str | None, perf_events: int | None) -> dict[str, Any] | None:
    """Time `perf report --stdio --sort comm` on a perf.data recorded from the same I/Os."""
    if not perf_data:
        return None
    perf = shutil.which("perf")
    if perf is None:
        return {"skipped": "linux-perf is not installed (apt-get install linux-perf)"}
    t = time.perf_counter()
    r = subprocess.run(
        [perf, "report", "--stdio", "--sort", "comm", "-i", perf_data],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    secs = time.perf_counter() - t
    if r.returncode != 0:
        return {"skipped": f"perf report failed: {r.stderr.strip()[:200]}"}
    return {"seconds": secs, "events": perf_events}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument(
        "--sizes", default="", help="extra capture sizes for the memory-vs-size check (comma list)"
    )
    ap.add_argument(
        "--ops",
        default="stats,stats --by,filter,filter (all),merge (hosts),merge (pieces)",
        help="comma list of: stats, stats --by, filter, filter (all), merge (hosts), merge (pieces), "
        "export jsonl",
    )
    ap.add_argument("--perf-data", help="perf.data of the same I/Os, to time `perf report` as a peer")
    ap.add_argument("--perf-events", type=int, help="number of I/Os in --perf-data (for its rate)")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a.child[0], a.child[1:])
        return
    OUT.mkdir(parents=True, exist_ok=True)
    n = a.events
    main_cap = ensure_capture(OUT / f"offline-{n}.aio", n, seed=1)
    half = n // 2
    host_a = ensure_capture(OUT / f"offline-{half}-a.aio", half, seed=2, header={"hostname": "bench-a"})
    host_b = ensure_capture(
        OUT / f"offline-{half}-b.aio",
        half,
        seed=3,
        start_ns=7_000_000_000,
        header={"hostname": "bench-b", "clock": [[7_000_000_000, 1_767_225_600_000_000_000]]},
    )
    rows: list[tuple[str, int, dict[str, Any]]] = []
    with tempfile.TemporaryDirectory(dir=OUT) as tmp:
        for op in [o.strip() for o in a.ops.split(",") if o.strip()]:
            if op.startswith("stats"):
                res = run_child(op, [str(main_cap)])
            elif op.startswith("filter"):
                res = run_child(op, [str(main_cap), os.path.join(tmp, "f.aio")])
            elif op == "merge (hosts)":  # two hosts interleaved in time: every event is re-sorted
                res = run_child(op, [os.path.join(tmp, "m.aio"), str(host_a), str(host_b)])
            elif op == "merge (pieces)":  # rotated pieces of one recording
                res = run_child(op, [os.path.join(tmp, "m.aio"), *map(str, pieces(main_cap, 4))])
            elif op == "export jsonl":
                res = run_child(op, [str(main_cap), os.path.join(tmp, "e.jsonl")])
            else:
                raise SystemExit(f"unknown op {op}")
            rows.append((op, n, res))
            print(
                f"  {op}: {res['events'] / res['seconds'] / 1e6:.2f} M events/s, {res['rss_mb']:.0f} MB",
                file=sys.stderr,
            )
        for size in [int(s) for s in a.sizes.split(",") if s.strip()]:
            cap = ensure_capture(OUT / f"offline-{size}.aio", size, seed=1)
            rows.append(("stats", size, run_child("stats", [str(cap)])))
    peer = perf_peer(a.perf_data, a.perf_events)

    print()
    print(
        f"{'operation':<14} {'capture':>12} {'events':>12} {'seconds':>8} {'M ev/s':>8} "
        f"{'target':>8} {'peak MB':>8}  ok"
    )
    for op, size, res in rows:
        rate = res["events"] / res["seconds"]
        target = TARGETS.get(op)
        ok = (target is None or rate >= target) and res["rss_mb"] <= MEM_LIMIT_MB
        tgt = f">={target / 1e6:.0f}" if target else "-"
        print(
            f"{op:<14} {size:>12,} {res['events']:>12,} {res['seconds']:>8.2f} {rate / 1e6:>8.2f} "
            f"{tgt:>8} {res['rss_mb']:>8.0f}  {'yes' if ok else 'NO'}"
        )
    if peer is None:
        print(
            "\nperf report peer: not run (pass --perf-data FILE recorded with `perf record` on the same I/Os)"
        )
    elif "skipped" in peer:
        print(f"\nperf report peer: skipped: {peer['skipped']}")
    else:
        stats_rows = [r for r in rows if r[0] == "stats"]
        line = f"\nperf report --sort comm: {peer['seconds']:.2f}s"
        if peer.get("events"):
            prate = peer["events"] / peer["seconds"]
            line += f" = {prate / 1e6:.2f} M events/s"
            if stats_rows:
                srate = stats_rows[0][2]["events"] / stats_rows[0][2]["seconds"]
                line += f"; aether-rec stats is {srate / prate:.1f}x faster per event"
        print(line)


if __name__ == "__main__":
    main()
