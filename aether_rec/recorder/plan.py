"""The plan of a recording, decided before anything is loaded: the environment (bcc,
tracefs, headers), the layers the kernel offers, the transport and the BPF program.

:func:`prepare` checks the options (one pass, :meth:`RecordOptions.check`), then the
machine, and returns a :class:`Prepared`; ``record --ebpf`` prints its program, the
session loads it. :func:`make_transport` is the one place a transport is chosen, and
:func:`capture_header` says what every file of the recording declares about it.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aether_rec.errors import EnvironmentProblem, RecorderError, UsageError
from aether_rec.recorder.bccload import BccInfo, locate_bcc
from aether_rec.recorder.headers import HeaderSource, apply_headers, find_headers
from aether_rec.recorder.options import RecordOptions
from aether_rec.recorder.perfbuf import PerfMmapTransport, default_pages, online_cpus
from aether_rec.recorder.privileges import User, can_create_in, check_privileges, resolve_user
from aether_rec.recorder.probes import (
    ALL_LAYERS,
    LayerPlan,
    has_ringbuf,
    needs_names,
    probe_layers,
    probe_names,
)
from aether_rec.recorder.procinfo import descendants
from aether_rec.recorder.program import Program, ProgramOptions, build_program
from aether_rec.recorder.ringbuf import RingBufTransport
from aether_rec.recorder.syscalls import inflight_defines, who_cache_defines
from aether_rec.recorder.tracefs import TraceFS, ensure_tracefs
from aether_rec.recorder.transport import Transport
from aether_rec.schema import KERNEL_NAME_DTYPE

Log = Callable[[str], None]


def default_log(msg: str) -> None:
    print(f"aether-rec: {msg}", file=sys.stderr, flush=True)


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
    program_options: ProgramOptions  # what the program was built for (its filters...)
    notes: list[str] = field(default_factory=list)
    not_asked: dict[str, str] = field(default_factory=dict)  # unrequested layers the kernel lacks
    user: User | None = None
    names: LayerPlan | None = None  # the fd-naming hooks (bpf/names.c), if planned
    names_transport: Transport | None = None  # where their records arrive

    @property
    def hooks(self) -> list[dict[str, object]]:
        hooks = [h for p in self.plans.values() if p.available for h in p.hooks]
        if self.names is not None and self.names.available:
            hooks += self.names.hooks
        return hooks

    @property
    def attach_points(self) -> int:
        """How many hooks are attached: the syscalls served by one raw_syscalls program
        ("raw_tracepoint:sys_enter:read", ":write"...) count once per tracepoint."""
        points = set()
        for h in self.hooks:
            name = str(h["hook"])
            points.add(":".join(name.split(":")[:2]) if name.startswith("raw_tracepoint:sys_") else name)
        return len(points)

    @property
    def maps(self) -> list[str]:
        """The program's maps the recorder reads."""
        return ["events", "counters"] + (["names"] if self.names_transport is not None else [])


def make_transport(
    name: str, pages: int | None = None, wakeup_events: int | None = None, ringbuf_ok: bool = False
) -> Transport:
    """``perf`` (perf buffer, every kernel), ``ringbuf`` (BPF ring buffer, 5.8+), or
    ``auto``: the ring buffer when the kernel has it (``ringbuf_ok``), else perf."""
    if name == "auto":
        name = "ringbuf" if ringbuf_ok else "perf"
    if name in ("perf", "perf_buffer"):
        return PerfMmapTransport(pages or default_pages(), wakeup_events)
    if name == "ringbuf":
        return RingBufTransport(pages or 8192)
    raise RecorderError(f"unknown transport {name!r}: choose perf or ringbuf")


# 8 MiB of name records (288 bytes each, on 4 KiB pages): ~29,000 opens and closes between
# two reads of the ring (the loop reads it at least every 100 ms; a loaded machine can
# stretch that to a second: a `cat` per file of a tree makes ~60 records per file)
NAMES_PAGES = 2048
NAMES_WINDOW = 256 << 10  # bytes of the names ring mapped at a time


