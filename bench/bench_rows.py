#!/usr/bin/env python3
"""Where the time of a row output (replay, export csv/jsonl) goes, per row, and how it scales.

Rows are built a slice at a time (ops/rows.py) as byte matrices (ops/colfmt.py): the fields
formatted into blocks of NUL-padded bytes, the blocks copied into the matrix a tile of rows
at a time, the NULs compressed out. On the first slices of a synthetic capture (cached in
bench/out/), medians of --repeat runs, in this process:

- per row on one thread: formatting the fields, copying them into tiles, compressing the
  padding out, and two alternatives to numpy's boolean compress (bytes.translate and
  bytes.replace, which give the same bytes);
- rows per second through ``rows.slice_bytes`` (what export writes), on one thread and on
  rows.WORKERS threads, and two processes running the one-thread case at once: how far two
  threads are from two cores.

The C allocator is set as the CLI sets it for replay and export (aether_rec/allocator.py).

    .venv/bin/python bench/bench_rows.py                 # 2 M events, every format
    .venv/bin/python bench/bench_rows.py --formats jsonl --repeat 5
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import median, today  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out"
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

import aether_rec  # noqa: E402
from aether_rec.allocator import tune_allocator  # noqa: E402
from aether_rec.format.chunk import Chunk  # noqa: E402
from aether_rec.ops import colfmt, rows  # noqa: E402


def capture(n: int) -> Path:
    path = OUT / f"rows-{n}.aio"
    if not path.exists():
        from aether_rec.format.synth import generate

        OUT.mkdir(exist_ok=True)
        generate(str(path), n, seed=0)
    return path


def load(path: Path, slices: int) -> tuple[list[Chunk], list[Chunk], Callable[..., object]]:
    """The capture's chunks, its first ``slices`` slices of rows.SLICE events, and its clock."""
    cap = aether_rec.open(str(path))
    chunks = list(cap.chunks())
    parts = [c.take(slice(a, a + rows.SLICE)) for c in chunks for a in range(0, c.n, rows.SLICE)]
    return chunks, parts[:slices], cap.mono_to_real


def phases(fmt: str, parts: list[Chunk], to_real: Callable[..., object], repeat: int) -> dict[str, float]:
    """ns per row of each phase, one thread."""
    n = sum(p.n for p in parts)
    runs: dict[str, list[float]] = {k: [] for k in ("fields", "tiles", "compress", "translate", "replace")}
    for _ in range(repeat):
        t = dict.fromkeys(runs, 0.0)
        for p in parts:
            a = time.perf_counter()
            m = rows._matrix(fmt, p, to_real, "", "source" in p.dicts)  # type: ignore[arg-type]
            t["fields"] += time.perf_counter() - a
            layout = m._layout()
            buf = np.empty((colfmt.TILE, layout[0]), dtype=np.uint8)
            for first in range(0, m.n, colfmt.TILE):
                tile = buf[: min(colfmt.TILE, m.n - first)]
                a = time.perf_counter()
                m._fill(tile, first, layout)
                b = time.perf_counter()
                want = tile[tile != 0].tobytes()
                c = time.perf_counter()
                got = tile.tobytes().translate(None, b"\0")
                d = time.perf_counter()
                got2 = tile.tobytes().replace(b"\0", b"")
                e = time.perf_counter()
                assert got == want == got2
                t["tiles"] += b - a
                t["compress"] += c - b
                t["translate"] += d - c
                t["replace"] += e - d
        for k in runs:
            runs[k].append(t[k])
    return {k: 1e9 * median(v) / n for k, v in runs.items()}


def throughput(fmt: str, chunks: list[Chunk], to_real: Callable[..., object], workers: int,
               repeat: int) -> float:
    """Rows per second through rows.slice_bytes with ``workers`` threads (median)."""
    rows.WORKERS = workers
    n = sum(c.n for c in chunks)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        for c in chunks:
            for _b in rows.slice_bytes(fmt, c, to_real):  # type: ignore[arg-type]
                pass
        times.append(time.perf_counter() - t)
    return n / median(times)


def child(fmt: str, path: str, chunks: int, repeat: int) -> None:
    all_chunks, _, to_real = load(Path(path), 0)
    print(throughput(fmt, all_chunks[:chunks], to_real, 1, repeat))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=2_000_000)
    ap.add_argument("--slices", type=int, default=20, help="slices timed phase by phase")
    ap.add_argument("--chunks", type=int, default=8, help="chunks timed for rows per second")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--formats", default="text,jsonl,csv")
    ap.add_argument("--child", nargs=4, metavar=("FMT", "PATH", "CHUNKS", "REPEAT"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    tune_allocator()  # as the CLI does for replay and export (aether_rec/allocator.py)
    if a.child:
        child(a.child[0], a.child[1], int(a.child[2]), int(a.child[3]))
        return
    path = capture(a.events)
    chunks, parts, to_real = load(path, a.slices)
    chunks = chunks[: a.chunks]
    workers = rows.WORKERS
    print(f"Row outputs, {sum(p.n for p in parts):,} rows phase by phase and {sum(c.n for c in chunks):,} "
          f"through slice_bytes, medians of {a.repeat}, {today()} (bench/bench_rows.py)")
    print(f"{'format':7} {'fields':>7} {'tiles':>6} {'compress':>9} {'translate':>10} {'replace':>8}   "
          f"ns/row, one thread | M rows/s: 1 thread, {workers} threads, 2 processes (each, at once)")
    for fmt in a.formats.split(","):
        ph = phases(fmt, parts, to_real, a.repeat)
        one = throughput(fmt, chunks, to_real, 1, a.repeat)
        many = throughput(fmt, chunks, to_real, workers, a.repeat)
        rows.WORKERS = workers
        argv = [sys.executable, __file__, "--child", fmt, str(path), str(a.chunks), str(a.repeat)]
        procs = [subprocess.Popen(argv, stdout=subprocess.PIPE) for _ in range(2)]
        each = [float(p.communicate()[0]) for p in procs]
        print(f"{fmt:7} {ph['fields']:7.0f} {ph['tiles']:6.0f} {ph['compress']:9.0f} {ph['translate']:10.0f} "
              f"{ph['replace']:8.0f}   {one / 1e6:.2f}, {many / 1e6:.2f} ({many / one:.2f}x), "
              f"{min(each) / 1e6:.2f} and {max(each) / 1e6:.2f} ({sum(each) / one:.2f}x)")


if __name__ == "__main__":
    main()
