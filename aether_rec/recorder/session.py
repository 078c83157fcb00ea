"""A recording session: load the planned program, run the poll loop, handle signals and
the privilege drop, stop cleanly (or fail with one line and a readable file).

The CLI makes :class:`~aether_rec.recorder.options.RecordOptions` and calls :func:`record`.
Around the loop: ``options`` (checked in one pass), ``plan`` (environment, program,
transport), ``launcher``, ``rotation`` (the files), ``losses``, ``status``.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import uuid
from types import FrameType
from typing import IO, Any

import numpy as np

from aether_rec.errors import AetherError, RecorderError
from aether_rec.format.writer import WriteError
from aether_rec.recorder.columnar import batch_chunk
from aether_rec.recorder.launcher import TracedCommand, exit_code
from aether_rec.recorder.loaded import LoadedProgram, load_remote
from aether_rec.recorder.losses import LossLedger, real_losses
from aether_rec.recorder.options import RecordOptions
from aether_rec.recorder.output import StdoutStream
from aether_rec.recorder.plan import Log, Prepared, capture_header, default_log, filter_values, prepare
from aether_rec.recorder.privileges import drop_privileges
from aether_rec.recorder.procinfo import Names
from aether_rec.recorder.rotation import RotatingOutput
from aether_rec.recorder.status import LOSS_ADVICE, RecordResult, StatusLine, summary_line
from aether_rec.recorder.transport import Transport

__all__ = ["Session", "record"]

CLOCK_EVERY_S = 10.0
TICK_S = 1.0
STATUS_EVERY_S = 0.5
FINAL_DRAIN_S = 5.0  # at stop, keep draining batches for at most this long
FLUSH_SLACK_S = 0.15  # a pending chunk is written this much before it is chunk_age old


class _GiveUpOnReader(Exception):
    """Raised by a second stop signal while a write to stdout waits for its reader."""


class Session:
    def __init__(
        self, opts: RecordOptions, prep: Prepared, log: Log = default_log, err: IO[str] | None = None
    ) -> None:
        self.opts = opts
        self.prep = prep
        self.log = log
        self.prog: LoadedProgram | None = None
        self.recording_id = uuid.uuid4().hex  # shared by every file of this recording
        self.transport: Transport = prep.transport
        self.names = Names()
        self.child: TracedCommand | None = None
        self.events = 0
        self.ledger = LossLedger()
        self.signals = 0
        self.last_signal = 0
        self.stop_reason = ""
        self.t_start = 0.0
        self.status = StatusLine(err or sys.stderr, opts.status)
        self.hups = 0  # SIGHUPs not yet acted on (each: rotate now)
        self.fatal: AetherError | None = None  # ends the recording with exit 1 once closed
        self.creds: dict[str, Any] | None = None  # after --user's drop
        self._oldest_end_ns: int | None = None  # completion time of the oldest unwritten event
        self._cut_ns: int | None = None  # events begun later are dropped (--duration's deadline, the stop)
        self.redactor: Any = None
        if opts.redact:
            from aether_rec.redaction import Redactor

            key = opts.redact_key
            self.redactor = Redactor(
                key if key is not None else os.urandom(32),
                key_source="key-file" if key is not None else "random",
            )
        self.output = RotatingOutput(
            opts,
            lambda index: capture_header(opts, prep, self.recording_id, index, self._attached()),
            self.names,
            self.redactor,
            prep.user,
        )

    def _attached(self) -> tuple[int, float, str] | None:
        p = self.prog
        return (p.attached_ns, p.attach_s, p.source) if p is not None else None

    # -- set-up ----------------------------------------------------------------------
    def _load(self) -> None:
        """Compile, load and attach the program, fill its filter maps, open the transport.

        The loader helper process does the compiling (loaded.load_remote) and hands over
        descriptors: bcc, clang and LLVM never enter the recorder."""
        prog = self.prep.program
        filters = filter_values(self.opts, self.prep, self.child.pid if self.child is not None else None)
        # perf rings in place before the first probe is attached: nothing of the first
        # moments finds nowhere to go (the ring buffer is the map itself)
        outputs = {"events": self.transport.before_attach()}
        if self.prep.names_transport is not None:
            outputs["names"] = self.prep.names_transport.before_attach()
        self.prog = load_remote(prog.text, prog.cflags, self.prep.maps, filters, outputs)
        self.transport.open(self.prog)
        if self.prep.names_transport is not None:
            self.prep.names_transport.open(self.prog)

    def _drop(self) -> None:
        """--user: become the user now that the probes are attached and the output open."""
        u = self.prep.user
        assert u is not None
        # The interpreter may live where the user cannot read (a root-only pyenv): import
        # now everything the rest of the run imports lazily.
        import resource  # noqa: F401 - rotation.self_usage()
        import traceback  # noqa: F401 - AETHER_REC_DEBUG

        self.creds = drop_privileges(u)
        try:  # the loop reads the counters map: the kernel must still allow it
            assert self.prog is not None
            self.prog.percpu_u64("counters", 0)
        except Exception as exc:  # noqa: BLE001 - bcc raises bare Exception
            raise RecorderError(
                f"--user {u.name}: once root is dropped the kernel refuses to read the BPF maps "
                f"({exc}; kernels before 6.5 with unprivileged BPF disabled do): record without --user"
            ) from None

    # -- files -----------------------------------------------------------------------
    def _close_output(self, final: bool) -> None:
        self.output.close(final, self.stop_reason, self.ledger.counters_total, self.creds)

    def _read_counters(self) -> None:
        assert self.output.current is not None and self.prog is not None
        self.ledger.read_counters(self.output.current, self.prog)

    def _rotate(self) -> None:
        """Start the next numbered file now. The new file is created first: if it cannot
        be (WriteError), the current one goes on untouched."""
        new = self.output.create(len(self.output.files) + 1)
        self._read_counters()  # losses up to now belong to the file being closed
        old = self.output.switch(new)
        self._oldest_end_ns = None
        self.output.close(False, self.stop_reason, self.ledger.counters_total, self.creds, out=old)

    def _maybe_rotate(self, now: float) -> None:
        if self.output.rotation_due(now):
            try:
                self._rotate()
            except WriteError as exc:
                # the current file is closed normally (complete, indexed), then exit 1
                current = self.output.current
                assert current is not None
                self.stop_reason = "rotation failed"
                self.fatal = RecorderError(f"{exc}; recording stopped, {current.name} is complete")

    def _on_hup(self) -> None:
        assert self.output.current is not None
        if self.opts.to_stdout:
            self.log("SIGHUP: a capture on stdout cannot be rotated; ignored")
            return
        try:
            self._rotate()
        except WriteError as exc:
            self.log(f"SIGHUP: cannot start the next file ({exc}); going on with {self.output.current.name}")
            return
        self.log(f"SIGHUP: rotated to {self.output.current.name}")

    # -- the loop --------------------------------------------------------------------
    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            self.hups += 1  # rotate now (acted on by the loop); never forwarded
            return
        self.signals += 1
        self.last_signal = signum
        out = self.output.current
        f = out.f if out is not None else None
        if self.signals >= 2 and isinstance(f, StdoutStream) and f.blocked:
            raise _GiveUpOnReader()  # interrupts the blocked write (it is not retried)
        if self.child is not None and self.child.running() and self.signals == 1:
            if signum != signal.SIGINT:  # Ctrl-C already reached the child's process group
                self.child.forward(signum)

    def _ingest(self) -> int:
        """Write what the transport gathered; return how many events it was."""
        out = self.output.current
        assert out is not None
        ev, losses = self.transport.take()
        n = len(ev)
        nt = self.prep.names_transport
        if nt is not None:
            # the events were read before this: every fd record submitted before any of
            # them (an open precedes the I/O on its fd) is in the names ring by now
            nt.drain()
            self.names.feed(nt.take()[0])
        for loss in losses:
            self.ledger.write(out, loss)
        if n:
            ev = self._limit(ev)
            n = len(ev)
            if n:
                chunk = batch_chunk(ev, self.names)
                if self.redactor is not None:
                    chunk = self.redactor.chunk(chunk)
                end = int((ev["ts"] + ev["lat"]).min())
                if self._oldest_end_ns is None or end < self._oldest_end_ns:
                    self._oldest_end_ns = end
                del ev  # the kernel's records are not kept while a chunk is written
                out.writer.write_events(chunk)
                self.events += n
                out.events += n
        for table, rows in self.names.take_new().items():
            self.output.meta(table, rows)
        return n

    def _limit(self, ev: np.ndarray) -> np.ndarray:
        """Cut a batch at --max-events, or where --max-size would be reached (estimated from
        the bytes per event so far), keeping the earliest events; then stop."""
        o = self.opts
        if self._cut_ns is not None and time.monotonic_ns() > self._cut_ns:  # none begun later yet
            ev = ev[ev["ts"] <= self._cut_ns]  # up to the --duration deadline, or the stop time
        room = len(ev)
        reason = ""
        if o.max_events is not None and o.max_events - self.events <= room:
            room, reason = o.max_events - self.events, f"--max-events {o.max_events}"
        out = self.output.current
        if o.max_size is not None and out is not None:
            w = out.writer
            per = w.bytes_written / w.events_written if w.events_written > 1000 else 4.0
            budget = o.max_size - self.output.bytes_total() - int(out.pending * per)
            fit = max(0, int(budget / per))
            if fit < room:
                room, reason = fit, "--max-size"
        if room >= len(ev):
            return ev
        self.stop_reason = self.stop_reason or reason
        if room <= 0:
            return ev[:0]
        order = np.argsort(ev["ts"], kind="stable")
        return ev[np.sort(order[:room])]

    def _should_stop(self, now: float) -> bool:
        o = self.opts
        if self.stop_reason:
            return True
        if self.signals:
            if self.child is not None and self.child.running() and self.signals < 2:
                return False  # wait for the traced command to finish (a second signal stops now)
            self.stop_reason = f"signal {signal.Signals(self.last_signal).name}"
            return True
        if self.child is not None and not self.child.running():
            self.stop_reason = self.child.end_reason()
            return True
        if o.duration_ns is not None and (now - self.t_start) * 1e9 >= o.duration_ns:
            self.stop_reason = "--duration"
            return True
        out = self.output.current
        if o.max_size is not None and out is not None:
            closed = self.output.bytes_closed
            if closed + out.size(o.max_size - closed) >= o.max_size:
                self.stop_reason = "--max-size"
                return True
        return False

    def _flush_old(self) -> None:
        """Write the pending events as a chunk once the oldest of them completed
        ``chunk_age`` ago (less one loop tick): a recorder killed at any moment loses at
        most about ``chunk_age`` of events."""
        out = self.output.current
        assert out is not None
        if out.pending == 0:
            self._oldest_end_ns = None
        elif self._oldest_end_ns is not None:
            age = time.monotonic_ns() - self._oldest_end_ns
            if age >= (self.opts.chunk_age_s - FLUSH_SLACK_S) * 1e9:
                out.writer.flush()
                self._oldest_end_ns = None

    def run(self) -> RecordResult:
        handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        for s in handlers:
            signal.signal(s, self._on_signal)
        try:
            return self._run()
        finally:
            for s, h in handlers.items():
                signal.signal(s, h)
            self.status.clear()
            if (
                self.child is not None
                and self.child.running()
                and self.output.current is None
                and not self.output.files
            ):
                self.child.kill()
            self._detach()

    def _detach(self) -> None:
        if self.prog is not None:
            prog, self.prog = self.prog, None
            prog.close()
        for t in (self.transport, self.prep.names_transport):
            try:
                if t is not None:
                    t.close()
            except Exception:  # noqa: BLE001 - tearing down must not hide the recording's result
                pass

    def _stopped_by_error(self, exc: BaseException) -> BaseException:
        """What a failure in the loop becomes: the file was aborted (every complete block
        kept, no index), the probes are detached, a traced command still running is
        waited for (it goes on untraced; a signal is forwarded to it, a second one stops
        waiting). Returns the exception to raise: one line for the user."""
        out = self.output.current
        name = out.name if out is not None else (self.output.files[-1] if self.output.files else "")
        self.output.abort()
        self._detach()
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            return exc
        if os.environ.get("AETHER_REC_DEBUG"):
            import traceback

            traceback.print_exception(exc)
        if self.opts.to_stdout:
            if isinstance(exc, _GiveUpOnReader):
                err: AetherError = RecorderError(
                    "stopped by a second signal while the reader of stdout was not reading: "
                    "the capture on stdout ends without its last blocks and index"
                )
            elif isinstance(exc, WriteError) and exc.broken_pipe:
                err = RecorderError(
                    "the reader of the capture on stdout went away (broken pipe); recording stopped"
                )
            elif isinstance(exc, WriteError):  # the stream's name says nothing here
                err = RecorderError(f"{exc.reason}; recording stopped")
            elif isinstance(exc, AetherError):
                err = RecorderError(f"{exc}; recording stopped")
            else:
                err = RecorderError(f"recording failed ({_one_line(exc)})")
        else:
            tail = (
                "the file is readable up to its last complete chunk ('aether-rec recover' indexes it)"
                if name
                else "nothing was written"
            )
            if isinstance(exc, AetherError):
                err = RecorderError(f"{exc}; recording stopped: {tail}")
            else:
                err = RecorderError(f"recording failed ({_one_line(exc)}); {tail}")
        self._wait_child()
        return err

    def _wait_child(self) -> int | None:
        """The traced command's status, waiting for it unless asked to stop twice."""
        if self.child is None:
            return None
        while self.child.running() and self.signals < 2:
            time.sleep(0.05)
        return self.child.poll()

    def _start(self) -> None:
        """Start the command (held), load and attach, open the first file, release the
        command, drop root: on any failure, undo all of it and raise one line."""
        o = self.opts
        if o.command:
            self.child = TracedCommand(o.command, self.prep.user, o.to_stdout)
        try:
            self._load()
            # the fds the traced processes already have, while they surely exist
            for pid in [*(self.opts.pids or ()), *([self.child.pid] if self.child is not None else [])]:
                self.names.fdtable.snapshot(pid)
            # events flow from the first probe attached: --duration and the summary count from there
            assert self.prog is not None
            self.t_start = self.prog.attached_ns / 1e9
            if o.duration_ns is not None:
                self._cut_ns = self.prog.attached_ns + o.duration_ns
            self.output.open()
            self.ledger.start()
            if self.child is not None:
                self.child.release()  # before the drop: the launcher is root until it execs
            if self.prep.user is not None:
                self._drop()
        except BaseException as exc:
            self.output.abort()
            self._detach()
            if self.child is not None:
                self.child.kill(reap=True)
            if isinstance(exc, _GiveUpOnReader):
                raise RecorderError("stopped by a second signal: the reader of stdout read nothing") from None
            if isinstance(exc, Exception) and not isinstance(exc, AetherError):
                raise RecorderError(f"recording could not start ({_one_line(exc)})") from None
            raise

    def _announce(self) -> None:
        o = self.opts
        layers = ", ".join(self.prep.program.layers)
        what = (
            f"{' '.join(o.command)}"
            if o.command
            else ("pid " + ",".join(map(str, o.pids)) if o.pids else "all processes")
        )
        u = self.prep.user
        self.log(
            f"recording {layers} I/O of {what} to {self.output.files[-1]} ({self.prep.attach_points} hooks)"
            + (f"; running as {u.name} (uid {u.uid}, gid {u.gid}), root dropped" if u else "")
            + ("" if o.command else "; Ctrl-C to stop")
        )

    def _run(self) -> RecordResult:
        o = self.opts
        self._start()
        self._announce()
        next_drain = self.t_start + o.drain_interval_s
        next_tick = self.t_start + TICK_S
        next_clock = self.t_start + CLOCK_EVERY_S
        next_status = self.t_start + STATUS_EVERY_S
        t_stop = self.t_start
        try:
            while True:
                now = time.monotonic()
                if self._should_stop(now):
                    t_stop = now  # what follows only drains what was recorded until now
                    if self.stop_reason == "--duration" and o.duration_ns is not None:  # D exactly,
                        t_stop = min(now, self.t_start + o.duration_ns / 1e9)  # however late noticed
                    break
                timeout = max(0.0, min(0.1, next_drain - now))
                self.transport.poll(int(timeout * 1000))
                now = time.monotonic()
                if now >= next_drain:
                    self.transport.drain()
                    next_drain = now + o.drain_interval_s
                self._ingest()
                out = self.output.current
                assert out is not None
                self._flush_old()
                out.writer.maybe_flush()
                if now >= next_tick:
                    self._read_counters()
                    next_tick = now + TICK_S
                if now >= next_clock:
                    self.output.meta("clock", [{"mono": time.monotonic_ns(), "real": time.time_ns()}])
                    next_clock = now + CLOCK_EVERY_S
                if self.status.enabled and now >= next_status:
                    elapsed = now - self.t_start
                    self.status.show(self.events, elapsed, self.ledger.lost, self.output.bytes_total())
                    next_status = now + STATUS_EVERY_S
                if self.hups:
                    self.hups = 0
                    self._on_hup()
                if o.rotating:
                    self._maybe_rotate(now)
            # stop: let in-flight completions land, then drain everything
            time.sleep(0.05)
            self._cut_ns = min(int(t_stop * 1e9), self._cut_ns or 2**63)  # none begun after the stop
            deadline = time.monotonic() + FINAL_DRAIN_S
            while True:  # transports hand out bounded batches: drain until dry
                self.transport.drain()
                if not self._ingest() or time.monotonic() > deadline:
                    break
            self._read_counters()
            assert self.output.current is not None
            self.ledger.unreported(self.output.current, self.transport)
            self._close_output(final=True)
        except BaseException as exc:
            raise self._stopped_by_error(exc) from None
        elapsed = t_stop - self.t_start
        if self.fatal is not None:
            self._detach()
            self._wait_child()
            raise self.fatal
        rc = self._wait_child()
        return RecordResult(
            files=self.output.files,
            events=self.events,
            bytes=self.output.bytes_closed,
            duration_s=elapsed,
            lost=dict(self.ledger.lost),
            counters=dict(self.ledger.counters_total),
            exit_code=exit_code(rc) if rc is not None else 0,
            stop_reason=self.stop_reason,
        )


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def record(opts: RecordOptions, log: Log = default_log, prepared: Prepared | None = None) -> RecordResult:
    """Record until a stop condition; return what was written. Messages go to ``log``."""
    prep = prepared or prepare(opts, log)
    sess = Session(opts, prep, log)
    result = sess.run()
    log(summary_line(result))
    if real_losses(result.lost):
        log(LOSS_ADVICE)
    return result
