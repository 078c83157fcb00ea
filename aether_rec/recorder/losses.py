"""The loss ledger of a recording: every loss, wherever it is found, is written here.

Losses reach the recorder four ways: the transport reports them with a batch (perf
buffer PERF_RECORD_LOST, ring buffer reservation failures), the program's per-CPU
counters grow (full maps, unmatched completions), the kernel's per-program
``recursion_misses`` grow (a program not run because another BPF program was running on
that CPU: a hook's event silently dropped by the kernel), and at stop the program
counted failed submits the transport never reported. :class:`LossLedger` turns each into a loss block
of the current file, adds it to that file's per-kind count (for its footer) and to the
recording's (for the summary), and keeps the counters' totals.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

from aether_rec.recorder.loaded import LoadedProgram
from aether_rec.recorder.program import COUNTERS, LOSS_COUNTERS
from aether_rec.recorder.transport import Loss, Transport
from aether_rec.schema import is_real_loss

if TYPE_CHECKING:
    from aether_rec.recorder.rotation import OutputFile


def real_losses(lost: dict[str, int]) -> dict[str, int]:
    """Losses that mean I/Os of the recording window are missing (unmatched completions
    are mostly I/Os already in flight when recording started)."""
    return {k: v for k, v in lost.items() if is_real_loss(k) and v}


class LossLedger:
    def __init__(self) -> None:
        self.lost: dict[str, int] = {}  # kind -> events, over every file of the recording
        self.counters_prev: dict[str, np.ndarray] = {}  # per-CPU values at the last tick
        self.counters_total: dict[str, int] = {name: 0 for name in COUNTERS}
        self.t_tick_ns = 0  # CLOCK_MONOTONIC of the last counter read
        self.misses_prev: dict[str, int] = {}  # program -> recursion_misses at the last tick
        self.misses_total: dict[str, int] = {}  # program -> misses since recording began

    def start(self) -> None:
        """The recording starts now: the first counter losses are placed from here."""
        self.t_tick_ns = time.monotonic_ns()

    def write(self, out: OutputFile, loss: Loss) -> None:
        """A loss block in ``out`` and the counts of the file and of the recording."""
        out.writer.write_loss(loss)
        out.lost[loss.kind] = out.lost.get(loss.kind, 0) + loss.count
        self.lost[loss.kind] = self.lost.get(loss.kind, 0) + loss.count

    def read_counters(self, out: OutputFile, prog: LoadedProgram) -> None:
        """Per-CPU counter deltas since the last tick: losses become loss blocks."""
        now = time.monotonic_ns()
        for idx, name in enumerate(COUNTERS):
            try:
                vals = np.array(prog.percpu_u64("counters", idx), dtype=np.int64)
            except Exception:  # noqa: BLE001 - a counter read must never stop a recording
                continue
            prev = self.counters_prev.get(name)
            delta = vals - prev if prev is not None and len(prev) == len(vals) else vals
            self.counters_prev[name] = vals
            self.counters_total[name] = int(vals.sum())
            kind = LOSS_COUNTERS.get(name)
            if kind is None:
                continue
            for cpu in np.flatnonzero(delta > 0).tolist():
                self.write(out, Loss(cpu, int(delta[cpu]), self.t_tick_ns, now, kind))
        self._read_misses(out, prog, now)
        self.t_tick_ns = now

    def _read_misses(self, out: OutputFile, prog: LoadedProgram, now: int) -> None:
        """Programs the kernel skipped since the last tick: one loss block (cpu -1: the
        kernel does not say on which CPU) for the sum over programs."""
        try:
            misses = prog.recursion_misses()
        except Exception:  # noqa: BLE001 - a counter read must never stop a recording
            return
        new = 0
        for name, total in misses.items():
            # counted from the first read: programs are fresh, so that is from attach
            prev = self.misses_prev.get(name, 0)
            if total > prev:
                new += total - prev
                self.misses_total[name] = self.misses_total.get(name, 0) + total - prev
            self.misses_prev[name] = total
        if new > 0:
            self.write(out, Loss(-1, new, self.t_tick_ns, now, "recursion"))
        self.counters_total["recursion_misses"] = sum(self.misses_total.values())
        for name, n in self.misses_total.items():  # which program the kernel skipped
            if n:
                self.counters_total[f"recursion_misses:{name}"] = n

    def unreported(self, out: OutputFile, transport: Transport) -> None:
        """At stop: losses the transport never reported (perf buffer: the last ones of a
        storm), from the program's per-CPU count of failed submits."""
        counted = self.counters_prev.get("submit_failed")
        if counted is None:
            return
        for loss in transport.unreported_losses([int(v) for v in counted]):
            self.write(out, loss)