def make_names_transport(events: Transport) -> Transport:
    """The transport of the fd-naming records, of the same kind as the events'. Its
    losses are counted by the program (counter name_failed), not reported by it."""
    if isinstance(events, RingBufTransport):
        # mapped a little at a time (names are few), read whole at every drain
        return RingBufTransport(NAMES_PAGES, table="names", drop_counter=None, dtype=KERNEL_NAME_DTYPE,
                                window=NAMES_WINDOW, batch=NAMES_PAGES * 4096 // KERNEL_NAME_DTYPE.itemsize)
    per_cpu = max(16, NAMES_PAGES // max(1, len(online_cpus())))
    per_cpu = 1 << (per_cpu.bit_length() - 1)
    return PerfMmapTransport(per_cpu, 64, table="names", dtype=KERNEL_NAME_DTYPE, report_losses=False)


def prepare(opts: RecordOptions, log: Log = default_log) -> Prepared:
    """Check the options and the environment and build the program (nothing is loaded yet)."""
    chosen = opts.check()
    layers = chosen.layers
    check_privileges()
    user = check_user(opts) if opts.user is not None else None
    bcc = locate_bcc()  # imported only where the program is compiled (the loader helper)
    root, note = ensure_tracefs(mount=True)
    notes: list[str] = []
    if note:
        log(note)
        notes.append(note)
    tfs = TraceFS(root)
    plans = probe_layers(tfs, layers, chosen.ops, opts.syscall_hooks)
    unavailable = {k: p for k, p in plans.items() if not p.available}
    # layers not asked for: why they are absent goes into the header too (provenance)
    not_asked = {
        k: v.reason
        for k, v in probe_layers(tfs, tuple(x for x in ALL_LAYERS if x not in layers)).items()
        if not v.available
    }
    if chosen.layers_explicit and unavailable:
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
    sc = plans.get("syscall")
    if sc is not None and sc.available:
        sc.defines += inflight_defines(opts.inflight)
        sc.defines += who_cache_defines(tfs, sc.defines)
    names = probe_names(tfs, opts.syscall_hooks) if needs_names(plans) else None
    if names is not None and not names.available:
        log(names.reason)
        notes.append(names.reason)
    for p in [*plans.values(), *([names] if names is not None else [])]:
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
    names_transport = make_names_transport(transport) if names is not None and names.available else None
    popts = ProgramOptions(
        self_tgid=os.getpid(),
        filter_pid=opts.filter_pid,
        filter_comm=opts.comm is not None,
        filter_cgroup=chosen.cgroup is not None,
        min_latency_ns=opts.min_latency_ns,
        sc_map_size=opts.map_size,
        blk_map_size=opts.map_size,
        pid_map_size=opts.map_size,
        extra_cflags=transport.cflags() + (
            [f"-DAETHER_NAMES_PAGES={NAMES_PAGES}"] if names_transport is not None else []
        ),
    )
    prog = build_program(plans, popts, names=names if names_transport is not None else None)
    return Prepared(
        bcc, root, hs, plans, prog, chosen.ops, chosen.cgroup, transport, popts, notes, not_asked, user,
        names, names_transport,
    )


def filter_values(opts: RecordOptions, prep: Prepared, child: int | None) -> dict[str, Any]:
    """The run-time settings and the pid, comm and cgroup filters for the program's maps
    (recorder/filters.py): the --pid processes and their descendants now, and the traced
    command ``child``."""
    o = prep.program_options
    f: dict[str, Any] = {"config": {"self_tgid": int(o.self_tgid), "min_lat_ns": int(o.min_latency_ns)}}
    if prep.program_options.filter_pid:
        pids = descendants(list(opts.pids)) if opts.pids else []
        if child is not None:
            pids.append(child)
        f["pids"] = pids
    if opts.comm is not None:
        f["comm"] = opts.comm
    if prep.cgroup_path is not None:
        f["cgroup_path"] = str(prep.cgroup_path)
    return f


def check_user(opts: RecordOptions) -> User:
    """The --user to drop to. Files made after the drop (rotation) are created as that
    user, so --rotate-* needs an output directory the user can write to."""
    assert opts.user is not None
    user = resolve_user(opts.user)
    if os.geteuid() != 0:
        raise EnvironmentProblem(f"--user {user.name} needs the recorder to start as root")
    if opts.rotating and not opts.to_stdout:
        d = os.path.dirname(os.path.abspath(opts.output))
        if not can_create_in(user, d):
            raise UsageError(
                f"--user {user.name} with --rotate-size/--rotate-time: {user.name} cannot create "
                f"files in {d}, and the next files are created after the drop; "
                f"record into a directory {user.name} can write to"
            )
    return user


def capture_header(
    opts: RecordOptions,
    prep: Prepared,
    recording_id: str,
    index: int,
    attached: tuple[int, float, str] | None = None,
) -> dict[str, Any]:
    """The header of file ``index`` (from 1) of the recording: how it was made;
    ``attached``: CLOCK_MONOTONIC ns of the first probe attached and how long attaching
    took (seconds), once the program is loaded."""
    p = prep
    o = opts
    filters: dict[str, Any] = {}
    if o.pids:
        filters["pid"] = list(o.pids)
    if o.command:
        filters["command"] = list(o.command)
    if o.filter_pid:
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
        "transport": p.transport.name,
        "recorder": {
            "bcc_version": p.bcc.version,
            "bcc_location": p.bcc.location,
            "headers": p.headers.as_dict(),
            "tracefs": str(p.tracefs),
            "transport": p.transport.describe(),
            "cflags": p.program.cflags,
            "pid": os.getpid(),
            "attached_ns": attached[0] if attached is not None else None,
            "attach_s": round(attached[1], 3) if attached is not None else None,
            "program": attached[2] if attached is not None else None,  # "compiled" or "cache"
            "notes": p.notes,
            **({"user": p.user.name} if p.user is not None else {}),
        },
        "recording_id": recording_id,
        "rotation": {"index": index} if o.rotating or index > 1 else None,
    }
