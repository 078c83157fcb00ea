"""Format benchmark: write and read speed, bytes per event, memory while iterating.

Peers measured in the same run, on the same events:
  raw    the kernel's 96-byte records written as they are (what a naive recorder stores)
  raw+z  the same records through one zstd stream (level 3), like `perf record -z`

    .venv/bin/python bench/bench_format.py [--events 10000000]

Each figure is the median of --repeat runs. Reading is measured in a fresh subprocess so
that its peak memory (VmHWM) is its own.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import zstandard

from aether_rec.format.chunk import Chunk
from aether_rec.format.synth import PROCS, make_batch
from aether_rec.format.writer import CaptureWriter
from aether_rec.schema import KERNEL_EVENT_DTYPE


def make_batches(n: int, batch: int = 131072) -> list[Chunk]:
    rng = np.random.default_rng(1)
    share = np.array([p[3] for p in PROCS])
    share /= share.sum()
    comms = [p[0] for p in PROCS]
    paths = [f"/var/lib/{c.split('/')[0]}/data{i}.db" for c in comms for i in range(4)] + ["vda", "nvme0n1"]
    out, t, done = [], 10**12, 0
    while done < n:
        k = min(batch, n - done)
        chunk, t = make_batch(rng, k, t, 200_000.0, 0.2, share, len(paths))
        chunk.dicts = {"comm": comms, "path": paths}
        out.append(chunk)
        done += k
    return out


def as_records(chunk: Chunk) -> np.ndarray:
    rec = np.zeros(chunk.n, KERNEL_EVENT_DTYPE)
    for name in KERNEL_EVENT_DTYPE.names or ():
        if name == "comm":
            rec[name] = np.array([s.encode() for s in chunk.dictionary("comm")])[chunk.column("comm")]
        else:
            rec[name] = chunk.column(name)
    return rec


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def read_child(path: str) -> None:
    import aether_rec

    t = time.perf_counter()
    n = 0
    with aether_rec.open(path) as cap:
        for chunk in cap.chunks(ordered=False):
            n += chunk.n
    dt = time.perf_counter() - t
    print(f"{n} {dt} {peak_rss_mb()}")


def peak_rss_mb() -> float:
    """This process's own peak RSS (VmHWM). ru_maxrss is not used: Linux carries the
    parent's high-water mark across fork and exec into it."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--child-read", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_read:
        read_child(args.child_read)
        return
    n = args.events
    print(f"generating {n:,} synthetic events...", file=sys.stderr)
    batches = make_batches(n)
    records = [as_records(c) for c in batches]
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR", "/var/tmp")) as d:
        aio, raw, rawz = (os.path.join(d, x) for x in ("b.aio", "b.raw", "b.raw.zst"))
        w_aio, w_raw, w_rawz = [], [], []
        for _ in range(args.repeat):
            for p in (aio, raw, rawz):
                if os.path.exists(p):
                    os.unlink(p)

            def write_aio() -> None:
                with CaptureWriter(aio, {"synthetic": True}) as w:
                    for c in batches:
                        w.write_events(c)

            def write_raw() -> None:
                with open(raw, "wb") as f:
                    for r in records:
                        f.write(r.tobytes())

            def write_rawz() -> None:
                with open(rawz, "wb") as f, zstandard.ZstdCompressor(level=3).stream_writer(f) as z:
                    for r in records:
                        z.write(r.tobytes())

            w_aio.append(timed(write_aio))
            w_raw.append(timed(write_raw))
            w_rawz.append(timed(write_rawz))
        reads, rss = [], []
        for _ in range(args.repeat):
            out = subprocess.run([sys.executable, __file__, "--child-read", aio], capture_output=True,
                                 text=True, check=True).stdout.split()
            assert int(out[0]) == n
            reads.append(float(out[1]))
            rss.append(float(out[2]))
        t_rawread = statistics.median(
            timed(lambda: np.fromfile(raw, KERNEL_EVENT_DTYPE)) for _ in range(args.repeat)
        )
        sizes = {p: os.path.getsize(p) for p in (aio, raw, rawz)}
    med = statistics.median
    print(f"\nFormat benchmark, {n:,} events, median of {args.repeat} ({time.strftime('%Y-%m-%d')}, "
          f"{os.cpu_count()} CPUs)")
    print(f"{'':24}{'.aio':>14}{'raw records':>14}{'raw + zstd':>14}")
    print(f"{'write, M events/s':24}{n / med(w_aio) / 1e6:>14.2f}{n / med(w_raw) / 1e6:>14.2f}"
          f"{n / med(w_rawz) / 1e6:>14.2f}")
    print(f"{'bytes per event':24}{sizes[aio] / n:>14.2f}{sizes[raw] / n:>14.2f}{sizes[rawz] / n:>14.2f}")
    print(f"{'read to numpy, M ev/s':24}{n / med(reads) / 1e6:>14.2f}{n / t_rawread / 1e6:>14.2f}{'':>14}")
    print(f"{'read peak RSS, MB':24}{med(rss):>14.0f}{n * 96 / 2**20:>14.0f}{'':>14}")
    print(f"\n.aio is {sizes[rawz] / sizes[aio]:.1f}x smaller than raw+zstd and "
          f"{sizes[raw] / sizes[aio]:.1f}x smaller than raw records; reading .aio iterates chunk by chunk "
          f"(memory flat), the raw peer loads the whole file.")


if __name__ == "__main__":
    main()
