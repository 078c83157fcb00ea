"""A synthetic capture shaped like a real recording, for the Perfetto export's tests and
benchmark: each thread issues its syscalls one after the other (they never overlap on a
thread), a share of them cause block requests that run inside them on one of two devices
(so requests overlap on a device, as in a queue), and a ``link`` column gives a syscall and the
block requests it caused the same non-zero id. The header says ``synthetic: true``.
"""

from __future__ import annotations

import os
from typing import Any, BinaryIO

import numpy as np

from aether_rec.format.writer import CaptureWriter
from aether_rec.schema import LAYER_CODE, OP_CODE

THREADS = [("postgres", 2201, 2201 + k) for k in range(6)] + [("java", 3377, 3377 + k) for k in range(4)]
DEVS = [((254 << 20) | 0, "vda"), ((259 << 20) | 1, "nvme0n1")]
SYS_OPS = np.array([OP_CODE[o] for o in ("pread", "pwrite", "read", "write", "fsync")], np.uint8)


def generate_traced(
    out: str | os.PathLike[str] | BinaryIO,
    n_syscalls: int,
    *,
    seed: int = 0,
    linked_share: float = 0.25,
    start_ns: int = 5_000_000_000,
    chunk_events: int = 131072,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write about ``n_syscalls * (1 + linked_share)`` events; returns counts of what was written."""
    rng = np.random.default_rng(seed)
    nt = len(THREADS)
    header = {
        "synthetic": True,
        "generator": {"kind": "traced", "seed": seed, "n_syscalls": n_syscalls},
        "layers": ["syscall", "block"],
        "clock": [[start_ns, 1_767_225_600_000_000_000]],
    }
    thread = rng.integers(0, nt, n_syscalls)
    order = np.argsort(thread, kind="stable")
    lat = (rng.lognormal(9.0, 1.0, n_syscalls) + 500).astype(np.uint64)
    gap = (rng.exponential(20_000.0, n_syscalls) + 100).astype(np.uint64)
    # per thread: start = previous start + previous latency + a gap (no overlap on a thread)
    ts = np.empty(n_syscalls, dtype=np.uint64)
    t_sorted = thread[order]
    steps = (lat + gap)[order]
    cum = np.cumsum(steps)
    firsts = np.flatnonzero(np.r_[True, t_sorted[1:] != t_sorted[:-1]])
    seg_base = np.repeat(cum[firsts] - steps[firsts], np.diff(np.r_[firsts, n_syscalls]))
    ts[order] = np.uint64(start_ns) + (cum - steps - seg_base) + (t_sorted.astype(np.uint64) * np.uint64(7))
    op = SYS_OPS[rng.integers(0, len(SYS_OPS), n_syscalls)]
    link = np.zeros(n_syscalls, dtype=np.uint64)
    linked = np.flatnonzero(rng.random(n_syscalls) < linked_share)
    link[linked] = np.arange(1, len(linked) + 1, dtype=np.uint64)
    # one block request per linked syscall, inside it
    b_ts = ts[linked] + lat[linked] // np.uint64(8)
    b_lat = lat[linked] // np.uint64(2) + np.uint64(100)
    b_dev = rng.integers(0, len(DEVS), len(linked))
    comm = np.array([t[0] for t in THREADS], dtype=object)
    pid = np.array([t[1] for t in THREADS], dtype=np.uint32)
    tid = np.array([t[2] for t in THREADS], dtype=np.uint32)
    cols: dict[str, Any] = {
        "ts": np.concatenate([ts, b_ts]),
        "lat": np.concatenate([lat, b_lat]),
        "pid": np.concatenate([pid[thread], pid[thread[linked]]]),
        "tid": np.concatenate([tid[thread], tid[thread[linked]]]),
        "comm": np.concatenate([comm[thread], comm[thread[linked]]]),
        "layer": np.concatenate([np.full(n_syscalls, LAYER_CODE["syscall"], np.uint8),
                                 np.full(len(linked), LAYER_CODE["block"], np.uint8)]),
        "op": np.concatenate([op, np.where(op[linked] == OP_CODE["pwrite"], OP_CODE["write"],
                                           OP_CODE["read"]).astype(np.uint8)]),
        "dev": np.concatenate([np.zeros(n_syscalls, np.uint32),
                               np.array([d[0] for d in DEVS], np.uint32)[b_dev]]),
        "bytes": np.full(n_syscalls + len(linked), 4096, np.uint64),
        "link": np.concatenate([link, link[linked]]),
    }
    by_ts = np.argsort(cols["ts"], kind="stable")
    cols = {k: v[by_ts] for k, v in cols.items()}
    n = len(by_ts)
    with CaptureWriter(out, header, overwrite=overwrite, chunk_events=chunk_events) as w:
        w.write_meta("devices", [{"dev": d, "name": nm} for d, nm in DEVS])
        for i in range(0, n, chunk_events):
            w.write_events({k: v[i : i + chunk_events] for k, v in cols.items()})
    return {"events": n, "syscalls": n_syscalls, "block": len(linked), "links": len(linked)}
