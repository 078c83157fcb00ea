"""The perf buffer transport (every kernel we target), read in bulk through mmap and numpy.

bcc's perf reader calls back into Python once per sample, which caps a recorder near a
million events a second and loses the rest of a storm. This transport opens one
``PERF_COUNT_SW_BPF_OUTPUT`` perf event per CPU itself, puts its descriptor into the
program's ``events`` map (BPF_PERF_EVENT_ARRAY), maps its ring and reads what the kernel
wrote as numpy views: every aether-rec sample has the same size (an 8-byte record header,
the 4-byte raw size, the 96-byte ``struct aether_event``, 4 bytes of padding), so a run of
samples is one strided copy. ``PERF_RECORD_LOST`` records, which only appear when the
buffer overflowed, are walked one by one and become loss blocks. No bcc is needed in this
process, so the program can come from the loader helper as with the ring buffer.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import platform
import select
import time
from typing import Any

import numpy as np

from aether_rec.errors import RecorderError
from aether_rec.recorder.bpfsys import update_elem_u32
from aether_rec.recorder.transport import Loss, Transport, _merge_losses, joined
from aether_rec.schema import KERNEL_EVENT_DTYPE

NR_PERF_EVENT_OPEN = {"x86_64": 298, "aarch64": 241, "ppc64le": 319, "s390x": 331, "riscv64": 241}
PERF_TYPE_SOFTWARE = 1
PERF_COUNT_SW_BPF_OUTPUT = 10
PERF_SAMPLE_RAW = 1 << 10
PERF_FLAG_FD_CLOEXEC = 1 << 3
PERF_EVENT_IOC_ENABLE = 0x2400
PERF_RECORD_LOST = 2
PERF_RECORD_SAMPLE = 9

DATA_AT = 12  # the record within a sample: after the 8-byte header and the 4-byte raw size


def sample_size(record: int) -> int:
    """Bytes of one sample carrying a ``record``-byte struct: header, raw size, the
    struct, padding to 8 (128 for struct aether_event)."""
    return (8 + 4 + record + 7) // 8 * 8


EVENT = KERNEL_EVENT_DTYPE.itemsize
SAMPLE = sample_size(EVENT)

# struct perf_event_mmap_page: data_head, data_tail, data_offset, data_size
HEAD_AT, TAIL_AT, OFFSET_AT, SIZE_AT = 1024, 1032, 1040, 1048

_libc = ctypes.CDLL(None, use_errno=True)


class _Attr(ctypes.Structure):  # struct perf_event_attr, PERF_ATTR_SIZE_VER5 (112 bytes)
    _fields_ = [
        ("type", ctypes.c_uint32), ("size", ctypes.c_uint32), ("config", ctypes.c_uint64),
        ("sample_period", ctypes.c_uint64), ("sample_type", ctypes.c_uint64),
        ("read_format", ctypes.c_uint64), ("flags", ctypes.c_uint64),
        ("wakeup_events", ctypes.c_uint32), ("bp_type", ctypes.c_uint32),
        ("config1", ctypes.c_uint64), ("config2", ctypes.c_uint64),
        ("branch_sample_type", ctypes.c_uint64), ("sample_regs_user", ctypes.c_uint64),
        ("sample_stack_user", ctypes.c_uint32), ("clockid", ctypes.c_int32),
        ("sample_regs_intr", ctypes.c_uint64), ("aux_watermark", ctypes.c_uint32),
        ("sample_max_stack", ctypes.c_uint16), ("reserved", ctypes.c_uint16),
    ]


def online_cpus() -> list[int]:
    try:
        text = open("/sys/devices/system/cpu/online").read().strip()
    except OSError:
        return list(range(os.cpu_count() or 1))
    cpus: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus


class _Ring:
    """One CPU's perf ring: its event descriptor and mapping."""

    def __init__(self, cpu: int, pages: int, wakeup: int) -> None:
        nr = NR_PERF_EVENT_OPEN.get(platform.machine())
        if nr is None:
            raise RecorderError(f"perf_event_open number unknown for {platform.machine()}")
        attr = _Attr(type=PERF_TYPE_SOFTWARE, size=ctypes.sizeof(_Attr), config=PERF_COUNT_SW_BPF_OUTPUT,
                     sample_period=1, sample_type=PERF_SAMPLE_RAW, wakeup_events=wakeup)
        fd = int(_libc.syscall(nr, ctypes.byref(attr), -1, cpu, -1, PERF_FLAG_FD_CLOEXEC))
        if fd < 0:
            err = ctypes.get_errno()
            raise RecorderError(f"cannot open the perf buffer on CPU {cpu} ({os.strerror(err)})")
        self.cpu, self.fd = cpu, fd
        self.size = pages * mmap.PAGESIZE
        try:
            self.mm = mmap.mmap(fd, mmap.PAGESIZE + self.size, mmap.MAP_SHARED,
                                mmap.PROT_READ | mmap.PROT_WRITE)
        except OSError as exc:
            os.close(fd)
            raise RecorderError(
                f"cannot map the perf buffer on CPU {cpu} ({pages} pages: {exc.strerror}): "
                "lower --buffer-pages or raise the locked-memory limit (ulimit -l)"
            ) from None
        self.head = np.frombuffer(self.mm, np.uint64, 1, HEAD_AT)
        self.tail = np.frombuffer(self.mm, np.uint64, 1, TAIL_AT)
        self.data = np.frombuffer(self.mm, np.uint8, self.size, mmap.PAGESIZE)
        self.last_read = time.monotonic_ns()

    def read(self, budget: int, record: int = EVENT) -> tuple[np.ndarray | None, int]:
        """(the samples' record bytes as an (n, record) array or None, records lost) from
        at most ``budget`` bytes of the ring; the space read is released."""
        head, tail = int(self.head[0]), int(self.tail[0])
        if head == tail:
            return None, 0
        n = min(head - tail, budget)
        start = tail % self.size
        if start + n <= self.size:
            buf = self.data[start : start + n]
        else:
            buf = np.concatenate((self.data[start:], self.data[: start + n - self.size]))
        events, lost, used = _parse(buf, record)
        events = events.copy() if events is not None else None  # before the space is released
        self.tail[0] = tail + used
        self.last_read = time.monotonic_ns()
        return events, lost

    def close(self) -> None:
        for name in ("head", "tail", "data"):
            self.__dict__.pop(name, None)
        try:
            self.mm.close()
        except BufferError:
            pass
        os.close(self.fd)


