"""Transports: how events get from the kernel into numpy arrays.

A :class:`Transport` is opened on a loaded program (aether_rec.recorder.loaded: it only
needs map descriptors), polled by the session loop, and hands out what arrived as one
numpy array of ``KERNEL_EVENT_DTYPE`` plus the losses the kernel reported. Two exist, both
reading the kernel's buffers through mmap in bulk, with no Python per event:
:class:`~aether_rec.recorder.perfbuf.PerfMmapTransport` (perf buffers, every kernel we
target) and :class:`~aether_rec.recorder.ringbuf.RingBufTransport` (BPF ring buffer, 5.8+).
Wakeups are batched (one per thousands of events); what is below the threshold is read
by the session's timer. aether_rec.recorder.plan.make_transport chooses one; this module
imports neither, so they import it without a circle.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from aether_rec.format.records import Loss

__all__ = ["Loss", "Transport", "joined"]


def joined(parts: list[np.ndarray], dtype: np.dtype) -> np.ndarray:
    """The batches read since the last take, as one array (copied only if several)."""
    if not parts:
        return np.empty(0, dtype)
    if len(parts) == 1:
        return parts[0]
    # joined as bytes: numpy copies a structured dtype field by field, one element at a
    # time (about 70 ns an event of 112 bytes, against 3 ns for the same bytes)
    return np.concatenate([np.ascontiguousarray(p).view(np.uint8) for p in parts]).view(dtype)


class Transport(ABC):
    name: str = "?"

    @abstractmethod
    def open(self, prog: Any) -> None:
        """Attach to the loaded program's output map (``events``); ``prog`` is an
        aether_rec.recorder.loaded.LoadedProgram."""

    def before_attach(self) -> dict[int, int]:
        """Descriptors the program's ``events`` map must hold before its first probe is
        attached (perf buffers: CPU -> ring), so that no event of the first moments finds
        nowhere to go. The ring buffer needs none: it is the map itself."""
        return {}

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

