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
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any, BinaryIO, Callable, cast

import numpy as np

from aether_rec.errors import AetherError, EnvironmentProblem, RecorderError, UsageError
from aether_rec.format.chunk import Chunk, encode_strings
from aether_rec.format.writer import WriteError
from aether_rec.recorder.bccload import BccInfo, locate_bcc
from aether_rec.recorder.headers import HeaderSource, apply_headers, find_headers
from aether_rec.recorder.loaded import LoadedProgram, load_remote
from aether_rec.recorder.output import StdoutStream, create_output, refuse_reason, stdout_stream
from aether_rec.recorder.privileges import (
    User,
    can_create_in,
    check_privileges,
    drop_privileges,
    resolve_user,
)
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
FLUSH_SLACK_S = 0.15  # a pending chunk is written this much before it is chunk_age old

# Runs the traced command: waits (in rt_sigtimedwait, which no hook traces, so the wait
# leaves no half-seen syscall behind) until the recorder has added its pid to the traced
# set and attached, then execs the command under the same pid, so none of its I/O is missed.
# With --user (argv[1] "uid:gid:g1,g2", else ""), it becomes that user just before the exec.
_LAUNCHER = (
    "import os,signal,sys,warnings\n"  # warnings: execvp imports it, maybe after the drop
    "parent=os.getppid()\n"
    "while not signal.sigtimedwait([signal.SIGUSR1],0.5):\n"
    " if os.getppid()!=parent:os._exit(125)\n"
    "signal.pthread_sigmask(signal.SIG_UNBLOCK,[signal.SIGUSR1])\n"
    "u,a=sys.argv[1],sys.argv[2:]\n"
    "try:\n"
    " if u:\n"
    "  i,g,s=u.split(':');os.setgroups([int(x) for x in s.split(',') if x])\n"
    "  os.setgid(int(g));os.setuid(int(i))\n"
    "except OSError as e:\n"
    " sys.stderr.write('aether-rec: cannot become uid %s: %s\\n'%(u,e.strerror));os._exit(126)\n"
    "try:os.execvp(a[0],a)\n"
    "except OSError as e:\n"
    " sys.stderr.write('aether-rec: cannot run %s: %s\\n'%(a[0],e.strerror));os._exit(127)\n"
)


class _GiveUpOnReader(Exception):
    """Raised by a second stop signal while a write to stdout waits for its reader."""


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
    wakeup_events: int | None = None  # perf buffer: None = an eighth of the buffer
    drain_interval_s: float = 0.25
    map_size: int = 16384
    chunk_events: int = 131072
    chunk_age_s: float = 1.0
    status: bool | None = None  # None: when stderr is a terminal
    argv: tuple[str, ...] = ()
    user: str | None = None  # --user: drop to this user once attached and open
    redact: bool = False  # --redact: names and paths hashed on the way out
    redact_key: bytes | None = None  # None with redact: a random key, not stored


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
    user: User | None = None

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
    if opts.wakeup_events is not None and opts.wakeup_events < 1:
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
    if opts.output != "-":
        first = rotated_name(opts.output, 1) if rotating else opts.output
        why = refuse_reason(first, opts.force)
        if why:
            raise RecorderError(why)


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
    user = _check_user(opts) if opts.user is not None else None
    bcc = locate_bcc()  # imported only where the program is compiled (see _load)
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
    return Prepared(bcc, root, hs, plans, prog, ops, cg, transport, notes, not_asked, user)


def _check_user(opts: RecordOptions) -> User:
    """The --user to drop to. Files made after the drop (rotation) are created as that
    user, so --rotate-* needs an output directory the user can write to."""
    assert opts.user is not None
    user = resolve_user(opts.user)
    if os.geteuid() != 0:
        raise EnvironmentProblem(f"--user {user.name} needs the recorder to start as root")
    rotating = opts.rotate_size is not None or opts.rotate_time_ns is not None
    if rotating and opts.output != "-":
        d = os.path.dirname(os.path.abspath(opts.output))
        if not can_create_in(user, d):
            raise UsageError(
                f"--user {user.name} with --rotate-size/--rotate-time: {user.name} cannot create "
                f"files in {d}, and the next files are created after the drop; "
                f"record into a directory {user.name} can write to"
            )
    return user


