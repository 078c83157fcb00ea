"""The BPF ring buffer transport (kernel >= 5.8), read in bulk through mmap and numpy.

bcc's own ring-buffer reader calls back into Python once per record, which caps the
rate near a million events a second. This transport maps the ring itself, exactly as
libbpf does (the consumer page read-write at offset 0; the producer page and the data
area read-only after it), and reads every committed record
between the consumer and producer positions as one numpy view: every aether-rec record
has the same size (an 8-byte ring header and a 96-byte ``struct aether_event``), so no
Python runs per event.

The kernel maps the data area twice back to back, so any stretch of up to the ring's size
is contiguous in it. We map only a window of it at a time (WINDOW_BYTES, moved as the
consumer advances), never the whole ring: a mapped ring page counts in the recorder's
resident memory for as long as it is mapped, so a 32 MiB ring mapped whole would add 32 MB
to it for the whole recording, whether the ring is busy or not.

Records are submitted without a wakeup except one forced wakeup per CPU every few
thousand events (about an eighth of the ring over all CPUs): a steady stream costs no
wakeup per event (the session polls on a timer of at most 100 ms), and a burst wakes the
reader long before the ring is full. A failed reservation (ring full) is counted per CPU in the kernel and
reported as a loss of kind ``ringbuf``.
"""

from __future__ import annotations

import mmap
import os
import select
import time
from typing import Any

import numpy as np

from aether_rec.errors import RecorderError
from aether_rec.recorder.transport import Loss, Transport, joined
from aether_rec.schema import KERNEL_EVENT_DTYPE

RINGBUF_HDR = 8  # struct bpf_ringbuf_hdr: u32 len (busy/discard bits), u32 pg_off
BUSY_BIT = 1 << 31
DISCARD_BIT = 1 << 30
RECORD = RINGBUF_HDR + KERNEL_EVENT_DTYPE.itemsize
assert RECORD % 8 == 0, "ring records must stay 8-byte aligned"
WINDOW_BYTES = 2 << 20  # of the data area mapped at a time (at most the ring's size)



