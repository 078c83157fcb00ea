#!/usr/bin/env python3
"""Start-up of `aether-rec record`: time to probes attached and to the first event, the first
recording on a kernel (compiled by bcc with clang) against the next ones (loaded from the
compiled-program cache), and `perf record` on the same tracepoints as the peer.

    sudo .venv/bin/python bench/bench_startup.py [--repeat 3]

Each run records ``-- dd if=/dev/zero of=/dev/null bs=512 count=1`` with the default layers.
Times are from just before the recorder is started (CLOCK_MONOTONIC, the clock of the BPF
timestamps) to: the first probe attached (the capture header's ``recorder.attached_ns``), the
first event of dd in the capture, and the recorder's exit. "cold" runs get an empty cache
directory (AETHER_REC_CACHE): headers, BTF layout and program are all made anew; "warm" runs
reuse the one of the run before. perf records the same 4 syscall tracepoints of dd's read and
write (``perf record -e ... -- dd ...``), its exit time being the peer of ours. Peak memory is
the whole process tree's (bench/measure.py), medians of --repeat runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import Tree, median, today  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DD = ["dd", "if=/dev/zero", "of=/dev/null", "bs=512", "count=1", "status=none"]
PERF_EVENTS = ["syscalls:sys_enter_read", "syscalls:sys_exit_read", "syscalls:sys_enter_write",
               "syscalls:sys_exit_write"]


def record(out: Path, cache: Path) -> dict[str, float]:
    import aether_rec

    exe = ROOT / ".venv" / "bin" / "aether-rec"
    env = dict(os.environ, AETHER_REC_CACHE=str(cache))
    t0 = time.monotonic_ns()
    with Tree([str(exe), "record", "-o", str(out), "--force", "--", *DD], tag="startup", env=env,
              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as t:
        u = t.wait(timeout=600)
    if u.returncode != 0:
        raise SystemExit(f"bench_startup: record failed: {u.stderr.decode()[-500:]}")
    with aether_rec.open(str(out)) as cap:
        rec = cap.header["recorder"]
        cols = cap.to_numpy()
        dd = cols["comm"] == "dd"
        first = int(cols["ts"][dd].min()) if dd.any() else 0
    return {"attach_s": (rec["attached_ns"] - t0) / 1e9,
            "first_s": (first - t0) / 1e9 if first else float("nan"), "exit_s": u.seconds,
            "peak_mb": u.peak_mb, "program": 1.0 if rec.get("program") == "cache" else 0.0}


def perf(out: Path) -> dict[str, float]:
    argv = ["perf", "record", "-q", "-o", str(out)]
    for e in PERF_EVENTS:
        argv += ["-e", e]
    with Tree([*argv, "--", *DD], tag="perf", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as t:
        u = t.wait(timeout=600)
    if u.returncode != 0:
        raise SystemExit(f"bench_startup: perf record failed: {u.stderr.decode()[-300:]}")
    return {"exit_s": u.seconds, "peak_mb": u.peak_mb}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_startup: needs root (it records)")
    if shutil.which("perf") is None:
        sys.exit("bench_startup: perf is not installed (scripts/setup.sh installs linux-perf)")
    tmp = Path(tempfile.mkdtemp(prefix="aether-startup-"))
    rows: dict[str, list[dict[str, float]]] = {"cold": [], "warm": [], "perf": []}
    try:
        for i in range(a.repeat):
            cache = tmp / f"cache{i}"
            rows["cold"].append(record(tmp / "c.aio", cache))
            rows["warm"].append(record(tmp / "w.aio", cache))
            rows["perf"].append(perf(tmp / "perf.data"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if not all(r["program"] == 1.0 for r in rows["warm"]) or any(r["program"] for r in rows["cold"]):
        sys.exit("bench_startup: the warm runs did not load from the cache (or a cold one did)")
    print(f"# bench_startup.py, {today()}, medians of {a.repeat} runs, {os.cpu_count()} CPUs, "
          f"kernel {os.uname().release}")
    print("| run | to probes attached | to dd's first event | to exit | peak MB (tree) | exit x perf |")
    print("|---|---|---|---|---|---|")
    pe = median([r["exit_s"] for r in rows["perf"]])
    for name, label in (("cold", "aether-rec, first on this kernel (bcc + clang)"),
                        ("warm", "aether-rec, next ones (program cache)")):
        rs = rows[name]
        ex = median([r["exit_s"] for r in rs])
        print(f"| {label} | {median([r['attach_s'] for r in rs]):.2f} s | "
              f"{median([r['first_s'] for r in rs]):.2f} s | {ex:.2f} s | "
              f"{median([r['peak_mb'] for r in rs]):.0f} | {ex / pe:.1f} |")
    print(f"| perf record, the same 4 syscall tracepoints | | | {pe:.2f} s | "
          f"{median([r['peak_mb'] for r in rows['perf']]):.0f} | 1.0 |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