def _parse(buf: np.ndarray, record: int = EVENT) -> tuple[np.ndarray | None, int, int]:
    """(record bytes of the samples, records lost, bytes consumed) of whole perf records
    in buf; every sample carries one ``record``-byte struct."""
    SAMPLE = sample_size(record)  # noqa: N806 - the constant of this record size
    EVENT = record  # noqa: N806
    n = len(buf) // SAMPLE
    if n and len(buf) % SAMPLE == 0:
        rows = buf.reshape(n, SAMPLE)
        hdr = rows[:, :8].copy().view("<u4").reshape(n, 2)
        if bool(np.all(hdr[:, 0] == PERF_RECORD_SAMPLE)) and bool(np.all((hdr[:, 1] >> 16) == SAMPLE)):
            return rows[:, DATA_AT : DATA_AT + EVENT], 0, len(buf)  # the common case
    # mixed records (losses happened): walk the headers
    starts: list[int] = []
    lost = 0
    pos = 0
    raw = buf.tobytes()
    while pos + 8 <= len(raw):
        rtype = int.from_bytes(raw[pos : pos + 4], "little")
        size = int.from_bytes(raw[pos + 6 : pos + 8], "little")
        if size < 8 or pos + size > len(raw):
            break  # a partial record: read it next time
        if rtype == PERF_RECORD_SAMPLE and size == SAMPLE:
            starts.append(pos)
        elif rtype == PERF_RECORD_LOST and size >= 24:
            lost += int.from_bytes(raw[pos + 16 : pos + 24], "little")
        pos += size
    if not starts:
        return None, lost, pos
    idx = np.asarray(starts, dtype=np.int64)[:, None] + np.arange(DATA_AT, DATA_AT + EVENT)
    return buf[idx], lost, pos


TOTAL_BYTES = 32 << 20  # default budget over all CPUs, as the ring buffer's