class _Output:
    """The current capture file (or stdout) and its per-file counters."""

    def __init__(self, writer: Any, name: str, f: Any, index: int) -> None:
        self.writer = writer
        self.name = name
        self.f = f  # the file object under the writer (closed with it, unless stdout)
        self.index = index
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
        self.prog: LoadedProgram | None = None
        self.recording_id = uuid.uuid4().hex  # shared by every file of this recording
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
        self.hups = 0  # SIGHUPs not yet acted on (each: rotate now)
        self.fatal: AetherError | None = None  # ends the recording with exit 1 once closed
        self.creds: dict[str, Any] | None = None  # after --user's drop
        self._oldest_end_ns: int | None = None  # completion time of the oldest unwritten event
        self._cut_ns: int | None = None  # once stopped: events begun later are dropped
        self.redactor: Any = None
        if opts.redact:
            from aether_rec.ops.redact import Redactor

            key = opts.redact_key
            self.redactor = Redactor(
                key if key is not None else os.urandom(32),
                key_source="key-file" if key is not None else "random",
            )

    # -- set-up ----------------------------------------------------------------------
    def _spawn(self) -> None:
        # SIGUSR1 is blocked before the fork, so the launcher inherits it blocked and the
        # release signal cannot arrive before it waits for it.
        old = signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])
        try:
            # with -o -, stdout carries the capture: the command's stdout goes to stderr
            stdout = sys.stderr.fileno() if self.opts.output == "-" else None
            # with --user the command runs as that user too (so it can still be signalled)
            u = self.prep.user
            who = f"{u.uid}:{u.gid}:{','.join(map(str, u.groups))}" if u is not None else ""
            self.child = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", _LAUNCHER, who, *self.opts.command], stdout=stdout
            )
        except OSError as e:
            raise RecorderError(f"cannot start {self.opts.command[0]}: {e.strerror}") from None
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)

    def _release(self) -> None:
        if self.child is not None and self.child.poll() is None:
            os.kill(self.child.pid, signal.SIGUSR1)

    def _load(self) -> None:
        """Compile, load and attach the program, fill its filter maps, open the transport.

        The loader helper process does the compiling (loaded.load_remote) and hands over
        descriptors: bcc, clang and LLVM never enter the recorder."""
        prog = self.prep.program
        filters = self._filters()
        outputs = self.transport.before_attach()
        self.prog = load_remote(prog.text, prog.cflags, ["events", "counters"], filters, outputs)
        self.transport.open(self.prog)

    def _filters(self) -> dict[str, Any]:
        """The pid, comm and cgroup filters for the program's maps (see filters.py)."""
        f: dict[str, Any] = {}
        if "-DFILTER_PID=1" in self.prep.program.cflags:
            pids = descendants(list(self.opts.pids)) if self.opts.pids else []
            if self.child is not None:
                pids.append(self.child.pid)
            f["pids"] = pids
        if self.opts.comm is not None:
            f["comm"] = self.opts.comm
        if self.prep.cgroup_path is not None:
            f["cgroup_path"] = str(self.prep.cgroup_path)
        return f

    def _header(self, index: int) -> dict[str, Any]:
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
                "attached_ns": self.prog.attached_ns if self.prog is not None else None,
                "attach_s": round(self.prog.attach_s, 3) if self.prog is not None else None,
                "notes": p.notes,
                **({"user": p.user.name} if p.user is not None else {}),
            },
            "recording_id": self.recording_id,
            "rotation": {"index": index} if self._rotating() or index > 1 else None,
        }

    def _rotating(self) -> bool:
        return self.opts.rotate_size is not None or self.opts.rotate_time_ns is not None

    def _name(self, index: int) -> str:
        """File ``index`` (from 1): OUTPUT itself, or numbered when rotating (and for the
        files a SIGHUP starts: run.aio, then run.0002.aio, ...)."""
        if self.opts.output == "-":
            return "<stdout>"
        if self._rotating() or index > 1:
            return rotated_name(self.opts.output, index)
        return self.opts.output

    def _new_output(self, index: int) -> _Output:
        """Create file ``index`` and write its header (WriteError if it cannot be made)."""
        from aether_rec.format.writer import CaptureWriter

        name = self._name(index)
        to_stdout = self.opts.output == "-"
        f = cast(BinaryIO, stdout_stream()) if to_stdout else create_output(name, self.opts.force)
        try:
            u = self.prep.user
            if u is not None and not to_stdout and os.geteuid() == 0:
                os.fchown(f.fileno(), u.uid, u.gid)  # like tcpdump -Z: the files are the user's
            header = self._header(index)
            if self.redactor is not None:
                header = self.redactor.header(header, local=True)
            try:
                w = CaptureWriter(
                    f, header=header, chunk_events=self.opts.chunk_events, chunk_age=self.opts.chunk_age_s
                )
            except WriteError as exc:  # the writer names a stream it did not open by its fd
                raise WriteError(f"{name}: {str(exc).split(': ', 1)[-1]}") from None
            w.name = name
        except BaseException:
            if not to_stdout:
                f.close()
                try:
                    os.unlink(name)  # ours, just made, without a single event
                except OSError:
                    pass
            raise
        out = _Output(w, name, f, index)
        if index > 1:
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
                if rows:
                    self._meta(out, table, rows)
        return out

    def _open_output(self) -> None:
        self.out = self._new_output(self.file_index + 1)
        self.file_index = self.out.index
        self.files.append(self.out.name)

    def _meta(self, out: _Output, table: str, rows: list[dict[str, Any]]) -> None:
        if self.redactor is not None:
            rows = self.redactor.meta(table, rows)
        out.writer.write_meta(table, rows)

    def _close_output(self, final: bool, out: _Output | None = None) -> None:
        """Write the last clock row, the footer statistics and the index; close."""
        if out is None:
            out, self.out = self.out, None
        if out is None:
            return
        w = out.writer
        self._meta(out, "clock", [{"mono": time.monotonic_ns(), "real": time.time_ns()}])
        usage: dict[str, Any] = dict(_self_usage())
        if self.creds is not None:
            usage["credentials"] = self.creds
        stats: dict[str, Any] = {
            "events": w.events_written,
            "lost": dict(out.lost),
            "lost_total": sum(out.lost.values()),
            "counters": dict(self.counters_total),
            "duration_ns": int((time.monotonic() - out.opened) * 1e9),
            "final": final,
            "stop_reason": self.stop_reason if final else "rotated",
            "recorder": usage,
        }
        if self.redactor is not None:
            stats = self.redactor.stats(stats)
        try:
            w.close(stats=stats)
        finally:
            if not isinstance(out.f, StdoutStream):
                out.f.close()
        self.bytes_closed += w.bytes_written

    def _abort_output(self) -> None:
        """Stop writing without an index: every complete block stays readable."""
        out, self.out = self.out, None
        if out is None:
            return
        out.writer.abort()
        if not isinstance(out.f, StdoutStream):
            try:
                out.f.close()
            except OSError:
                pass

    def _rotate(self) -> None:
        """Start the next numbered file now. The new file is created first: if it cannot
        be (WriteError), the current one goes on untouched."""
        assert self.out is not None
        new = self._new_output(self.file_index + 1)
        self._read_counters()  # losses up to now belong to the file being closed
        old, self.out = self.out, new
        self.file_index = new.index
        self.files.append(new.name)
        self._oldest_end_ns = None
        self._close_output(final=False, out=old)

    def _on_hup(self) -> None:
        assert self.out is not None
        if self.opts.output == "-":
            self.log("SIGHUP: a capture on stdout cannot be rotated; ignored")
            return
        try:
            self._rotate()
        except WriteError as exc:
            self.log(f"SIGHUP: cannot start the next file ({exc}); going on with {self.out.name}")
            return
        self.log(f"SIGHUP: rotated to {self.out.name}")

    def _drop(self) -> None:
        """--user: become the user now that the probes are attached and the output open."""
        u = self.prep.user
        assert u is not None
        # The interpreter may live where the user cannot read (a root-only pyenv): import
        # now everything the rest of the run imports lazily.
        import resource  # noqa: F401 - _self_usage()
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

    # -- the loop --------------------------------------------------------------------
    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            self.hups += 1  # rotate now (acted on by the loop); never forwarded
            return
        self.signals += 1
        self.last_signal = signum
        f = self.out.f if self.out is not None else None
        if self.signals >= 2 and isinstance(f, StdoutStream) and f.blocked:
            raise _GiveUpOnReader()  # interrupts the blocked write (it is not retried)
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
                chunk = Chunk(len(ev), cols, {"comm": comms, "path": words})
                if self.redactor is not None:
                    chunk = self.redactor.chunk(chunk)
                end = int((ev["ts"] + ev["lat"]).min())
                if self._oldest_end_ns is None or end < self._oldest_end_ns:
                    self._oldest_end_ns = end
                w.write_events(chunk)
                self.events += len(ev)
                self.out.events += len(ev)
        for table, rows in self.names.take_new().items():
            self._meta(self.out, table, rows)
        return len(ev)

    def _limit(self, ev: np.ndarray) -> np.ndarray:
        """Cut a batch at --max-events, or where --max-size would be reached (estimated from
        the bytes per event so far), keeping the earliest events; then stop."""
        o = self.opts
        if self._cut_ns is not None:  # draining after the stop: up to the stop time only
            ev = ev[ev["ts"] <= self._cut_ns]
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
        assert self.prog is not None
        now = time.monotonic_ns()
        for idx, name in enumerate(COUNTERS):
            try:
                vals = np.array(self.prog.percpu_u64("counters", idx), dtype=np.int64)
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

    def _unreported_losses(self) -> None:
        """At stop: losses the transport never reported (perf buffer: the last ones of a
        storm), from the program's per-CPU count of failed submits."""
        assert self.out is not None
        counted = self.counters_prev.get("submit_failed")
        if counted is None:
            return
        for loss in self.transport.unreported_losses([int(v) for v in counted]):
            self.out.writer.write_loss(loss.cpu, loss.count, loss.t_first, loss.t_last, loss.kind)
            self.out.add_loss(loss.kind, loss.count)
            self.lost[loss.kind] = self.lost.get(loss.kind, 0) + loss.count

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
            rc = self.child.returncode
            if rc < 0:
                try:
                    what = signal.Signals(-rc).name
                except ValueError:
                    what = f"signal {-rc}"
                self.stop_reason = f"command killed by {what}"
            else:
                self.stop_reason = "command exited" + (f" with status {rc}" if rc else "")
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
            try:
                self._rotate()
            except WriteError as exc:
                # the current file is closed normally (complete, indexed), then exit 1
                self.stop_reason = "rotation failed"
                self.fatal = RecorderError(f"{exc}; recording stopped, {self.out.name} is complete")

    def _flush_old(self) -> None:
        """Write the pending events as a chunk once the oldest of them completed
        ``chunk_age`` ago (less one loop tick): a recorder killed at any moment loses at
        most about ``chunk_age`` of events."""
        assert self.out is not None
        w = self.out.writer
        if self.out.events == w.events_written:
            self._oldest_end_ns = None
        elif self._oldest_end_ns is not None:
            age = time.monotonic_ns() - self._oldest_end_ns
            if age >= (self.opts.chunk_age_s - FLUSH_SLACK_S) * 1e9:
                w.flush()
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
            self._clear_status()
            if self.child is not None and self.child.poll() is None and self.out is None and not self.files:
                self.child.kill()
            self._detach()

    def _detach(self) -> None:
        if self.prog is not None:
            prog, self.prog = self.prog, None
            prog.close()
        try:
            self.transport.close()
        except Exception:  # noqa: BLE001 - tearing down must not hide the recording's result
            pass

    def _stopped_by_error(self, exc: BaseException) -> BaseException:
        """What a failure in the loop becomes: the file was aborted (every complete block
        kept, no index), the probes are detached, a traced command still running is
        waited for (it goes on untraced; a signal is forwarded to it, a second one stops
        waiting). Returns the exception to raise: one line for the user."""
        name = self.out.name if self.out is not None else (self.files[-1] if self.files else "")
        self._abort_output()
        self._detach()
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            return exc
        if os.environ.get("AETHER_REC_DEBUG"):
            import traceback

            traceback.print_exception(exc)
        if self.opts.output == "-":
            if isinstance(exc, _GiveUpOnReader):
                err: AetherError = RecorderError(
                    "stopped by a second signal while the reader of stdout was not reading: "
                    "the capture on stdout ends without its last blocks and index"
                )
            elif isinstance(exc, WriteError) and "broken pipe" in str(exc):
                err = RecorderError(
                    "the reader of the capture on stdout went away (broken pipe); recording stopped"
                )
            elif isinstance(exc, AetherError):
                err = RecorderError(f"{str(exc).split(': ', 1)[-1]}; recording stopped")
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
        while self.child.poll() is None and self.signals < 2:
            time.sleep(0.05)
        return self.child.poll()

    def _run(self) -> RecordResult:
        o = self.opts
        if o.command:
            self._spawn()
        try:
            self._load()
            assert self.prog is not None
            # events flow from the first probe attached: --duration and the summary count from there
            self.t_start = self.prog.attached_ns / 1e9
            self._open_output()
            self.t_tick_ns = time.monotonic_ns()
            self._release()  # before the drop: the launcher is root until it execs
            if self.prep.user is not None:
                self._drop()
        except BaseException as exc:
            self._abort_output()
            self._detach()
            if self.child is not None:
                self.child.kill()
                self.child.wait()
            if isinstance(exc, _GiveUpOnReader):
                raise RecorderError("stopped by a second signal: the reader of stdout read nothing") from None
            if isinstance(exc, Exception) and not isinstance(exc, AetherError):
                raise RecorderError(f"recording could not start ({_one_line(exc)})") from None
            raise
        layers = ", ".join(self.prep.program.layers)
        what = (
            f"{' '.join(o.command)}"
            if o.command
            else ("pid " + ",".join(map(str, o.pids)) if o.pids else "all processes")
        )
        u = self.prep.user
        self.log(
            f"recording {layers} I/O of {what} to {self.files[-1]} ({len(self.prep.hooks)} hooks)"
            + (f"; running as {u.name} (uid {u.uid}, gid {u.gid}), root dropped" if u else "")
            + ("" if o.command else "; Ctrl-C to stop")
        )
        t_stop = self.t_start
        next_drain = self.t_start + o.drain_interval_s
        next_tick = self.t_start + TICK_S
        next_clock = self.t_start + CLOCK_EVERY_S
        next_status = self.t_start + STATUS_EVERY_S
        try:
            while True:
                now = time.monotonic()
                if self._should_stop(now):
                    t_stop = now  # what follows only drains what was recorded until now
                    break
                timeout = max(0.0, min(0.1, next_drain - now))
                self.transport.poll(int(timeout * 1000))
                now = time.monotonic()
                if now >= next_drain:
                    self.transport.drain()
                    next_drain = now + o.drain_interval_s
                self._ingest()
                assert self.out is not None
                self._flush_old()
                self.out.writer.maybe_flush()
                if now >= next_tick:
                    self._read_counters()
                    next_tick = now + TICK_S
                if now >= next_clock:
                    self._meta(self.out, "clock", [{"mono": time.monotonic_ns(), "real": time.time_ns()}])
                    next_clock = now + CLOCK_EVERY_S
                if self.status and now >= next_status:
                    self._show_status(now)
                    next_status = now + STATUS_EVERY_S
                if self.hups:
                    self.hups = 0
                    self._on_hup()
                if self._rotating():
                    self._maybe_rotate(now)
            # stop: let in-flight completions land, then drain everything
            time.sleep(0.05)
            self._cut_ns = int(t_stop * 1e9)  # events begun after the stop are not recorded
            deadline = time.monotonic() + FINAL_DRAIN_S
            while True:  # transports hand out bounded batches: drain until dry
                self.transport.drain()
                if not self._ingest() or time.monotonic() > deadline:
                    break
            self._read_counters()
            self._unreported_losses()
            self._close_output(final=True)
        except BaseException as exc:
            raise self._stopped_by_error(exc) from None
        elapsed = t_stop - self.t_start
        if self.fatal is not None:
            self._detach()
            self._wait_child()
            raise self.fatal
        code = 0
        rc = self._wait_child()
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


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _self_usage() -> dict[str, float]:
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
