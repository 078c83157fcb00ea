"""How true is a capture? fio's own per-I/O logs against aether-rec's events, same run.

For each engine (io_uring, libaio, psync) and queue depth, fio runs 4 KiB random reads and
writes with direct=1 under ``aether-rec record -- fio ...``; fio writes every I/O's
completion latency (clat) to its log. The script prints, per run:

* coverage: fio's I/Os present in the capture (io_uring events, pread/pwrite syscalls) and
  block requests linked to their syscall or io_uring request;
* latency: p50/p90/p99 of fio's clat and of the capture's events for the same I/Os, and
  their ratio (the kernel's view is expected a little below fio's, which measures from
  user space around it);
* what libaio's per-I/O latency looks like from the block layer (io_submit does not give
  one per iocb).

Run as root: ``sudo .venv/bin/python bench/bench_truth.py [--seconds 15] [--depths 8,32]``.
It needs fio (scripts/setup.sh installs it) and a directory on a real block device
(``--dir``, default /var/tmp).
"""

from __future__ import annotations

import argparse
import datetime
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

import aether_rec
from aether_rec.schema import LAYER_CODE, OP_CODE

CLI = [sys.executable, "-c", "from aether_rec.cli import main; main()"]


def fio_cmd(d: Path, engine: str, depth: int, seconds: float) -> list[str]:
    fio = shutil.which("fio")
    if fio is None:
        raise SystemExit("bench_truth: fio is not installed (scripts/setup.sh installs it)")
    return [
        fio, "--name=t", f"--filename={d / 't.dat'}", "--size=256M", f"--ioengine={engine}",
        f"--iodepth={depth}", "--direct=1", "--rw=randrw", "--bs=4k", f"--runtime={seconds}",
        "--time_based=1", "--norandommap=1", "--randrepeat=0", f"--write_lat_log={d / 't'}",
        "--log_avg_msec=0", "--per_job_logs=0", "--output=/dev/null",
    ]


def fio_clat(d: Path) -> np.ndarray:
    return np.loadtxt(d / "t_clat.log", delimiter=",", dtype=np.int64, ndmin=2)


def pct(a: np.ndarray, q: float) -> float:
    return float(np.quantile(a, q)) if len(a) else float("nan")


def run(d: Path, engine: str, depth: int, seconds: float) -> dict[str, Any]:
    out = d / "t.aio"
    cmd = [*CLI, "record", "-o", str(out), "--force", "--", *fio_cmd(d, engine, depth, seconds)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"bench_truth: record failed: {r.stderr.strip().splitlines()[-1:]}")
    clat = fio_clat(d)
    with aether_rec.open(str(out)) as cap:
        c = cap.to_numpy()
        lost = cap.lost
    path = np.array(c["path"], dtype=object)
    on = path == str(d / "t.dat")
    blk = (c["layer"] == LAYER_CODE["block"]) & (c["bytes"] == 4096)
    if engine == "io_uring":
        mine = (c["layer"] == LAYER_CODE["io_uring"]) & on
    elif engine == "psync":
        rw = np.isin(c["op"], [OP_CODE["pread"], OP_CODE["pwrite"]])
        mine = (c["layer"] == LAYER_CODE["syscall"]) & on & rw
    else:  # libaio: the block request is the per-I/O latency there is (io_submit has no fd)
        mine = blk & (np.array(c["comm"], dtype=object) == "fio")
    ours = c["lat"][mine].astype(np.int64)
    theirs = clat[:, 1]
    row: dict[str, Any] = {
        "engine": engine, "depth": depth, "fio_ios": len(theirs), "captured": int(mine.sum()),
        "linked": float((blk & (c["link"] != 0)).sum() / max(1, blk.sum())), "lost": lost,
    }
    for q in (0.5, 0.9, 0.99):
        row[f"fio_p{int(q * 100)}"] = pct(theirs, q) / 1e3
        row[f"ours_p{int(q * 100)}"] = pct(ours, q) / 1e3
    return row


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--depths", default="8,32")
    ap.add_argument("--engines", default="io_uring,libaio,psync")
    ap.add_argument("--dir", default="/var/tmp")
    a = ap.parse_args(argv)
    print(f"bench_truth {datetime.date.today()}: fio {a.seconds:g} s per run, 4 KiB randrw direct=1")
    print(f"{'engine':<9} {'QD':>3} {'fio I/Os':>9} {'captured':>9} {'cover':>7} {'linked':>7} {'lost':>5}"
          f"  {'p50 fio/ours us':>16}  {'p90 fio/ours us':>16}  {'p99 fio/ours us':>16}")
    for engine in a.engines.split(","):
        for depth in ([1] if engine == "psync" else [int(x) for x in a.depths.split(",")]):
            with tempfile.TemporaryDirectory(dir=a.dir) as tmp:
                r = run(Path(tmp), engine, depth, a.seconds)
            cover = r["captured"] / max(1, r["fio_ios"])
            cells = "  ".join(f"{r[f'fio_p{p}']:7.1f}/{r[f'ours_p{p}']:<7.1f}" for p in (50, 90, 99))
            print(f"{engine:<9} {depth:>3} {r['fio_ios']:>9,} {r['captured']:>9,} {cover:>6.2%} "
                  f"{r['linked']:>6.1%} {r['lost']:>5}  {cells}")
    print("cover: the capture's io_uring events (io_uring), pread/pwrite syscalls (psync) or block\n"
          "requests (libaio: no per-iocb latency without kprobes) over fio's I/Os; linked: block\n"
          "requests carrying the syscall or io_uring request they were issued for.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