def default_pages(ncpu: int | None = None) -> int:
    """Pages per CPU by default: the 32 MiB budget shared out (a power of two, at least
    64): 4096 (16 MiB) each on 2 CPUs, 128 each on 64. The dd storm lost 27 % of its
    events with 1024 pages on 2 CPUs and none with 4096."""
    per = TOTAL_BYTES // mmap.PAGESIZE // max(ncpu or len(online_cpus()), 1)
    return max(64, 1 << (per.bit_length() - 1)) if per > 0 else 64


class PerfMmapTransport(Transport):
    """Perf buffers, one per online CPU, read in bulk; PERF_RECORD_LOST -> loss blocks."""

    name = "perf_buffer"

    def __init__(self, pages: int = 1024, wakeup_events: int | None = None, table: str = "events",
                 batch_bytes: int = 8 << 20, dtype: np.dtype = KERNEL_EVENT_DTYPE,
                 report_losses: bool = True) -> None:
        if pages < 1 or pages & (pages - 1):
            raise RecorderError(f"perf buffer pages per CPU must be a power of two, not {pages}")
        self.pages = pages
        self.dtype = dtype
        self.report_losses = report_losses  # False: the program counts this map's losses
        capacity = pages * mmap.PAGESIZE // sample_size(dtype.itemsize)
        # wake the reader when an eighth of a CPU's buffer is waiting; a timer reads the rest
        self.wakeup_events = wakeup_events or max(1, capacity // 8)
        self.table_name = table
        self.batch_bytes = batch_bytes
        self._rings: list[_Ring] = []
        self._parts: list[np.ndarray] = []
        self._losses: list[Loss] = []
        self._epoll: select.epoll | None = None
        self.lost_by_cpu: dict[int, int] = {}
        self.samples = 0
        self.lost = 0

    def before_attach(self) -> dict[int, int]:
        if not self._rings:
            for cpu in online_cpus():
                self._rings.append(_Ring(cpu, self.pages, self.wakeup_events))
        return {ring.cpu: ring.fd for ring in self._rings}

    def open(self, prog: Any) -> None:
        map_fd = prog.map_fd(self.table_name)
        self._epoll = select.epoll()
        self.before_attach()  # the rings, if the loader did not get them before attaching
        for ring in self._rings:
            update_elem_u32(map_fd, ring.cpu, ring.fd)
            self._epoll.register(ring.fd, select.EPOLLIN)

    def poll(self, timeout_ms: int) -> None:
        if self._epoll is None:
            raise RecorderError("perf buffer transport is not open")
        self._epoll.poll(max(timeout_ms, 0) / 1000.0)
        self.drain()

    def drain(self) -> None:
        for ring in self._rings:
            before = ring.last_read
            events, lost = ring.read(self.batch_bytes, self.dtype.itemsize)
            if events is not None and len(events):
                self._parts.append(events.reshape(-1).view(self.dtype))
            if lost and self.report_losses:
                self._losses.append(Loss(ring.cpu, lost, before, ring.last_read, "perf_buffer"))

    def take(self) -> tuple[np.ndarray, list[Loss]]:
        parts, self._parts = self._parts, []
        losses = _merge_losses(self._losses)
        self._losses = []
        events = joined(parts, self.dtype)
        self.samples += len(events)
        for x in losses:
            self.lost += x.count
            self.lost_by_cpu[x.cpu] = self.lost_by_cpu.get(x.cpu, 0) + x.count
        return events, losses

    def unreported_losses(self, submit_failed: list[int]) -> list[Loss]:
        """The kernel reports lost samples (PERF_RECORD_LOST) only when the buffer has room
        for the report: losses at the very end of a storm are never reported. The program
        counts every failed submit per CPU; what it counted beyond the reports is lost."""
        now = time.monotonic_ns()
        last = {r.cpu: r.last_read for r in self._rings}
        out: list[Loss] = []
        for cpu, total in enumerate(submit_failed):
            missing = int(total) - self.lost_by_cpu.get(cpu, 0)
            if missing > 0:
                out.append(Loss(cpu, missing, last.get(cpu, now), now, "perf_buffer"))
                self.lost_by_cpu[cpu] = int(total)
                self.lost += missing
        return out

    def close(self) -> None:
        if self._epoll is not None:
            self._epoll.close()
            self._epoll = None
        for ring in self._rings:
            ring.close()
        self._rings = []
        self._parts = []

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "pages_per_cpu": self.pages, "wakeup_events": self.wakeup_events,
                "read": "mmap+numpy"}
