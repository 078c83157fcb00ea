"""Format benchmark: write and read speed, bytes per event, memory while iterating.

Peers measured in the same run, on the same events:
  raw    the kernel's 96-byte records written as they are (what a naive recorder stores)
  raw+z  the same records through one zstd stream at level 1, as `perf record -z` writes
         (perf's default level is 1; .aio chunks are written at level ZSTD_LEVEL below)

    .venv/bin/python bench/bench_format.py [--events 10000000] [--repeat 3]

Each figure is the median of --repeat (>= 3) runs. Every read (the .aio reader and the raw
peer, which loads the whole file as a numpy array) runs in a fresh subprocess; its peak
memory is measured from outside over the process tree (bench/measure.py) and is also the
child's own VmHWM: measured, never computed from the file size.
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

import numpy as np
import zstandard

from aether_rec.format.chunk import Chunk
from aether_rec.format.synth import PROCS, make_batch
from aether_rec.format.writer import CaptureWriter
from aether_rec.schema import KERNEL_EVENT_DTYPE

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import run_tree, today  # noqa: E402

ZSTD_LEVEL = 1  # the .aio writer's level and perf record -z's default


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


def read_child(path: str, kind: str) -> None:
    t = time.perf_counter()
    n = 0
    if kind == "aio":
        import aether_rec

        with aether_rec.open(path) as cap:
            for chunk in cap.chunks(ordered=False):
                for name in chunk.columns:
                    chunk.column(name)
                n += chunk.n
    else:  # the raw peer: the whole file as one array
        n = len(np.fromfile(path, KERNEL_EVENT_DTYPE))
    dt = time.perf_counter() - t
    print(json.dumps({"events": n, "seconds": dt, "own_mb": peak_rss_mb()}))


def peak_rss_mb() -> float:
    """This process's own peak RSS (VmHWM), never ru_maxrss (it carries the parent's peak)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def measured_read(path: str, kind: str) -> dict[str, float]:
    u = run_tree([sys.executable, __file__, "--child-read", kind, path], tag="fmt")
    res = json.loads(u.stdout.decode().split("\n")[-2])
    res["tree_mb"] = u.peak_mb
    return dict(res)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--child-read", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_read:
        read_child(args.child_read[1], args.child_read[0])
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
                with CaptureWriter(aio, {"synthetic": True}, level=ZSTD_LEVEL) as w:
                    for c in batches:
                        w.write_events(c)

            def write_raw() -> None:
                with open(raw, "wb") as f:
                    for r in records:
                        f.write(r.tobytes())

            def write_rawz() -> None:
                with open(rawz, "wb") as f, zstandard.ZstdCompressor(level=ZSTD_LEVEL).stream_writer(f) as z:
                    for r in records:
                        z.write(r.tobytes())

            w_aio.append(timed(write_aio))
            w_raw.append(timed(write_raw))
            w_rawz.append(timed(write_rawz))
        aio_reads = [measured_read(aio, "aio") for _ in range(args.repeat)]
        raw_reads = [measured_read(raw, "raw") for _ in range(args.repeat)]
        assert all(r["events"] == n for r in aio_reads + raw_reads)
        sizes = {p: os.path.getsize(p) for p in (aio, raw, rawz)}
    med = statistics.median
    print(f"\nFormat benchmark, {n:,} events, median of {args.repeat} ({today()}, "
          f"{os.cpu_count()} CPUs, zstd level {ZSTD_LEVEL} for both; bench/bench_format.py)")
    print(f"{'':24}{'.aio':>14}{'raw records':>14}{'raw + zstd':>14}")
    print(f"{'write, M events/s':24}{n / med(w_aio) / 1e6:>14.2f}{n / med(w_raw) / 1e6:>14.2f}"
          f"{n / med(w_rawz) / 1e6:>14.2f}")
    print(f"{'bytes per event':24}{sizes[aio] / n:>14.2f}{sizes[raw] / n:>14.2f}{sizes[rawz] / n:>14.2f}")
    def m(rs: list[dict[str, float]], k: str) -> float:
        return float(med([r[k] for r in rs]))

    print(f"{'read to numpy, M ev/s':24}{n / m(aio_reads, 'seconds') / 1e6:>14.2f}"
          f"{n / m(raw_reads, 'seconds') / 1e6:>14.2f}{'':>14}")
    print(f"{'read peak, tree MB':24}{m(aio_reads, 'tree_mb'):>14.0f}{m(raw_reads, 'tree_mb'):>14.0f}"
          f"{'':>14}")
    print(f"{'read peak, own VmHWM MB':24}{m(aio_reads, 'own_mb'):>14.0f}{m(raw_reads, 'own_mb'):>14.0f}"
          f"{'':>14}")
    print(f"\n.aio is {sizes[rawz] / sizes[aio]:.1f}x smaller than raw+zstd and "
          f"{sizes[raw] / sizes[aio]:.1f}x smaller than raw records; reading .aio iterates chunk by chunk "
          f"(memory flat), the raw peer loads the whole file.")


if __name__ == "__main__":
    main()
