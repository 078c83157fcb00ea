"""A recording session: environment checks, program load, the poll loop, rotation, stop.

Everything ``aether-rec record`` does lives here; the CLI only parses options into a
:class:`RecordOptions` and calls :func:`record` (or :func:`prepare` for ``--ebpf``).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any, Callable

import numpy as np

from aether_rec.errors import AetherError, RecorderError, UsageError
from aether_rec.format.chunk import Chunk, encode_strings
from aether_rec.recorder.bccload import BccInfo, load_bcc
from aether_rec.recorder.headers import HeaderSource, apply_headers, find_headers
from aether_rec.recorder.privileges import check_privileges
from aether_rec.recorder.probes import (
    ALL_LAYERS,
    LayerPlan,
    has_ringbuf,
    parse_layers,
    parse_ops,
    probe_layers,
)
from aether_rec.recorder.procinfo import Names, descendants
from aether_rec.recorder.program import (
    COUNTERS,
    LOSS_COUNTERS,
    Program,
    ProgramOptions,
    build_program,
)
from aether_rec.recorder.tracefs import TraceFS, ensure_tracefs
from aether_rec.recorder.transport import Transport, make_transport

Log = Callable[[str], None]

CLOCK_EVERY_S = 10.0
TICK_S = 1.0
STATUS_EVERY_S = 0.5
FINAL_DRAIN_S = 5.0  # at stop, keep draining batches for at most this long

# Runs the traced command: waits (in rt_sigtimedwait, which no hook traces, so the wait
# leaves no half-seen syscall behind) until the recorder has added its pid to the traced
# set and attached, then execs the command under the same pid, so none of its I/O is missed.
_LAUNCHER = (
    "import os,signal,sys\n"
    "parent=os.getppid()\n"
    "while not signal.sigtimedwait([signal.SIGUSR1],0.5):\n"
    " if os.getppid()!=parent:os._exit(125)\n"
    "signal.pthread_sigmask(signal.SIG_UNBLOCK,[signal.SIGUSR1])\n"
    "try:os.execvp(sys.argv[1],sys.argv[1:])\n"
    "except OSError as e:\n"
    " sys.stderr.write('aether-rec: cannot run %s: %s\\n'%(sys.argv[1],e.strerror));os._exit(127)\n"
)


def _default_log(msg: str) -> None:
    print(f"aether-rec: {msg}", file=sys.stderr, flush=True)


@dataclass
class RecordOptions:
    output: str
    force: bool = False
    layers: str | None = None  # "syscall,block"; None: the defaults
    ops: str | None = None
    pids: tuple[int, ...] = ()
    comm: str | None = None
    cgroup: str | None = None
    min_latency_ns: int = 0
    duration_ns: int | None = None
    max_events: int | None = None
    max_size: int | None = None
    rotate_size: int | None = None
    rotate_time_ns: int | None = None
    command: tuple[str, ...] = ()
    transport: str = "auto"  # auto: ring buffer where the kernel has it, else perf buffer
    buffer_pages: int | None = None  # None: the transport's default
    wakeup_events: int = 64
    drain_interval_s: float = 0.25
    map_size: int = 16384
    chunk_events: int = 131072
    chunk_age_s: float = 1.0
    status: bool | None = None  # None: when stderr is a terminal
    argv: tuple[str, ...] = ()


@dataclass
class RecordResult:
    files: list[str]
    events: int
    bytes: int
    duration_s: float
    lost: dict[str, int]
    counters: dict[str, int]
    exit_code: int = 0
    stop_reason: str = ""


@dataclass
class Prepared:
    """What was decided before loading: the environment and the program."""

    bcc: BccInfo
    tracefs: Path
    headers: HeaderSource
    plans: dict[str, LayerPlan]
    program: Program
    ops: frozenset[str] | None
    cgroup_path: Path | None
    transport: Transport
    notes: list[str] = field(default_factory=list)
    not_asked: dict[str, str] = field(default_factory=dict)  # unrequested layers the kernel lacks

    @property
    def hooks(self) -> list[dict[str, object]]:
        return [h for p in self.plans.values() if p.available for h in p.hooks]


def rotated_name(output: str, index: int) -> str:
    """``run.aio`` -> ``run.0001.aio`` (index from 1)."""
    p = Path(output)
    suffix = p.suffix or ".aio"
    stem = p.name[: -len(p.suffix)] if p.suffix else p.name
    return str(p.with_name(f"{stem}.{index:04d}{suffix}"))


def _validate(opts: RecordOptions) -> None:
    rotating = opts.rotate_size is not None or opts.rotate_time_ns is not None
    if opts.output == "-":
        if rotating:
            raise UsageError("rotation (--rotate-size/--rotate-time) needs a file, not -o -")
        if sys.stdout.isatty():
            raise UsageError("refusing to write a binary capture to a terminal: use -o FILE or a pipe")
    for name, v in (
        ("--max-events", opts.max_events),
        ("--max-size", opts.max_size),
        ("--rotate-size", opts.rotate_size),
        ("--duration", opts.duration_ns),
        ("--rotate-time", opts.rotate_time_ns),
    ):
        if v is not None and v <= 0:
            raise UsageError(f"{name} must be positive")
    if opts.min_latency_ns < 0:
        raise UsageError("--min-latency must not be negative")
    bp = opts.buffer_pages
    if bp is not None and (bp < 1 or bp & (bp - 1)):
        raise UsageError(f"--buffer-pages must be a power of two, not {opts.buffer_pages}")
    if opts.wakeup_events < 1:
        raise UsageError("--wakeup-events must be at least 1")
    if opts.comm is not None and not (0 < len(opts.comm.encode())):
        raise UsageError("--comm must not be empty")
    for pid in opts.pids:
        if pid <= 0:
            raise UsageError(f"--pid {pid}: not a process id")
        if not Path(f"/proc/{pid}").is_dir():
            raise RecorderError(f"--pid {pid}: no such process")
    if opts.command and "/" not in opts.command[0] and shutil.which(opts.command[0]) is None:
        raise RecorderError(f"cannot run {opts.command[0]}: command not found in PATH")
    if opts.output != "-" and not opts.force:
        first = rotated_name(opts.output, 1) if rotating else opts.output
        if os.path.lexists(first):
            raise RecorderError(f"{first}: already exists (use --force to overwrite)")


def cgroup2_root() -> Path | None:
    """Where the cgroup v2 hierarchy is mounted (/sys/fs/cgroup, or .../unified on hybrid
    systems), or None."""
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) > 2 and parts[2] == "cgroup2":
                    return Path(parts[1])
    except OSError:
        pass
    return None


def _cgroup_path(spec: str) -> Path:
    root = cgroup2_root()
    if root is None:
        raise RecorderError(f"--cgroup {spec}: no cgroup v2 hierarchy is mounted")
    p = Path(spec)
    if not p.is_absolute():
        p = root / spec.lstrip("/")
    p = p.resolve()
    if root.resolve() not in (p, *p.parents) or not (p / "cgroup.procs").exists():
        raise RecorderError(f"--cgroup {spec}: {p} is not a cgroup v2 directory (under {root})")
    return p


def prepare(opts: RecordOptions, log: Log = _default_log) -> Prepared:
    """Check the environment and build the program (nothing is loaded yet)."""
    _validate(opts)
    explicit = opts.layers is not None
    layers = parse_layers(opts.layers)
    ops = parse_ops(opts.ops)
    cg = _cgroup_path(opts.cgroup) if opts.cgroup else None
    check_privileges()
    bcc = load_bcc()
    root, note = ensure_tracefs(mount=True)
    notes: list[str] = []
    if note:
        log(note)
        notes.append(note)
    tfs = TraceFS(root)
    plans = probe_layers(tfs, layers, ops)
    unavailable = {k: p for k, p in plans.items() if not p.available}
    # layers not asked for: why they are absent goes into the header too (provenance)
    not_asked = {
        k: v.reason
        for k, v in probe_layers(tfs, tuple(x for x in ALL_LAYERS if x not in layers)).items()
        if not v.available
    }
    if explicit and unavailable:
        name, p = next(iter(unavailable.items()))
        others = [k for k in layers if k not in unavailable]
        hint = f"record without it (--layers {','.join(others)})" if others else "see 'aether-rec doctor'"
        raise RecorderError(f"layer {name} is unavailable on this kernel: {p.reason}; {hint}")
    for name, p in unavailable.items():
        msg = f"layer {name} skipped: {p.reason}"
        log(msg)
        notes.append(msg)
    if not any(p.available for p in plans.values()):
        raise RecorderError("no layer can be recorded on this kernel: see 'aether-rec doctor'")
    for p in plans.values():
        for s in p.skipped:
            notes.append(f"{p.layer}: {s}")
    hs = find_headers()
    if hs.note:
        log(hs.note)
        notes.append(hs.note)
    apply_headers(hs)
    transport = make_transport(
        opts.transport,
        opts.buffer_pages,
        opts.wakeup_events,
        ringbuf_ok=opts.transport == "auto" and has_ringbuf(),
    )
    popts = ProgramOptions(
        self_tgid=os.getpid(),
        filter_pid=bool(opts.pids or opts.command),
        filter_comm=opts.comm is not None,
        filter_cgroup=cg is not None,
        min_latency_ns=opts.min_latency_ns,
        sc_map_size=opts.map_size,
        blk_map_size=opts.map_size,
        pid_map_size=opts.map_size,
        extra_cflags=transport.cflags(),
    )
    prog = build_program(plans, popts)
    return Prepared(bcc, root, hs, plans, prog, ops, cg, transport, notes, not_asked)


class _Output:
    """The current capture file (or stdout) and its per-file counters."""

    def __init__(self, writer: Any, name: str) -> None:
        self.writer = writer
        self.name = name
        self.lost: dict[str, int] = {}
        self.opened = time.monotonic()
        self.events = 0  # handed to the writer

    def add_loss(self, kind: str, n: int) -> None:
        self.lost[kind] = self.lost.get(kind, 0) + n


class Session:
    def __init__(
        self, opts: RecordOptions, prep: Prepared, log: Log = _default_log, err: IO[str] | None = None
    ) -> None:
        self.opts = opts
        self.prep = prep
        self.log = log
        self.err = err or sys.stderr
        self.bpf: Any = None
        self.transport: Transport = prep.transport
        self.names = Names()
        self.child: subprocess.Popen[bytes] | None = None
        self.out: _Output | None = None
        self.files: list[str] = []
        self.file_index = 0
        self.events = 0
        self.bytes_closed = 0
        self.lost: dict[str, int] = {}
        self.counters_prev: dict[str, np.ndarray] = {}
        self.counters_total: dict[str, int] = {name: 0 for name in COUNTERS}
        self.signals = 0
        self.last_signal = 0
        self.stop_reason = ""
        self.t_start = 0.0
        self.t_tick_ns = 0
        self.status = opts.status if opts.status is not None else self.err.isatty()
        self._status_shown = False

    # -- set-up ----------------------------------------------------------------------
    def _spawn(self) -> None:
        # SIGUSR1 is blocked before the fork, so the launcher inherits it blocked and the
        # release signal cannot arrive before it waits for it.
        old = signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])
        try:
            # with -o -, stdout carries the capture: the command's stdout goes to stderr
            stdout = sys.stderr.fileno() if self.opts.output == "-" else None
            self.child = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", _LAUNCHER, *self.opts.command], stdout=stdout
            )
        except OSError as e:
            raise RecorderError(f"cannot start {self.opts.command[0]}: {e.strerror}") from None
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)

    def _release(self) -> None:
        if self.child is not None and self.child.poll() is None:
            os.kill(self.child.pid, signal.SIGUSR1)

    def _load(self) -> None:
        bcc = self.prep.bcc.module
        prog = self.prep.program
        try:
            self.bpf = bcc.BPF(text=prog.text, cflags=prog.cflags)
        except Exception as e:  # noqa: BLE001 - bcc raises bare Exception
            msg = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
            raise RecorderError(
                f"the BPF program failed to load ({msg}); the compiler's messages are above, "
                "'aether-rec doctor' checks the environment"
            ) from None
        try:
            self._fill_filters()
        except Exception as e:  # noqa: BLE001 - bcc raises bare Exception
            raise RecorderError(f"could not set up the in-kernel filters: {e}") from None
        self.transport.open(self.bpf)

    def _fill_filters(self) -> None:
        """Put the pid, comm and cgroup filters into the program's maps."""
        if "-DFILTER_PID=1" in self.prep.program.cflags:
            table = self.bpf["traced_tgids"]
            pids = descendants(list(self.opts.pids)) if self.opts.pids else []
            if self.child is not None:
                pids.append(self.child.pid)
            for pid in pids:
                table[table.Key(pid)] = table.Leaf(1)
        if self.opts.comm is not None:
            table = self.bpf["comm_filter"]
            leaf = table.Leaf()
            leaf.comm = self.opts.comm.encode()[:15]
            table[table.Key(0)] = leaf
        if self.prep.cgroup_path is not None:
            fd = os.open(self.prep.cgroup_path, os.O_RDONLY | os.O_DIRECTORY)
            try:
                self.bpf["cgroup_filter"][0] = fd
            finally:
                os.close(fd)

    def _header(self) -> dict[str, Any]:
        p = self.prep
        o = self.opts
        filters: dict[str, Any] = {}
        if o.pids:
            filters["pid"] = list(o.pids)
        if o.command:
            filters["command"] = list(o.command)
        if o.pids or o.command:
            filters["follow_children"] = True
        if o.comm is not None:
            filters["comm"] = o.comm[:15]
        if p.cgroup_path is not None:
            filters["cgroup"] = str(p.cgroup_path)
            filters["cgroup_id"] = os.stat(p.cgroup_path).st_ino
        if o.min_latency_ns:
            filters["min_latency_ns"] = o.min_latency_ns
        if p.ops is not None:
            filters["ops"] = sorted(p.ops)
        return {
            "command": list(o.argv) or ["aether-rec", "record"],
            "hooks": p.hooks,
            "layers": [k for k, v in p.plans.items() if v.available],
            "layers_unavailable": {
                **p.not_asked,
                **{k: v.reason for k, v in p.plans.items() if not v.available},
            },
            "filters": filters,
            "clock": [[time.monotonic_ns(), time.time_ns()]],
            "transport": self.transport.name,
            "recorder": {
                "bcc_version": p.bcc.version,
                "bcc_location": p.bcc.location,
                "headers": p.headers.as_dict(),
                "tracefs": str(p.tracefs),
                "transport": self.transport.describe(),
                "cflags": p.program.cflags,
                "pid": os.getpid(),
                "notes": p.notes,
            },
            "rotation": {"index": self.file_index} if self._rotating() else None,
        }

    def _rotating(self) -> bool:
        return self.opts.rotate_size is not None or self.opts.rotate_time_ns is not None

    def _open_output(self) -> None:
        from aether_rec.format.writer import CaptureWriter

        self.file_index += 1
        if self.opts.output == "-":
            target: Any = sys.stdout.buffer
            name = "<stdout>"
        else:
            name = rotated_name(self.opts.output, self.file_index) if self._rotating() else self.opts.output
            target = name
        w = CaptureWriter(
            target,
            header=self._header(),
            chunk_events=self.opts.chunk_events,
            chunk_age=self.opts.chunk_age_s,
            overwrite=self.opts.force,
        )
        self.out = _Output(w, name)
        self.files.append(name)
        # each file is complete on its own: repeat the names known so far
        n = self.names
        for table, rows in (
            ("procs", list(n.procs.values())),
            (
                "fds",
                [
                    {"pid": k[0], "fd": k[1], "path": v.path, "flags": v.flags}
                    for k, v in n.fds.items()
                    if v.path
                ],
            ),
            ("devices", [{"dev": d, "name": s} for d, s in n.devices.items()]),
        ):
            if rows and self.file_index > 1:
                w.write_meta(table, rows)

    def _close_output(self, final: bool) -> None:
        if self.out is None:
            return
        out, self.out = self.out, None
        w = out.writer
        w.write_meta("clock", [{"mono": time.monotonic_ns(), "real": time.time_ns()}])
        stats = {
            "events": w.events_written,
            "lost": dict(out.lost),
            "lost_total": sum(out.lost.values()),
            "counters": dict(self.counters_total),
            "duration_ns": int((time.monotonic() - out.opened) * 1e9),
            "final": final,
            "stop_reason": self.stop_reason if final else "rotated",
            "recorder": _self_usage(),
        }
        w.close(stats=stats)
        self.bytes_closed += w.bytes_written

    # -- the loop --------------------------------------------------------------------
    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.signals += 1
        self.last_signal = signum
        if self.child is not None and self.child.poll() is None and self.signals == 1:
            if signum != signal.SIGINT:  # Ctrl-C already reached the child's process group
                try:
                    self.child.send_signal(signum)
                except OSError:
                    pass

    def _ingest(self) -> int:
        """Write what the transport gathered; return how many events it was."""
        assert self.out is not None
        ev, losses = self.transport.take()
        w = self.out.writer
        for loss in losses:
            w.write_loss(loss.cpu, loss.count, loss.t_first, loss.t_last, loss.kind)
            self.out.add_loss(loss.kind, loss.count)
            self.lost[loss.kind] = self.lost.get(loss.kind, 0) + loss.count
        if len(ev):
            ev = self._limit(ev)
            if len(ev):
                codes, words, flags = self.names.annotate(ev)
                cols: dict[str, Any] = {name: ev[name] for name in ev.dtype.names or () if name != "comm"}
                cols["flags"] = flags
                cols["comm"], comms = encode_strings(ev["comm"])
                cols["path"] = codes
                w.write_events(Chunk(len(ev), cols, {"comm": comms, "path": words}))
                self.events += len(ev)
                self.out.events += len(ev)
        for table, rows in self.names.take_new().items():
            w.write_meta(table, rows)
        return len(ev)

    def _limit(self, ev: np.ndarray) -> np.ndarray:
        """Cut a batch at --max-events, or where --max-size would be reached (estimated from
        the bytes per event so far), keeping the earliest events; then stop."""
        o = self.opts
        room = len(ev)
        reason = ""
        if o.max_events is not None and o.max_events - self.events <= room:
            room, reason = o.max_events - self.events, f"--max-events {o.max_events}"
        if o.max_size is not None and self.out is not None:
            w = self.out.writer
            per = w.bytes_written / w.events_written if w.events_written > 1000 else 4.0
            budget = o.max_size - self._bytes_total() - int((self.out.events - w.events_written) * per)
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

    def _read_counters(self) -> None:
        """Per-CPU counter deltas since the last tick: losses become loss blocks."""
        assert self.out is not None
        table = self.bpf["counters"]
        now = time.monotonic_ns()
        for idx, name in enumerate(COUNTERS):
            try:
                vals = np.array([int(v) for v in table.getvalue(table.Key(idx))], dtype=np.int64)
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
                n = int(delta[cpu])
                self.out.writer.write_loss(cpu, n, self.t_tick_ns, now, kind)
                self.out.add_loss(kind, n)
                self.lost[kind] = self.lost.get(kind, 0) + n
        self.t_tick_ns = now

    def _file_bytes(self, limit: int) -> int:
        """Bytes of the current file, counting events still pending in the writer: when
        they would reach ``limit``, they are cut into a chunk now so the size is real."""
        assert self.out is not None
        w = self.out.writer
        pending = self.out.events - w.events_written
        if pending > 0:
            per = w.bytes_written / w.events_written if w.events_written else 8.0
            if w.bytes_written + pending * per >= limit:
                w.flush()
        return int(w.bytes_written)

    def _bytes_total(self) -> int:
        return self.bytes_closed + (self.out.writer.bytes_written if self.out else 0)

    def _show_status(self, now: float) -> None:
        elapsed = max(now - self.t_start, 1e-9)
        lost = sum(real_losses(self.lost).values())
        line = (
            f"\raether-rec: {self.events:,} events  {self.events / elapsed:,.0f}/s  "
            f"lost {lost:,}  written {self._bytes_total() / 1048576:.1f} MiB  {elapsed:.0f}s "
        )
        self.err.write(line)
        self.err.flush()
        self._status_shown = True

    def _clear_status(self) -> None:
        if self._status_shown:
            self.err.write("\r\033[K")
            self.err.flush()
            self._status_shown = False

    def _should_stop(self, now: float) -> bool:
        o = self.opts
        if self.stop_reason:
            return True
        if self.signals:
            if self.child is not None and self.child.poll() is None and self.signals < 2:
                return False  # wait for the traced command to finish (a second signal stops now)
            self.stop_reason = f"signal {signal.Signals(self.last_signal).name}"
            return True
        if self.child is not None and self.child.poll() is not None:
            self.stop_reason = "command exited"
            return True
        if o.duration_ns is not None and (now - self.t_start) * 1e9 >= o.duration_ns:
            self.stop_reason = "--duration"
            return True
        if (
            o.max_size is not None
            and self.out is not None
            and (self.bytes_closed + self._file_bytes(o.max_size - self.bytes_closed) >= o.max_size)
        ):
            self.stop_reason = "--max-size"
            return True
        return False

    def _maybe_rotate(self, now: float) -> None:
        assert self.out is not None
        o = self.opts
        due = (o.rotate_size is not None and self._file_bytes(o.rotate_size) >= o.rotate_size) or (
            o.rotate_time_ns is not None and (now - self.out.opened) * 1e9 >= o.rotate_time_ns
        )
        if due:
            self._read_counters()
            self._close_output(final=False)
            self._open_output()

    def run(self) -> RecordResult:
        handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        for s in handlers:
            signal.signal(s, self._on_signal)
        try:
            return self._run()
        finally:
            for s, h in handlers.items():
                signal.signal(s, h)
            self._clear_status()
            if self.child is not None and self.child.poll() is None and self.out is None and not self.files:
                self.child.kill()
            if self.bpf is not None:
                detach(self.bpf)
                self.bpf = None

    def _run(self) -> RecordResult:
        o = self.opts
        if o.command:
            self._spawn()
        try:
            self._load()
            self._open_output()
        except BaseException:
            if self.child is not None:
                self.child.kill()
                self.child.wait()
            raise
        layers = ", ".join(self.prep.program.layers)
        what = (
            f"{' '.join(o.command)}"
            if o.command
            else ("pid " + ",".join(map(str, o.pids)) if o.pids else "all processes")
        )
        self.log(
            f"recording {layers} I/O of {what} to {self.files[-1]} ({len(self.prep.hooks)} hooks)"
            + ("" if o.command else "; Ctrl-C to stop")
        )
        self.t_start = time.monotonic()
        self.t_tick_ns = time.monotonic_ns()
        self._release()
        next_drain = self.t_start + o.drain_interval_s
        next_tick = self.t_start + TICK_S
        next_clock = self.t_start + CLOCK_EVERY_S
        next_status = self.t_start + STATUS_EVERY_S
        try:
            while True:
                now = time.monotonic()
                if self._should_stop(now):
                    break
                timeout = max(0.0, min(0.1, next_drain - now))
                self.transport.poll(int(timeout * 1000))
                now = time.monotonic()
                if now >= next_drain:
                    self.transport.drain()
                    next_drain = now + o.drain_interval_s
                self._ingest()
                assert self.out is not None
                self.out.writer.maybe_flush()
                if now >= next_tick:
                    self._read_counters()
                    next_tick = now + TICK_S
                if now >= next_clock:
                    self.out.writer.write_meta(
                        "clock", [{"mono": time.monotonic_ns(), "real": time.time_ns()}]
                    )
                    next_clock = now + CLOCK_EVERY_S
                if self.status and now >= next_status:
                    self._show_status(now)
                    next_status = now + STATUS_EVERY_S
                if self._rotating():
                    self._maybe_rotate(now)
            # stop: let in-flight completions land, then drain everything
            if self.child is not None and self.child.poll() is None and self.signals >= 2:
                pass  # leave the command running: the user asked twice
            time.sleep(0.05)
            deadline = time.monotonic() + FINAL_DRAIN_S
            while True:  # transports hand out bounded batches: drain until dry
                self.transport.drain()
                if not self._ingest() or time.monotonic() > deadline:
                    break
            self._read_counters()
            self._close_output(final=True)
        except AetherError:
            if self.out is not None:
                self.out.writer.abort()
                self.out = None
            raise
        elapsed = time.monotonic() - self.t_start
        code = 0
        if self.child is not None:
            rc = self.child.poll()
            if rc is None and self.signals < 2:
                rc = self.child.wait()
            if rc is not None:
                code = rc if rc >= 0 else 128 - rc
        return RecordResult(
            files=self.files,
            events=self.events,
            bytes=self.bytes_closed,
            duration_s=elapsed,
            lost=dict(self.lost),
            counters=dict(self.counters_total),
            exit_code=code,
            stop_reason=self.stop_reason,
        )


