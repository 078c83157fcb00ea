"""The ring-buffer transport's reading, without a kernel: a file laid out as the kernel
lays out a BPF ring buffer for its consumer (consumer page, producer page, then the data
area twice over), written by a fake producer; and what the recorder keeps of a batch.

The transport maps only a window of the data area at a time (so that a big ring does
not sit in the recorder's resident memory); these tests read rings that wrap many times
through windows smaller than the ring, with records crossing the ring's end, crossing a
window's end, busy (still being written) and discarded.
"""

from __future__ import annotations

import mmap
import os
import select
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aether_rec.format.chunk import Chunk
from aether_rec.format.reader import Capture
from aether_rec.format.writer import CaptureWriter
from aether_rec.recorder import ringbuf
from aether_rec.recorder.transport import joined
from aether_rec.schema import KERNEL_EVENT_DTYPE

PAGE = mmap.PAGESIZE
REC = ringbuf.RECORD


class _NoEpoll:
    """select.epoll for a regular file (which epoll refuses): never waits."""

    def register(self, fd: int, mask: int) -> None: ...

    def poll(self, timeout: float) -> list[Any]:
        return []

    def close(self) -> None: ...


class FakeRing:
    """A producer writing records into a file with the kernel's ring layout."""

    def __init__(self, path: Path, pages: int) -> None:
        self.size = pages * PAGE
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        os.ftruncate(self.fd, 2 * PAGE + 2 * self.size)
        self.map = mmap.mmap(self.fd, 2 * PAGE + 2 * self.size)
        self.prod = 0
        self.seq = 0

    def map_fd(self, name: str) -> int:  # what the transport asks the loaded program for
        return self.fd

    @property
    def cons(self) -> int:
        return int(np.frombuffer(self.map, np.uint64, 1, 0)[0])

    def put(self, n: int, flags: int = 0) -> list[int]:
        """Append ``n`` records (ts = a sequence number) with header bits ``flags``; the
        data area's second copy is kept equal to the first, as the kernel's double mapping
        shows it. Returns their sequence numbers."""
        assert self.prod + n * REC - self.cons <= self.size, "would overwrite unread records"
        seqs = []
        for _ in range(n):
            ev = np.zeros(1, KERNEL_EVENT_DTYPE)
            ev["ts"], ev["lat"], ev["pid"] = self.seq, 7, 4242
            body = np.uint32(KERNEL_EVENT_DTYPE.itemsize | flags).tobytes() + bytes(4) + ev.tobytes()
            for i, b in enumerate(body):
                q = (self.prod + i) % self.size
                self.map[2 * PAGE + q] = b
                self.map[2 * PAGE + self.size + q] = b
            seqs.append(self.seq)
            self.seq += 1
            self.prod += REC
        np.frombuffer(self.map, np.uint64, 1, PAGE)[0] = self.prod  # commit: the producer position
        return seqs

    def set_flags(self, seq_pos: int, flags: int) -> None:
        """Change the header bits of the record at ring position ``seq_pos``."""
        q = seq_pos % self.size
        word = np.uint32(KERNEL_EVENT_DTYPE.itemsize | flags).tobytes()
        for i, b in enumerate(word):
            self.map[2 * PAGE + (q + i) % self.size] = b
            self.map[2 * PAGE + self.size + (q + i) % self.size] = b


