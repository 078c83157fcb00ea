"""The files of one recording: the current capture file (or stdout), the next numbered
one (--rotate-size, --rotate-time, SIGHUP), and what each file's footer says.

Every file is complete on its own: it gets its own header (the same ``recording_id``),
repeats the names (processes, files, devices) known when it starts, and is closed with
its index and footer statistics. A file that cannot be made is removed again and the
current one goes on untouched (the caller decides whether that ends the recording).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, BinaryIO, cast

from aether_rec.format.writer import CaptureWriter, WriteError
from aether_rec.recorder.options import RecordOptions
from aether_rec.recorder.output import StdoutStream, create_output, stdout_stream
from aether_rec.recorder.privileges import User
from aether_rec.recorder.procinfo import Names


class OutputFile:
    """One capture file (or stdout) of the recording and its own counts."""

    def __init__(self, writer: CaptureWriter, name: str, f: Any, index: int) -> None:
        self.writer = writer
        self.name = name
        self.f = f  # the file object under the writer (closed with it, unless stdout)
        self.index = index
        self.lost: dict[str, int] = {}  # kind -> events (the loss ledger adds to it)
        self.opened = time.monotonic()
        self.events = 0  # handed to the writer

    @property
    def pending(self) -> int:
        """Events handed to the writer and not yet in a written chunk."""
        return self.events - self.writer.events_written

    def size(self, limit: int) -> int:
        """Bytes of this file, counting events still pending in the writer: when they
        would reach ``limit``, they are cut into a chunk now so the size is real."""
        w = self.writer
        pending = self.pending
        if pending > 0:
            per = w.bytes_written / w.events_written if w.events_written else 8.0
            if w.bytes_written + pending * per >= limit:
                w.flush()
        return int(w.bytes_written)


class RotatingOutput:
    """The recording's files: ``current`` is written to; ``files`` names every file made."""

    def __init__(
        self,
        opts: RecordOptions,
        header: Callable[[int], dict[str, Any]],
        names: Names,
        redactor: Any = None,
        user: User | None = None,
    ) -> None:
        self.opts = opts
        self.header = header  # file index -> its header
        self.names = names
        self.redactor = redactor  # ops.redact.Redactor with --redact
        self.user = user  # --user: the files are handed to this user
        self.current: OutputFile | None = None
        self.files: list[str] = []
        self.bytes_closed = 0  # of the files closed so far

    def create(self, index: int) -> OutputFile:
        """Create file ``index`` and write its header (WriteError if it cannot be made)."""
        name = self.opts.file_name(index)
        to_stdout = self.opts.to_stdout
        f = cast(BinaryIO, stdout_stream()) if to_stdout else create_output(name, self.opts.force)
        try:
            u = self.user
            if u is not None and not to_stdout and os.geteuid() == 0:
                os.fchown(f.fileno(), u.uid, u.gid)  # like tcpdump -Z: the files are the user's
            header = self.header(index)
            if self.redactor is not None:
                header = self.redactor.header(header, local=True)
            try:
                w = CaptureWriter(
                    f, header=header, chunk_events=self.opts.chunk_events, chunk_age=self.opts.chunk_age_s
                )
            except WriteError as exc:  # the writer names a stream it did not open by its fd
                raise exc.at(name) from None
            w.name = name
        except BaseException:
            if not to_stdout:
                f.close()
                try:
                    os.unlink(name)  # ours, just made, without a single event
                except OSError:
                    pass
            raise
        out = OutputFile(w, name, f, index)
        if index > 1:
            # each file is complete on its own: repeat the names known so far
            n = self.names
            for table, rows in (
                ("procs", list(n.procs.values())),
                (
                    "fds",
                    [
                        {"pid": pid, "fd": fd, "path": v.path, "flags": v.flags}
                        for pid, fds in n.fds.items()
                        for fd, v in fds.items()
                        if v.path
                    ],
                ),
                ("devices", [{"dev": d, "name": s} for d, s in n.devices.items()]),
            ):
                if rows:
                    self.meta(table, rows, out)
        return out

    def open(self) -> OutputFile:
        """Create the first file (or the next, after a failed start) and write to it."""
        self.current = self.create(len(self.files) + 1)
        self.files.append(self.current.name)
        return self.current

    def switch(self, new: OutputFile) -> OutputFile:
        """Write to ``new`` (made by :meth:`create`) from now on; return the old file,
        still open (close it with :meth:`close`)."""
        old = self.current
        assert old is not None
        self.current = new
        self.files.append(new.name)
        return old

    def rotation_due(self, now: float) -> bool:
        """--rotate-size or --rotate-time says the current file is done."""
        o, out = self.opts, self.current
        assert out is not None
        return (o.rotate_size is not None and out.size(o.rotate_size) >= o.rotate_size) or (
            o.rotate_time_ns is not None and (now - out.opened) * 1e9 >= o.rotate_time_ns
        )

    def bytes_total(self) -> int:
        return self.bytes_closed + (self.current.writer.bytes_written if self.current else 0)

    def meta(self, table: str, rows: list[dict[str, Any]], out: OutputFile | None = None) -> None:
        """Metadata rows into ``out`` (default: the current file), redacted with --redact."""
        if out is None:
            out = self.current
        assert out is not None
        if self.redactor is not None:
            rows = self.redactor.meta(table, rows)
        out.writer.write_meta(table, rows)

    def close(
        self,
        final: bool,
        stop_reason: str,
        counters: dict[str, int],
        creds: dict[str, Any] | None = None,
        out: OutputFile | None = None,
    ) -> None:
        """Write the last clock row, the footer statistics and the index; close ``out``
        (default: the current file, which is then gone)."""
        if out is None:
            out, self.current = self.current, None
        if out is None:
            return
        w = out.writer
        self.meta("clock", [{"mono": time.monotonic_ns(), "real": time.time_ns()}], out)
        w.flush()  # the pending events first: the footer counts every event of the file
        usage: dict[str, Any] = dict(self_usage())
        if creds is not None:
            usage["credentials"] = creds
        stats: dict[str, Any] = {
            "events": w.events_written,
            "lost": dict(out.lost),
            "lost_total": sum(out.lost.values()),
            "counters": dict(counters),
            "duration_ns": int((time.monotonic() - out.opened) * 1e9),
            "final": final,
            "stop_reason": stop_reason if final else "rotated",
            "recorder": usage,
        }
        ft = self.names.fdtable  # fd name records replayed; exited processes dropped from memory
        stats["names"] = {"records": ft.records, "processes_forgotten": ft.forgotten,
                          "processes_held": len(ft)}
        if self.redactor is not None:
            stats = self.redactor.stats(stats)
        try:
            w.close(stats=stats)
        finally:
            if not isinstance(out.f, StdoutStream):
                out.f.close()
        self.bytes_closed += w.bytes_written

    def abort(self) -> None:
        """Stop writing without an index: every complete block stays readable."""
        out, self.current = self.current, None
        if out is None:
            return
        out.writer.abort()
        if not isinstance(out.f, StdoutStream):
            try:
                out.f.close()
            except OSError:
                pass


def self_usage() -> dict[str, float]:
    """The recorder's own cost so far: CPU seconds and peak RSS (for the footer)."""
    import resource

    ru = resource.getrusage(resource.RUSAGE_SELF)
    peak_kb = float(ru.ru_maxrss)
    try:  # VmHWM is this process's own; ru_maxrss carries a parent's across fork + exec
        with open("/proc/self/status") as f:
            peak_kb = next(float(x.split()[1]) for x in f if x.startswith("VmHWM:"))
    except (OSError, StopIteration, ValueError, IndexError):
        pass
    return {"cpu_s": round(ru.ru_utime + ru.ru_stime, 3), "peak_rss_mb": round(peak_kb / 1024, 1)}
