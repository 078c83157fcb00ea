#!/usr/bin/env python3
"""The `perf script` peer of `aether-rec stats`: latency percentiles per syscall from
`perf script -F tid,time,event --ns` on stdin (sys_enter_X / sys_exit_X paired per thread,
as aether-rec pairs them), printed as JSON. Percentiles are linear interpolation between
closest ranks, as DuckDB's quantile_cont and numpy's default.

    perf script -F tid,time,event --ns -i perf.data | python bench/perf_pct.py
"""

from __future__ import annotations

import json
import sys

import numpy as np

PCTS = (50.0, 90.0, 99.0, 99.9)


def main() -> None:
    start: dict[tuple[int, str], int] = {}
    lats: dict[str, list[int]] = {}
    for line in sys.stdin:
        parts = line.split()
        if len(parts) < 3:
            continue
        tid = int(parts[0])
        sec, _, frac = parts[1].rstrip(":").partition(".")
        ns = int(sec) * 1_000_000_000 + int(frac.ljust(9, "0")[:9])
        ev = parts[2].rstrip(":")
        if ev.startswith("syscalls:sys_enter_"):
            start[(tid, ev[19:])] = ns
        elif ev.startswith("syscalls:sys_exit_"):
            op = ev[18:]
            t0 = start.pop((tid, op), None)
            if t0 is not None:
                lats.setdefault(op, []).append(ns - t0)
    out = {}
    for op, xs in sorted(lats.items()):
        arr = np.asarray(xs, dtype=np.int64)
        pct = np.percentile(arr, PCTS)
        out[op] = {"count": int(arr.size), **{f"p{p:g}": float(v) for p, v in zip(PCTS, pct)}}
    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    main()
