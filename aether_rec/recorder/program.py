"""The BPF program loaded for a recording: the sources of the chosen layers from ``bpf/``
and the cflags that parameterise them. ``text`` is exactly what bcc compiles (``--ebpf``
prints it), its first line names the cflags."""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from aether_rec.errors import EnvironmentProblem
from aether_rec.recorder.probes import LayerPlan

#: index -> name of the per-CPU counters in bpf/aether_common.h (AETHER_C_*)
COUNTERS: tuple[str, ...] = (
    "syscall_start_map_full",
    "syscall_unmatched",
    "block_start_map_full",
    "block_unmatched",
    "pid_map_full",
    "submit_failed",
    "below_min_latency",
    "syscall_op_mismatch",
    "block_partial",
    "vfs_start_map_full",
    "vfs_unmatched",
    "block_nodata",
    "io_uring_start_map_full",
    "io_uring_unmatched",
    "name_failed",
)

#: counters that mean events were lost, and the loss-block kind each is stored as
LOSS_COUNTERS: dict[str, str] = {
    "syscall_start_map_full": "start_map_full",
    "syscall_unmatched": "unmatched",
    "block_start_map_full": "start_map_full",
    "block_unmatched": "unmatched",
    "pid_map_full": "pid_map_full",
    "syscall_op_mismatch": "unmatched",
    "vfs_start_map_full": "start_map_full",
    "vfs_unmatched": "unmatched",
    "io_uring_start_map_full": "start_map_full",
    "name_failed": "names",
}


def bpf_dir() -> Path:
    """Where the BPF C sources are: $AETHER_REC_BPF_DIR, the source checkout, or the
    installed data directory."""
    env = os.environ.get("AETHER_REC_BPF_DIR")
    candidates = [Path(env)] if env else []
    here = Path(__file__).resolve()
    candidates += [
        here.parents[2] / "bpf",
        here.parents[1] / "bpf",
        Path(sys.prefix) / "share" / "aether-rec" / "bpf",
    ]
    for c in candidates:
        if (c / "aether_event.h").is_file():
            return c
    raise EnvironmentProblem(
        "the BPF sources (bpf/aether_event.h) are missing from this installation: "
        "reinstall aether-rec or set AETHER_REC_BPF_DIR"
    )


@dataclass
class ProgramOptions:
    self_tgid: int = 0
    filter_pid: bool = False
    filter_comm: bool = False
    filter_cgroup: bool = False
    min_latency_ns: int = 0
    sc_map_size: int = 16384
    blk_map_size: int = 16384
    pid_map_size: int = 16384
    extra_cflags: list[str] = field(default_factory=list)


@dataclass
class Program:
    text: str
    cflags: list[str]
    layers: list[str]

    def render(self) -> str:
        """What ``--ebpf`` prints: the exact text handed to bcc."""
        return self.text


def build_program(
    plans: dict[str, LayerPlan], opts: ProgramOptions, src: Path | None = None, names: LayerPlan | None = None
) -> Program:
    """The program of the available layers in ``plans``, with the fd-naming hooks of
    ``names`` (probes.probe_names) when given and available."""
    src = src or bpf_dir()
    layers = [name for name, p in plans.items() if p.available]
    # the recorder's pid and --min-latency are run-time settings (the aether_config map,
    # filled by recorder/filters.py): the same options compile to the same object
    cflags = [f"-DSC_MAP_SIZE={int(opts.sc_map_size)}", f"-DBLK_MAP_SIZE={int(opts.blk_map_size)}"]
    cflags += [f"-DPID_MAP_SIZE={int(opts.pid_map_size)}"]
    if opts.filter_pid:
        cflags.append("-DFILTER_PID=1")
    if opts.filter_comm:
        cflags.append("-DFILTER_COMM=1")
    if opts.filter_cgroup:
        cflags.append("-DFILTER_CGROUP=1")
    sources: list[str] = []
    for name in layers:
        cflags += plans[name].defines
        sources += plans[name].sources
    if names is not None and names.available:
        cflags += names.defines  # names.c is included by tasks.c
    sources.append("tasks.c")
    sources.append("sys_raw.c")  # the raw_syscalls programs, when a source asks for them
    cflags += opts.extra_cflags
    parts = [
        "/* aether-rec BPF program, compiled by bcc with cflags:\n *   "
        + " ".join(cflags)
        + "\n * sources: "
        + ", ".join(sources)
        + f" from {src} */\n"
    ]
    seen: set[str] = set()
    for s in sources:
        parts.append(_expand(src, s, seen))
    return Program(text="\n".join(parts), cflags=cflags, layers=layers)


_LOCAL_INCLUDE = re.compile(r'^\s*#\s*include\s+"([A-Za-z0-9_.]+)"\s*$')


def _expand(src: Path, name: str, seen: set[str]) -> str:
    """The file with its local ``#include "x.h"`` lines replaced by x.h (each file once).

    bcc rewrites map operations (``m.lookup()``, ``events.perf_submit()``) only in the main
    file it compiles, never in included headers, so shared helpers must be inlined into
    one text. System includes (``<...>``) are left to the compiler."""
    if name in seen:
        return f"/* ---- {name}: already included ---- */\n"
    seen.add(name)
    try:
        body = (src / name).read_text()
    except OSError as e:
        raise EnvironmentProblem(
            f"cannot read BPF source {src / name} ({e.strerror}): reinstall aether-rec"
        ) from None
    out = [f"/* ---- {name} ---- */"]
    for line in body.splitlines():
        m = _LOCAL_INCLUDE.match(line)
        if m:
            out.append(_expand(src, m.group(1), seen))
        else:
            out.append(line)
    return "\n".join(out) + "\n"
