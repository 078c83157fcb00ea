"""Transports: how events get from the kernel into numpy arrays.

A :class:`Transport` is opened on a loaded bcc ``BPF`` object, polled by the session loop,
and hands out what arrived as one numpy array of ``KERNEL_EVENT_DTYPE`` plus the losses
the kernel reported. :class:`PerfBufferTransport` (every kernel we target) is the one in
use; a ring-buffer transport can be added behind the same interface.

Python stays off the per-event path as far as bcc allows: the per-sample callback only
copies the record's bytes into a list (one ctypes call and one append); decoding is one
``np.frombuffer`` over the joined bytes per batch. Wakeups are batched
(``wakeup_events`` > 1: the default of one wakeup per event is ruinous at high rates),
so events below that threshold are drained by :meth:`drain` on a timer.
"""

from __future__ import annotations

import ctypes as ct
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from aether_rec.errors import RecorderError
from aether_rec.schema import KERNEL_EVENT_DTYPE

EVENT_SIZE = KERNEL_EVENT_DTYPE.itemsize


@dataclass
class Loss:
    cpu: int
    count: int
    t_first: int  # CLOCK_MONOTONIC ns: the loss happened in [t_first, t_last]
    t_last: int
    kind: str


class Transport(ABC):
    name: str = "?"
    #: whether it needs bcc's BPF object in this process (``LoadedProgram.bcc``); a
    #: transport that only needs map descriptors lets the program load in a helper.
    needs_bcc: bool = False

    @abstractmethod
    def open(self, prog: Any) -> None:
        """Attach to the loaded program's output map (``events``); ``prog`` is an
        aether_rec.recorder.loaded.LoadedProgram."""

    @abstractmethod
    def poll(self, timeout_ms: int) -> None:
        """Wait up to ``timeout_ms`` for woken buffers and read them."""

    @abstractmethod
    def drain(self) -> None:
        """Read everything the kernel holds now, woken or not."""

    @abstractmethod
    def take(self) -> tuple[np.ndarray, list[Loss]]:
        """The events and losses gathered since the last call."""

    @abstractmethod
    def close(self) -> None: ...

    def unreported_losses(self, submit_failed: list[int]) -> list[Loss]:
        """At the end of a recording: losses the program counted (its per-CPU count of
        failed submits) that the transport has not reported yet."""
        return []

    def describe(self) -> dict[str, object]:
        return {"name": self.name}

    def cflags(self) -> list[str]:
        """What the BPF program needs to emit into this transport (-D flags)."""
        return []


TRANSPORTS: tuple[str, ...] = ("auto", "perf", "ringbuf")


def _merge_losses(losses: list[Loss]) -> list[Loss]:
    """One loss per (CPU, kind) for a batch: the lost callback fires once per
    PERF_RECORD_LOST, which can be thousands of times a second under a storm."""
    merged: dict[tuple[int, str], Loss] = {}
    for x in losses:
        key = (x.cpu, x.kind)
        m = merged.get(key)
        if m is None:
            merged[key] = Loss(x.cpu, x.count, x.t_first, x.t_last, x.kind)
        else:
            m.count += x.count
            m.t_first = min(m.t_first, x.t_first)
            m.t_last = max(m.t_last, x.t_last)
    return list(merged.values())


def make_transport(
    name: str, pages: int | None = None, wakeup_events: int = 64, ringbuf_ok: bool = False
) -> Transport:
    """``perf`` (perf buffer, every kernel), ``ringbuf`` (BPF ring buffer, 5.8+), or
    ``auto``: the ring buffer when the kernel has it (``ringbuf_ok``), else perf."""
    if name == "auto":
        name = "ringbuf" if ringbuf_ok else "perf"
    if name in ("perf", "perf_buffer"):
        return PerfBufferTransport(pages or 64, wakeup_events)
    if name == "ringbuf":
        from aether_rec.recorder.ringbuf import RingBufTransport

        return RingBufTransport(pages or 8192)
    raise RecorderError(f"unknown transport {name!r}: choose perf or ringbuf")