def _self_usage() -> dict[str, float]:
    """The recorder's own cost so far: CPU seconds and peak RSS (for the footer)."""
    import resource

    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {"cpu_s": round(ru.ru_utime + ru.ru_stime, 3), "peak_rss_mb": round(ru.ru_maxrss / 1024, 1)}


def detach(bpf: Any) -> None:
    """Detach every probe and free the program. Closing a tracepoint's perf event waits for
    an RCU grace period (~75 ms here, 3 s for 43 hooks one after the other), so the
    closes run in parallel threads (ctypes releases the GIL) and share grace periods."""
    from concurrent.futures import ThreadPoolExecutor

    lib = sys.modules["bcc"].lib
    fds = list(bpf.tracepoint_fds.values())
    if fds:
        with ThreadPoolExecutor(max_workers=min(32, len(fds))) as ex:
            list(ex.map(lib.bpf_close_perf_event_fd, fds))
        bpf.tracepoint_fds.clear()
    try:
        bpf.cleanup()
    except Exception:  # noqa: BLE001 - tearing down must not hide the recording's result
        pass


def real_losses(lost: dict[str, int]) -> dict[str, int]:
    """Losses that mean I/Os of the recording window are missing (unmatched completions
    are mostly I/Os already in flight when recording started)."""
    return {k: v for k, v in lost.items() if k != "unmatched" and v}


