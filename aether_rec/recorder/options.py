"""What ``aether-rec record`` was asked for, and the one pass that checks it.

:class:`RecordOptions` holds the caller's choices as typed values (the CLI has already
turned durations and sizes into integers); its properties answer the questions the rest
of the recorder asks (``to_stdout``, ``rotating``, ``filter_pid``). :meth:`RecordOptions.check`
is the only place the choices are validated, before anything touches the kernel: every
range, the processes and command named, the output's first file, and the ``--layers``,
``--ops`` and ``--cgroup`` texts, which come back parsed as :class:`Checked`.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from aether_rec.errors import RecorderError, UsageError
from aether_rec.recorder.output import file_name, refuse_reason
from aether_rec.recorder.probes import parse_layers, parse_ops


@dataclass
class RecordOptions:
    output: str  # a file, or "-" for stdout
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
    syscall_hooks: str = "auto"  # auto: raw_syscalls raw tracepoints where possible (probes.py)
    inflight: str = "auto"  # auto: syscalls in flight in task storage where possible (syscalls.py)
    transport: str = "auto"  # auto: ring buffer where the kernel has it, else perf buffer
    buffer_pages: int | None = None  # None: the transport's default
    wakeup_events: int | None = None  # perf buffer: None = an eighth of the buffer
    drain_interval_s: float = 0.25
    map_size: int = 16384
    chunk_events: int = 65536
    chunk_age_s: float = 1.0
    status: bool | None = None  # None: when stderr is a terminal
    argv: tuple[str, ...] = ()
    user: str | None = None  # --user: drop to this user once attached and open
    redact: bool = False  # --redact: names and paths hashed on the way out
    redact_key: bytes | None = None  # None with redact: a random key, not stored

    @property
    def to_stdout(self) -> bool:
        """The capture is streamed to stdout (``-o -``)."""
        return self.output == "-"

    @property
    def rotating(self) -> bool:
        """--rotate-size or --rotate-time: numbered files from the first one."""
        return self.rotate_size is not None or self.rotate_time_ns is not None

    @property
    def filter_pid(self) -> bool:
        """Only the processes named (--pid) or started (CMD) and their children."""
        return bool(self.pids or self.command)

    def file_name(self, index: int) -> str:
        """File ``index`` (from 1) of this recording; see output.file_name."""
        return file_name(self.output, index, self.rotating, self.to_stdout)

    def check(self) -> Checked:
        """Validate every choice (UsageError for malformed ones, RecorderError for what
        does not exist or cannot be made) and parse the list options."""
        _check_values(self)
        return Checked(
            layers=parse_layers(self.layers),
            layers_explicit=self.layers is not None,
            ops=parse_ops(self.ops),
            cgroup=cgroup_path(self.cgroup) if self.cgroup else None,
        )


@dataclass(frozen=True)
class Checked:
    """The parsed forms of RecordOptions' list options."""

    layers: tuple[str, ...]
    layers_explicit: bool  # --layers named them: a missing one is an error, not a note
    ops: frozenset[str] | None  # None: every op
    cgroup: Path | None


def _check_values(opts: RecordOptions) -> None:
    if opts.to_stdout:
        if opts.rotating:
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
    if not opts.to_stdout:
        why = refuse_reason(opts.file_name(1), opts.force)
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


def cgroup_path(spec: str) -> Path:
    """--cgroup SPEC: a cgroup v2 directory, absolute or under the hierarchy's root."""
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
