#!/usr/bin/env python3
"""Speed, memory and output size of ``report``, ``diff`` and ``plot`` against ``stats``.

Generates synthetic captures (cached in bench/out/), then runs each operation three times in
its own subprocess, timing it inside; its peak memory (VmHWM of its process tree) and CPU time
are measured from outside (bench/measure.py), never ru_maxrss. CPU ns per event (both
threads, interpreter start-up included) is the figure least disturbed by other work on a
shared machine. Prints medians and the ratio to ``stats``
over the same file in the same run (the peer: the tool's own streaming summary). Targets of
issue 14: report >= 10 M events/s, output <= 5 MiB whatever the event count, memory flat.

    .venv/bin/python bench/bench_report.py                      # 10 M events
    .venv/bin/python bench/bench_report.py --events 2000000 --sizes 500000 --runs 3

The machine is shared: run it when nobody else is benchmarking; treat absolute figures as
noisy, ratios as meaningful.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import run_tree, today  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out"
OPS = ("stats", "report", "diff", "plot heatmap", "split")


def child(op: str, args: list[str]) -> None:
    sys.path.insert(0, str(ROOT))
    import aether_rec
    from aether_rec.ops.window import select

    t = time.perf_counter()
    size = None
    if op == "stats":
        from aether_rec.ops.report import render_stats
        from aether_rec.ops.stats import compute

        with aether_rec.open(args[0]) as cap:
            doc = compute([cap])
            render_stats(doc)
        events = doc["events"]
    elif op == "report":
        from aether_rec.ops import htmlreport
        from aether_rec.ops.profile import collect

        with aether_rec.open(args[0]) as cap:
            prof = collect(cap, select(cap, []))
        html = htmlreport.build([prof])
        Path(args[1]).write_text(html, encoding="utf-8")
        size = len(html.encode())
        events = prof.events
    elif op == "diff":
        from aether_rec.ops.diff import compare
        from aether_rec.ops.profile import collect

        profs = []
        for p in args[:2]:
            with aether_rec.open(p) as cap:
                profs.append(collect(cap, select(cap, []), top=0, max_columns=1, tables=()))
        compare(profs[0], profs[1])
        events = sum(p.events for p in profs)
    elif op == "plot heatmap":
        from aether_rec.ops.plot import draw
        from aether_rec.ops.profile import collect

        with aether_rec.open(args[0]) as cap:
            prof = collect(cap, select(cap, []), top=0, tables=())
        draw(prof, "heatmap", args[1])
        events = prof.events
    elif op == "split":
        # Where report's time goes, one step after the other in one thread (CPU time): reading
        # and decoding the chunks, and binning them. report runs both steps on each of two
        # threads (a collector per thread, merged at the end), so on two cores the rate is
        # bounded by their sum over two.
        from aether_rec.ops.profile import TABLES, Profile, _Collector, _columns, plan_columns

        with aether_rec.open(args[0]) as cap:
            sel = select(cap, [])
            c0 = time.process_time()
            chunks = list(sel.chunks(cap, ordered=False, columns=_columns(sel, None, TABLES)))
            c1 = time.process_time()
            col = _Collector(Profile("bench", *plan_columns(cap, sel), None), 20, None, TABLES)
            for ch in chunks:
                col.add(ch)
            col.finish()
            c2 = time.process_time()
        events = sum(ch.n for ch in chunks)
        print(json.dumps({"seconds": time.perf_counter() - t, "events": events, "bytes": None,
                          "decode_ns": (c1 - c0) / events * 1e9, "bin_ns": (c2 - c1) / events * 1e9}))
        return
    else:
        raise SystemExit(f"unknown op {op}")
    print(json.dumps({"seconds": time.perf_counter() - t, "events": events, "bytes": size}))


def run_child(op: str, args: list[str]) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", op, *args]
    u = run_tree(cmd, tag="report", check=False)
    if u.returncode != 0:
        raise SystemExit(f"{op} failed:\n{u.stderr.decode(errors='replace')}")
    res: dict[str, Any] = json.loads(u.stdout.decode().strip().splitlines()[-1])
    res["rss_mb"] = u.peak_mb  # VmHWM of the tree, from outside (never ru_maxrss: it carries ours)
    res["cpu_s"] = u.cpu_s  # both threads (reader and analysis)
    return res


def ensure_capture(n: int, seed: int = 1) -> Path:
    path = OUT / f"report-{n}-{seed}.aio"
    if not path.exists():
        sys.path.insert(0, str(ROOT))
        from aether_rec.format.synth import generate

        OUT.mkdir(parents=True, exist_ok=True)
        generate(str(path), n, seed=seed)
    return path


def measure(op: str, args: list[str], runs: int) -> dict[str, Any]:
    res = [run_child(op, args) for _ in range(runs)]
    if "decode_ns" in res[0]:
        for k in ("decode_ns", "bin_ns"):
            print(f"  split: {k} {statistics.median(r[k] for r in res):.0f} per event (median of {runs})")
    return {
        "seconds": statistics.median(r["seconds"] for r in res),
        "cpu_s": statistics.median(r["cpu_s"] for r in res),
        "events": res[0]["events"],
        "rss_mb": max(r["rss_mb"] for r in res),
        "bytes": res[0]["bytes"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--sizes", default="1000000", help="smaller sizes for the flat-memory check (comma list)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--ops", default=",".join(OPS), help=f"comma list of: {', '.join(OPS)}")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a.child[0], a.child[1:])
        return
    ops = [o.strip() for o in a.ops.split(",") if o.strip()]
    sizes = sorted({a.events, *(int(s) for s in a.sizes.split(",") if s.strip())}, reverse=True)
    print(f"report/diff/plot against stats, median of {a.runs} runs, {today()}, {os.cpu_count()} CPUs "
          "(bench/bench_report.py; peak MB: the process tree's VmHWM, from outside)")
    print(f"{'operation':<14} {'events':>12} {'median s':>9} {'M ev/s':>8} {'x stats':>8} "
          f"{'CPU ns/ev':>10} {'peak MB':>8} {'output':>10}")
    with tempfile.TemporaryDirectory(dir=str(OUT) if OUT.exists() else None) as tmp:
        for n in sizes:
            cap = ensure_capture(n)
            other = ensure_capture(n, seed=2)
            peer = None
            for op in ops:
                args = {
                    "stats": [str(cap)],
                    "report": [str(cap), f"{tmp}/r.html"],
                    "diff": [str(cap), str(other)],
                    "plot heatmap": [str(cap), f"{tmp}/h.png"],
                    "split": [str(cap)],
                }[op]
                m = measure(op, args, a.runs)
                rate = m["events"] / m["seconds"]
                if op == "stats":
                    peer = rate
                ratio = f"{rate / peer:.2f}" if peer else "-"
                out = f"{m['bytes'] / 1048576:.2f} MiB" if m["bytes"] else "-"
                cpu = m["cpu_s"] / m["events"] * 1e9
                print(f"{op:<14} {m['events']:>12,} {m['seconds']:>9.2f} {rate / 1e6:>8.1f} {ratio:>8} "
                      f"{cpu:>10.0f} {m['rss_mb']:>8.0f} {out:>10}", flush=True)


if __name__ == "__main__":
    main()