def summary_line(r: RecordResult) -> str:
    rate = r.events / r.duration_s if r.duration_s > 0 else 0.0
    per = r.bytes / r.events if r.events else 0.0
    files = r.files[0] if len(r.files) == 1 else f"{len(r.files)} files ({r.files[0]} .. {r.files[-1]})"
    real = real_losses(r.lost)
    lost = sum(real.values())
    parts = ", ".join(f"{k} {v:,}" for k, v in sorted(real.items()))
    line = (
        f"recorded {r.events:,} events in {r.duration_s:.1f} s ({rate:,.0f}/s) to {files}: "
        f"{r.bytes:,} bytes ({per:.1f} B/event); lost {lost:,}" + (f" ({parts})" if parts else "")
    )
    if r.lost.get("unmatched"):
        line += f"; {r.lost['unmatched']:,} completions without a recorded start (in flight at start)"
    if r.stop_reason:
        line += f"; stopped by {r.stop_reason}"
    return line


def record(opts: RecordOptions, log: Log = _default_log, prepared: Prepared | None = None) -> RecordResult:
    """Record until a stop condition; return what was written. Messages go to ``log``."""
    prep = prepared or prepare(opts, log)
    sess = Session(opts, prep, log)
    result = sess.run()
    log(summary_line(result))
    if real_losses(result.lost):
        log(
            "events were lost: they are recorded as loss blocks ('aether-rec info' shows them); "
            "a bigger --buffer-pages or a --min-latency/--pid filter reduces losses"
        )
    return result