class RingBufTransport(Transport):
    """One BPF ring buffer shared by all CPUs, consumed through mmap."""

    name = "ringbuf"

    def __init__(self, pages: int = 8192, table: str = "events", counter_table: str = "counters",
                 drop_counter: int | None = 5, batch: int | None = None,
                 dtype: np.dtype = KERNEL_EVENT_DTYPE, window: int = WINDOW_BYTES) -> None:
        """``drop_counter``: the program's per-CPU counter of failed reservations, reported
        as losses of kind ringbuf (None: the session counts this ring's losses itself).
        ``window``: bytes of the ring mapped at a time; ``batch``: records read per
        drain (default: a window's worth)."""
        if pages < 1 or pages & (pages - 1):
            raise RecorderError(f"ring buffer pages must be a power of two, not {pages}")
        self.pages = pages
        self.dtype = dtype
        self.record = RINGBUF_HDR + dtype.itemsize
        if self.record % 8:
            raise RecorderError("ring records must stay 8-byte aligned")
        self.size = pages * mmap.PAGESIZE
        self.table_name = table
        self.counter_table = counter_table
        self.drop_counter = drop_counter
        self.window = min(self.size, max(window, mmap.PAGESIZE))
        # records copied out per poll/drain (bounds memory and latency): a window's worth
        self.batch = batch if batch is not None else max(self.window // self.record, 1)
        self.wake_bytes = max(self.size // 8, self.record)  # the kernel wakes us at this backlog
        self._parts: list[np.ndarray] = []
        self._losses: list[Loss] = []
        self._prog: Any = None
        self._maps: list[mmap.mmap] = []
        self._fd = -1
        self._win: mmap.mmap | None = None  # the mapped window of the data area
        self._win_data = np.empty(0, np.uint8)
        self._win_lo = self._win_hi = 0  # the data offsets it covers
        self._epoll: select.epoll | None = None
        self._drops_seen: dict[int, int] = {}
        self._last_check = time.monotonic_ns()
        self.samples = 0
        self.lost = 0

    def cflags(self) -> list[str]:
        """What the BPF programs need to emit into a ring buffer of this size; each CPU
        wakes the reader once it has added about an eighth of the ring over all CPUs."""
        per_cpu = max(self.wake_bytes // self.record // (os.cpu_count() or 1), 1)
        return ["-DAETHER_RINGBUF=1", f"-DAETHER_RB_PAGES={self.pages}",
                f"-DAETHER_RB_WAKEUP_EVENTS={per_cpu}"]

    def open(self, prog: Any) -> None:
        self._prog = prog
        fd = prog.map_fd(self.table_name)
        page = mmap.PAGESIZE
        try:
            cons = mmap.mmap(fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
            prod = mmap.mmap(fd, page, mmap.MAP_SHARED, mmap.PROT_READ, offset=page)
        except OSError as exc:
            raise RecorderError(f"cannot map the BPF ring buffer ({exc.strerror}); "
                                "use --transport perf") from None
        self._maps = [cons, prod]
        self._fd = fd
        self._cons_pos = np.frombuffer(cons, np.uint64, 1, 0)
        self._prod_pos = np.frombuffer(prod, np.uint64, 1, 0)
        self._map_window(0, 0)  # fails now, not in the middle of the recording
        self._epoll = select.epoll()
        # edge-triggered: the ring's poll reports "readable" whenever any data waits, but
        # we want to sleep through small amounts until the kernel's forced wakeup
        self._epoll.register(fd, select.EPOLLIN | select.EPOLLET)

    def poll(self, timeout_ms: int) -> None:
        if self._epoll is None:
            raise RecorderError("ring buffer transport is not open")
        if int(self._prod_pos[0]) - int(self._cons_pos[0]) < self.wake_bytes:
            self._epoll.poll(max(timeout_ms, 0) / 1000.0)  # until the timer or a wakeup
        self.drain()

    def drain(self) -> None:
        """Copy up to ``batch`` committed records out of the ring and release their space
        (the session calls again until nothing is left)."""
        cons = int(self._cons_pos[0])
        prod = int(self._prod_pos[0])
        budget = self.batch
        RECORD = self.record  # noqa: N806 - this ring's record size
        while prod > cons and budget > 0:
            n = min(min(prod - cons, self.size) // RECORD, budget)
            if n == 0:
                break
            rows = self._rows(cons % self.size, n)
            n = len(rows)
            hdr = rows[:, :4].copy().view("<u4").reshape(-1)
            busy = (hdr & BUSY_BIT) != 0
            if busy.any():
                n = int(np.argmax(busy))
                if n == 0:
                    break  # the oldest record is still being written
                rows, hdr = rows[:n], hdr[:n]
            keep = (hdr & DISCARD_BIT) == 0
            events = rows[:, RINGBUF_HDR:][keep] if not keep.all() else rows[:, RINGBUF_HDR:]
            # a copy, always (ascontiguousarray would return a one-record view as it is:
            # the ring's memory, which the producers reuse once its space is released)
            self._parts.append(events.copy(order="C").view(self.dtype).reshape(-1))
            del rows, events  # (views of the window, which may move next)
            cons += n * RECORD
            budget -= n
            self._cons_pos[0] = cons  # release the space to the producers
        self._check_drops()

    def _rows(self, off: int, n: int) -> np.ndarray:
        """Up to ``n`` records from data offset ``off`` on, as many as the window holds
        (at least one): an (m, record) view of the mapped window, moved there if needed."""
        need = off + self.record
        if not (self._win_lo <= off and need <= self._win_hi):
            self._map_window(off, need)
        m = min(n, (self._win_hi - off) // self.record)
        at = off - self._win_lo
        return self._win_data[at : at + m * self.record].reshape(m, self.record)

    def _map_window(self, off: int, need: int) -> None:
        """Map the data area from ``off``'s page on: at least up to offset ``need``, at
        least ``window`` bytes, within the kernel's double mapping (2 x size)."""
        page = mmap.PAGESIZE
        lo = off - off % page
        length = max(self.window, -(-(need - lo) // page) * page)
        old, self._win = self._win, None
        self._win_data = np.empty(0, np.uint8)
        if old is not None:
            try:
                old.close()
            except BufferError:
                pass  # a view still holds it: unmapped when that goes
        try:
            self._win = mmap.mmap(self._fd, length, mmap.MAP_SHARED, mmap.PROT_READ,
                                  offset=2 * page + lo)
        except OSError as exc:
            raise RecorderError(f"cannot map the BPF ring buffer ({exc.strerror}); "
                                "use --transport perf") from None
        self._win_data = np.frombuffer(self._win, np.uint8)
        self._win_lo, self._win_hi = lo, lo + length

    def _check_drops(self) -> None:
        """Turn the kernel's per-CPU reservation-failure counts into loss records."""
        if self.drop_counter is None:
            return
        now = time.monotonic_ns()
        try:
            values = self._prog.percpu_u64(self.counter_table, self.drop_counter)
        except (KeyError, IndexError, RecorderError):
            return
        for cpu, total in enumerate(values):
            total = int(total)
            seen = self._drops_seen.get(cpu, 0)
            if total > seen:
                self._losses.append(Loss(cpu, total - seen, self._last_check, now, "ringbuf"))
                self._drops_seen[cpu] = total
        self._last_check = now

    def take(self) -> tuple[np.ndarray, list[Loss]]:
        parts, self._parts = self._parts, []
        losses, self._losses = self._losses, []
        events = joined(parts, self.dtype)
        self.samples += len(events)
        self.lost += sum(x.count for x in losses)
        return events, losses

    def close(self) -> None:
        if self._epoll is not None:
            self._epoll.close()
            self._epoll = None
        self._parts = []
        for name in ("_cons_pos", "_prod_pos"):
            self.__dict__.pop(name, None)
        self._win_data = np.empty(0, np.uint8)
        if self._win is not None:
            self._maps.append(self._win)
            self._win = None
        for m in self._maps:
            try:
                m.close()
            except BufferError:
                pass  # a numpy view still holds it; the mapping goes with the process
        self._maps = []
        self._prog = None

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "pages": self.pages, "bytes": self.size, "read": "mmap+numpy",
                "window": self.window}