@pytest.fixture
def no_epoll(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(select, "epoll", _NoEpoll)


@pytest.mark.parametrize(("pages", "window", "batch"),
                         [(4, PAGE, None), (8, 3 * PAGE, 50), (2, 1 << 20, None)])
def test_every_record_is_read_once_in_order_through_moving_windows(
        tmp_path: Path, no_epoll: None, pages: int, window: int, batch: int | None) -> None:
    ring = FakeRing(tmp_path / "ring", pages)
    t = ringbuf.RingBufTransport(pages, drop_counter=None, batch=batch, window=window)
    t.open(ring)
    assert t.window == min(window, ring.size)
    want: list[int] = []
    got: list[int] = []
    per_round = ring.size // REC - 1  # up to a full ring between two reads
    for r in range(12):  # the ring wraps several times; records cross its end
        want += ring.put(per_round if r % 3 else 5)
        for _ in range(100):  # the session drains until nothing is left
            t.drain()
            if ring.cons == ring.prod:
                break
        ev, losses = t.take()
        assert ev.dtype == KERNEL_EVENT_DTYPE and not losses
        got += ev["ts"].tolist()
        assert set(ev["pid"].tolist()) <= {4242}
    assert got == want
    assert ring.cons == ring.prod  # every record's space given back to the producer
    t.close()


def test_a_busy_record_stops_the_read_and_a_discarded_one_is_skipped(tmp_path: Path, no_epoll: None) -> None:
    ring = FakeRing(tmp_path / "ring", 4)
    t = ringbuf.RingBufTransport(4, drop_counter=None, window=PAGE)
    t.open(ring)
    first = ring.put(40)
    busy_at = 30 * REC
    ring.set_flags(busy_at, ringbuf.BUSY_BIT)  # the 31st is still being written
    ring.set_flags(10 * REC, ringbuf.DISCARD_BIT)  # the 11th was given up by its program
    for _ in range(10):
        t.drain()
    ev, _ = t.take()
    assert ev["ts"].tolist() == [s for s in first[:30] if s != 10]
    assert ring.cons == busy_at  # nothing after the busy record is consumed
    ring.set_flags(busy_at, 0)  # committed now
    t.drain()
    ev, _ = t.take()
    assert ev["ts"].tolist() == first[30:]
    assert ring.cons == ring.prod
    t.close()


def test_only_a_window_of_the_ring_is_mapped(tmp_path: Path, no_epoll: None) -> None:
    """What the recorder keeps mapped of a 1 MiB ring read through 16 KiB windows: the two
    position pages and one window, wherever the reader is (the kernel counts every mapped
    page of the ring in the reader's resident memory)."""
    pages = 256
    ring = FakeRing(tmp_path / "ring", pages)
    t = ringbuf.RingBufTransport(pages, drop_counter=None, window=4 * PAGE)

    def mapped() -> int:
        total = 0
        for line in Path("/proc/self/maps").read_text().splitlines():
            if line.endswith(str(tmp_path / "ring")):
                lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
                total += hi - lo
        return total

    base = mapped()  # the fake producer's own mapping of the whole file
    t.open(ring)
    for _ in range(5):
        ring.put(ring.size // REC // 2)
        for _ in range(200):
            t.drain()
            assert mapped() - base <= 2 * PAGE + 4 * PAGE + PAGE
            if ring.cons == ring.prod:
                break
        t.take()
    t.close()
    assert mapped() == base


def test_a_record_read_is_a_copy_not_the_rings_memory(tmp_path: Path, no_epoll: None) -> None:
    """Once read, a record's space goes back to the producers, who may overwrite it before
    the session takes the batch: what was read must not change (a lone record used to be
    handed out as a view of the ring)."""
    ring = FakeRing(tmp_path / "ring", 2)
    t = ringbuf.RingBufTransport(2, drop_counter=None)
    t.open(ring)
    for n in (1, 2, 1):
        seqs = ring.put(n)
        t.drain()
        ring.map[2 * PAGE:] = b"\xff" * (2 * ring.size)  # the producers reuse the space
        ev, _ = t.take()
        assert ev["ts"].tolist() == seqs and set(ev["lat"].tolist()) == {7}
    t.close()


def test_joined_batches_are_the_records_in_order() -> None:
    parts = [np.zeros(n, KERNEL_EVENT_DTYPE) for n in (3, 0, 5, 1)]
    for i, p in enumerate(parts):
        p["ts"] = np.arange(len(p)) + 100 * i
        p["comm"] = f"c{i}".encode()
    got = joined(parts, KERNEL_EVENT_DTYPE)
    want = np.concatenate(parts)
    assert got.dtype == KERNEL_EVENT_DTYPE and got.tobytes() == want.tobytes()
    assert joined(parts[:1], KERNEL_EVENT_DTYPE) is parts[0]
    assert len(joined([], KERNEL_EVENT_DTYPE)) == 0


def test_the_writer_empties_its_own_pending_batches_not_the_callers(tmp_path: Path) -> None:
    """A chunk is built column by column from the pending batches, in ts order, each
    batch's column dropped once copied: the caller's batches stay whole, the chunks hold
    every event once, sorted, and a batch cut across two chunks loses nothing."""
    rng = np.random.default_rng(5)
    batches = []
    for i in range(7):
        n = int(rng.integers(1, 900))
        ts = np.sort(rng.integers(0, 10**9, n)).astype(np.uint64)[::-1].copy()  # out of order
        comm = np.array([f"p{i}-{j % 3}" for j in range(n)], object)
        cols = {"ts": ts, "lat": rng.integers(1, 10**6, n).astype(np.uint64),
                "pid": np.full(n, i, np.uint32), "comm": comm}
        batches.append(Chunk.from_columns(cols, str_columns=["comm"]))
    before = [{k: v.copy() for k, v in b.columns.items()} for b in batches]
    out = tmp_path / "w.aio"
    with CaptureWriter(out, chunk_events=1000) as w:
        for b in batches:
            w.write_events(b)
    for b, cols in zip(batches, before):  # the caller's batches are untouched
        assert set(b.columns) == set(cols) and all(np.array_equal(b.columns[k], cols[k]) for k in cols)
    with Capture(out) as r:
        chunks = list(r.chunks(ordered=False))  # as stored
    assert [c.n for c in chunks[:-1]] == [1000] * (len(chunks) - 1)
    for c in chunks:
        assert np.all(np.diff(c.column("ts").astype(np.int64)) >= 0)
    def rows(cs: list[Chunk]) -> list[tuple[object, ...]]:
        cols = [np.concatenate([c.column(k) for c in cs]).tolist() for k in ("ts", "lat", "pid")]
        return sorted(zip(*cols, np.concatenate([c.strings("comm") for c in cs]).tolist()))

    assert rows(chunks) == rows(batches)
