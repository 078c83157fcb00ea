"""A synthetic event generator for tests and benchmarks.

Captures it writes say so in their header (``synthetic: true`` and the generator's
parameters), so nobody mistakes them for recordings.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any, BinaryIO

import numpy as np

from aether_rec.format.chunk import Chunk
from aether_rec.format.records import Loss
from aether_rec.format.writer import CaptureWriter
from aether_rec.schema import LAYER_CODE, OP_CODE

PROCS = [
    # comm, pid, number of threads, share of events
    ("postgres", 2201, 4, 0.35),
    ("nginx", 1830, 2, 0.15),
    ("java", 3377, 8, 0.2),
    ("rsync", 4410, 1, 0.1),
    ("jbd2/vda1-8", 311, 1, 0.05),
    ("kworker/u4:2", 98, 1, 0.15),
]
SYSCALL_OPS = ["read", "write", "pread", "pwrite", "fsync", "fdatasync", "readv", "writev"]
SYSCALL_P = [0.25, 0.2, 0.25, 0.15, 0.03, 0.02, 0.05, 0.05]
BLOCK_OPS = ["read", "write", "flush", "discard"]
BLOCK_P = [0.45, 0.5, 0.04, 0.01]
SIZES = np.array([512, 4096, 8192, 16384, 65536, 131072, 1 << 20], dtype=np.uint64)
DEVS = [(254 << 20) | 0, (259 << 20) | 1]
DEV_NAMES = ["vda", "nvme0n1"]


def generate(
    out: str | os.PathLike[str] | BinaryIO,
    n_events: int,
    *,
    seed: int = 0,
    rate: float = 200_000.0,
    start_ns: int = 1_000_000_000_000,
    block_share: float = 0.2,
    losses: int = 0,
    batch: int = 131072,
    header: dict[str, Any] | None = None,
    overwrite: bool = False,
    chunk_events: int = 131072,
) -> dict[str, Any]:
    """Write a synthetic capture of ``n_events`` events at about ``rate`` events/s.

    Returns the writer's header. ``losses`` adds that many loss blocks spread over the
    capture (each of 1..1000 events on a random CPU).
    """
    rng = np.random.default_rng(seed)
    params = {"seed": seed, "n_events": n_events, "rate": rate, "block_share": block_share}
    hdr: dict[str, Any] = {
        "synthetic": True,
        "generator": params,
        "command": ["aether-rec", "synthetic"],
        "layers": ["syscall", "block"],
        "hooks": [{"layer": "synthetic", "hook": "aether_rec.format.synth"}],
        "clock": [[start_ns, 1_767_225_600_000_000_000]],  # 2026-01-01T00:00:00Z
    }
    hdr.update(header or {})
    comms = [p[0] for p in PROCS]
    paths = [f"/var/lib/{c.split('/')[0]}/data{i}.db" for c in comms for i in range(4)] + DEV_NAMES
    share = np.array([p[3] for p in PROCS])
    share /= share.sum()
    with CaptureWriter(out, hdr, overwrite=overwrite, chunk_events=chunk_events, atomic=True) as w:
        w.write_meta("procs", [{"pid": p[1], "comm": p[0]} for p in PROCS])
        w.write_meta("devices", [{"dev": d, "name": nm} for d, nm in zip(DEVS, DEV_NAMES)])
        t = start_ns
        # batch index -> loss blocks after it (several may land after the same batch)
        loss_at: Counter[int] = Counter(
            rng.integers(0, max(n_events // batch, 1), losses).tolist() if losses else [])
        done = 0
        k = 0
        while done < n_events:
            n = min(batch, n_events - done)
            chunk, t = make_batch(rng, n, t, rate, block_share, share, len(paths))
            chunk.dicts = {"comm": comms, "path": paths}
            w.write_events(chunk)
            for _ in range(loss_at[k]):
                cpu, count = int(rng.integers(0, 2)), int(rng.integers(1, 1000))
                w.write_loss(Loss(cpu, count, t - 1000, t, "perf_buffer"))
            done += n
            k += 1
        return w.header


def make_batch(
    rng: np.random.Generator, n: int, t: int, rate: float, block_share: float,
    share: np.ndarray, n_paths: int,
) -> tuple[Chunk, int]:
    """``n`` synthetic events after time ``t`` (ns) at about ``rate`` per second: the chunk
    (comm and path as codes into PROCS' names and ``n_paths`` paths) and its last ts."""
    gaps = rng.exponential(1e9 / rate, n).astype(np.uint64) + np.uint64(1)
    ts = np.uint64(t) + np.cumsum(gaps)
    proc = rng.choice(len(PROCS), n, p=share).astype(np.uint32)
    pids = np.array([p[1] for p in PROCS], dtype=np.uint32)[proc]
    nthreads = np.array([p[2] for p in PROCS], dtype=np.uint32)[proc]
    tids = pids + (rng.integers(0, 1 << 16, n).astype(np.uint32) % nthreads)
    is_block = rng.random(n) < block_share
    layer = np.where(is_block, LAYER_CODE["block"], LAYER_CODE["syscall"]).astype(np.uint8)
    sys_codes = np.array([OP_CODE[o] for o in SYSCALL_OPS], np.uint8)
    sys_op = sys_codes[rng.choice(len(SYSCALL_OPS), n, p=SYSCALL_P)]
    blk_op = np.array([OP_CODE[o] for o in BLOCK_OPS], np.uint8)[rng.choice(len(BLOCK_OPS), n, p=BLOCK_P)]
    op = np.where(is_block, blk_op, sys_op)
    size = SIZES[rng.integers(0, len(SIZES), n)]
    lat = rng.lognormal(np.where(is_block, 12.0, 8.5), 1.2).astype(np.uint64) + np.uint64(200)
    queue = np.where(is_block, (lat // np.uint64(4)), np.uint64(0)).astype(np.uint64)
    err = rng.random(n) < 0.002
    result = np.where(err, -np.array([5, 11, 28], np.int64)[rng.integers(0, 3, n)], size.astype(np.int64))
    fd = np.where(is_block, -1, 3 + proc.astype(np.int32) * 4 + rng.integers(0, 4, n).astype(np.int32))
    path = np.where(is_block, n_paths - 2 + (rng.random(n) < 0.3), proc * 4 + (fd - 3) % 4).astype(np.uint32)
    dev = np.where(is_block, np.array(DEVS, np.uint32)[(path - (n_paths - 2)) % 2], DEVS[0]).astype(np.uint32)
    offset = (rng.integers(0, 1 << 30, n).astype(np.int64) // 512) * 512
    cols = {
        "ts": ts,
        "lat": lat,
        "pid": pids,
        "tid": tids,
        "comm": proc,
        "cpu": rng.integers(0, 2, n).astype(np.uint16),
        "layer": layer,
        "op": op,
        "fd": fd.astype(np.int32),
        "dev": dev,
        "offset": offset,
        "bytes": size,
        "result": result.astype(np.int64),
        "queue": queue,
        "cgroup": np.full(n, 4242, np.uint64),
        "flags": np.zeros(n, np.uint32),
        "path": path,
    }
    return Chunk(n, cols), int(ts[-1])