class PerfBufferTransport(Transport):
    """bcc perf buffers, one per online CPU, with a lost-samples callback per CPU."""

    name = "perf_buffer"
    needs_bcc = True  # bcc's perf reader

    def __init__(self, page_cnt: int = 64, wakeup_events: int = 64, table: str = "events") -> None:
        if page_cnt < 1 or page_cnt & (page_cnt - 1):
            raise RecorderError(f"perf buffer pages per CPU must be a power of two, not {page_cnt}")
        self.page_cnt = page_cnt
        self.wakeup_events = max(1, int(wakeup_events))
        self.table_name = table
        self._chunks: list[bytes] = []
        self._losses: list[Loss] = []
        self._last_read: dict[int, int] = {}
        self._bpf: Any = None
        self._keep: list[Any] = []  # ctypes callbacks must outlive the readers
        self.samples = 0
        self.lost = 0
        self.lost_by_cpu: dict[int, int] = {}

    def open(self, prog: Any) -> None:
        from bcc.libbcc import (
            _LOST_CB_TYPE,
            _RAW_CB_TYPE,
            bcc_perf_buffer_opts,
            lib,
        )
        from bcc.utils import get_online_cpus

        bpf = self._bpf = prog.bcc
        table = bpf[self.table_name]
        append = self._chunks.append
        string_at = ct.string_at
        size = EVENT_SIZE

        def on_sample(_cookie: Any, data: int, _size: int) -> None:
            append(string_at(data, size))

        raw_cb = _RAW_CB_TYPE(on_sample)
        now = time.monotonic_ns()
        for cpu in get_online_cpus():
            lost_cb = _LOST_CB_TYPE(self._make_lost_cb(cpu))
            opts = bcc_perf_buffer_opts()
            opts.pid = -1
            opts.cpu = cpu
            opts.wakeup_events = self.wakeup_events
            reader = lib.bpf_open_perf_buffer_opts(raw_cb, lost_cb, None, self.page_cnt, ct.byref(opts))
            if not reader:
                raise RecorderError(
                    f"could not open the perf buffer on CPU {cpu} ({self.page_cnt} pages): "
                    "lower --buffer-pages or raise the locked-memory limit (ulimit -l)"
                )
            fd = lib.perf_reader_fd(reader)
            table[table.Key(cpu)] = table.Leaf(fd)
            # register with bcc so perf_buffer_poll/consume/cleanup know the reader
            bpf.perf_buffers[(id(table), cpu)] = reader
            table._open_key_fds[cpu] = -1
            table._cbs[cpu] = (raw_cb, lost_cb)
            self._keep.append(lost_cb)
            self._last_read[cpu] = now
        self._keep.append(raw_cb)

    def _make_lost_cb(self, cpu: int) -> Callable[[Any, int], None]:
        losses = self._losses
        last = self._last_read

        def on_lost(_cookie: Any, count: int) -> None:
            now = time.monotonic_ns()
            losses.append(Loss(cpu, int(count), last.get(cpu, now), now, "perf_buffer"))

        return on_lost

    def poll(self, timeout_ms: int) -> None:
        self._bpf.perf_buffer_poll(timeout=int(timeout_ms))

    def drain(self) -> None:
        self._bpf.perf_buffer_consume()
        now = time.monotonic_ns()
        for cpu in self._last_read:
            self._last_read[cpu] = now

    def take(self) -> tuple[np.ndarray, list[Loss]]:
        chunks, self._chunks[:] = list(self._chunks), []
        losses, self._losses[:] = _merge_losses(self._losses), []
        self.samples += len(chunks)
        self.lost += sum(x.count for x in losses)
        for x in losses:
            self.lost_by_cpu[x.cpu] = self.lost_by_cpu.get(x.cpu, 0) + x.count
        if not chunks:
            return np.empty(0, KERNEL_EVENT_DTYPE), losses
        return np.frombuffer(b"".join(chunks), dtype=KERNEL_EVENT_DTYPE), losses

    def close(self) -> None:
        self._bpf = None

    def unreported_losses(self, submit_failed: list[int]) -> list[Loss]:
        """The kernel reports lost samples (PERF_RECORD_LOST) only when the buffer has room
        for the report, i.e. with the next sample that fits: losses at the very end of a
        storm are never reported. The program counts every failed submit per CPU; what it
        counted beyond the reports is lost too."""
        now = time.monotonic_ns()
        out: list[Loss] = []
        for cpu, total in enumerate(submit_failed):
            missing = int(total) - self.lost_by_cpu.get(cpu, 0)
            if missing > 0:
                out.append(Loss(cpu, missing, self._last_read.get(cpu, now), now, "perf_buffer"))
                self.lost_by_cpu[cpu] = int(total)
                self.lost += missing
        return out

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "pages_per_cpu": self.page_cnt, "wakeup_events": self.wakeup_events}
