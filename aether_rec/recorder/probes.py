"""Feature probes: which hooks each I/O layer can use on the running kernel.

Decisions come from what the kernel exposes (tracefs formats, BTF, kernel config,
available_filter_functions), not from its version number, with one exception the kernel
exposes nothing for: whether raw syscall programs may be preempted (syscalls.py's
RAW_SYSCALLS_NEWEST, from what the VM matrix measured). The result, a
:class:`LayerPlan` per layer, carries the hooks (written into the capture header), the
cflags that select them in ``bpf/*.c``, or the reason the layer is unavailable.
"""

from __future__ import annotations

import gzip
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path

from aether_rec.errors import UsageError
from aether_rec.recorder.btf import BTF, VMLINUX, BTFError, block_raw_layout
from aether_rec.recorder.forked import run_forked
from aether_rec.recorder.progcache import memo
from aether_rec.recorder.syscalls import (  # noqa: F401 - re-exported: the plan's callers and tests
    NAME_HOOKS,
    NAME_NR_X86_64,
    RAW_SYSCALLS_NEWEST,
    SYSCALL_HOOK_KINDS,
    SYSCALL_HOOKS,
    SyscallHook,
    kernel_series,
    raw_syscalls_reason,
    use_raw_syscalls,
)
from aether_rec.recorder.tracefs import TraceFS
from aether_rec.schema import OP_CODE, OPS

ALL_LAYERS: tuple[str, ...] = ("syscall", "block", "vfs", "io_uring")
DEFAULT_LAYERS: tuple[str, ...] = ("syscall", "block", "io_uring")


#: ops the io_uring layer can produce
URING_OPS: tuple[str, ...] = (
    "read", "write", "readv", "writev", "fsync", "sync_file_range", "fallocate", "splice"
)

#: ops the block layer can produce
BLOCK_OPS: tuple[str, ...] = ("read", "write", "flush", "discard", "write_zeroes", "secure_erase", "other")

_BLK_NEEDED = ("dev", "sector", "nr_sector", "rwbs")


@dataclass
class LayerPlan:
    layer: str
    available: bool
    reason: str = ""  # why unavailable, or a note
    hooks: list[dict[str, object]] = field(default_factory=list)
    defines: list[str] = field(default_factory=list)  # cflags
    sources: list[str] = field(default_factory=list)  # bpf/ files
    skipped: list[str] = field(default_factory=list)  # hooks this kernel lacks

    def as_dict(self) -> dict[str, object]:
        return {
            "layer": self.layer,
            "available": self.available,
            "reason": self.reason,
            "hooks": self.hooks,
            "skipped": self.skipped,
        }


def parse_ops(spec: str | None) -> frozenset[str] | None:
    """``--ops read,pwrite,fsync`` -> the set of op names (None: all)."""
    if spec is None or spec.strip() in ("", "all"):
        return None
    names = frozenset(s.strip() for s in spec.split(",") if s.strip())
    unknown = sorted(n for n in names if n not in OP_CODE or n == "unknown")
    if unknown:
        known = ", ".join(v for k, v in sorted(OPS.items()) if k)
        raise UsageError(f"unknown op(s) {', '.join(unknown)} in --ops; known ops: {known}")
    return names


def parse_layers(spec: str | None) -> tuple[str, ...]:
    if spec is None or spec.strip() == "":
        return DEFAULT_LAYERS
    if spec.strip() == "all":
        return ALL_LAYERS
    out: list[str] = []
    for s in spec.split(","):
        s = s.strip()
        if not s:
            continue
        if s not in ALL_LAYERS:
            raise UsageError(f"unknown layer {s!r} in --layers; layers: {', '.join(ALL_LAYERS)}")
        if s not in out:
            out.append(s)
    return tuple(out)


def probe_syscall(tfs: TraceFS, ops: frozenset[str] | None = None, hooks: str = "auto") -> LayerPlan:
    """The syscalls' entry and exit: the raw tracepoints raw_syscalls:sys_enter/sys_exit
    (one program each for every syscall, the number selecting the op; about a tenth of a
    classic tracepoint's cost per call) unless ``hooks`` is "tracepoint" or the machine
    cannot (then a classic syscalls:sys_enter_X/sys_exit_X pair per syscall). A syscall is
    traced when the kernel has its tracepoints (tracefs lists what the kernel implements)."""
    raw, why_not_raw = use_raw_syscalls(tfs, hooks)
    plan = LayerPlan("syscall", True, sources=["syscall.c"])
    for h in SYSCALL_HOOKS:
        if ops is not None and h.op not in ops:
            continue
        missing = tfs.missing("syscalls", f"sys_enter_{h.name}", () if raw else h.fields)
        missing += tfs.missing("syscalls", f"sys_exit_{h.name}", () if raw else ("ret",))
        if missing:
            plan.skipped.append(f"{h.name}: missing {', '.join(missing)}")
            continue
        plan.defines.append(f"-DAETHER_SC_{h.name}=1")
        if raw:
            plan.defines.append(f"-DAETHER_NR_{h.name}={h.nr_x86_64}")
        for kind in ("enter", "exit"):
            classic = f"tracepoint:syscalls:sys_{kind}_{h.name}"
            hook = f"raw_tracepoint:sys_{kind}:{h.name}" if raw else classic
            plan.hooks.append({"layer": "syscall", "hook": hook, "op": h.op})
    if raw and plan.hooks:
        plan.defines.append("-DAETHER_SC_RAW=1")
    elif hooks == "auto" and plan.hooks:
        plan.reason = f"classic syscall tracepoints: {why_not_raw}"
    if not plan.hooks:
        plan.available = False
        if ops is not None and not any(h.op in ops for h in SYSCALL_HOOKS):
            plan.reason = "no syscall op selected by --ops"
        else:
            plan.reason = "no syscall tracepoints (syscalls:sys_enter_*) in tracefs: " + "; ".join(
                plan.skipped[:3]
            )
    else:
        plan.defines.append("-DAETHER_LAYER_SYSCALL_ON=1")
        filemap = probe_filemap(tfs)
        plan.defines += filemap
        if filemap:
            hook = "tracepoint:filemap:mm_filemap_add_to_page_cache"
            plan.hooks.append({"layer": "syscall", "hook": hook, "role": "page-cache misses"})
        else:
            plan.skipped.append("mm_filemap_add_to_page_cache: absent, page-cache misses not counted")
    return plan


def probe_names(tfs: TraceFS, hooks: str = "auto") -> LayerPlan:
    """The fd-naming hooks (bpf/names.c, included by tasks.c): each call the kernel has,
    on the raw_syscalls raw tracepoints or classic ones as probe_syscall chooses.
    Not a layer (it records no I/O): planned with the layers that have fds to name."""
    raw, _ = use_raw_syscalls(tfs, hooks)
    plan = LayerPlan("names", True, defines=["-DAETHER_NAMES_ON=1"])
    for name, fields in NAME_HOOKS.items():
        missing = tfs.missing("syscalls", f"sys_enter_{name}", () if raw else fields)
        if name != "close" and name != "close_range":
            missing += tfs.missing("syscalls", f"sys_exit_{name}", () if raw else ("ret",))
        if missing:
            plan.skipped.append(f"{name}: missing {', '.join(missing)}")
            continue
        plan.defines.append(f"-DAETHER_NM_{name}=1")
        if raw:
            plan.defines.append(f"-DAETHER_NR_{name}={NAME_NR_X86_64[name]}")
        hook = f"raw_tracepoint:sys_enter:{name}" if raw else f"tracepoint:syscalls:sys_enter_{name}"
        plan.hooks.append({"layer": "names", "hook": hook, "role": "fd"})
    if raw:
        plan.defines.append("-DAETHER_NM_RAW=1")
    if not tfs.has("syscalls", "sys_enter_openat", NAME_HOOKS["openat"]):
        return LayerPlan("names", False, "no syscalls:sys_enter_openat tracepoint: paths come from /proc")
    return plan


def probe_filemap(tfs: TraceFS) -> list[str]:
    """cflags for counting page-cache misses of reads (syscall.c), if the kernel can."""
    fields = tfs.fields("filemap", "mm_filemap_add_to_page_cache")
    if fields is None:
        return []
    return ["-DFILEMAP_ADD=1"] + (["-DFILEMAP_HAS_ORDER=1"] if "order" in fields else [])


def probe_io_uring(tfs: TraceFS, ops: frozenset[str] | None = None) -> LayerPlan:
    """io_uring requests from submission to completion (bpf/io_uring.c), keyed by the
    request pointer where the tracepoints carry it."""
    if ops is not None and not any(o in ops for o in URING_OPS):
        return LayerPlan("io_uring", False, "no io_uring op (read, write, fsync...) selected by --ops")
    submit = "io_uring_submit_req" if tfs.has("io_uring", "io_uring_submit_req") else "io_uring_submit_sqe"
    sfields = tfs.fields("io_uring", submit)
    cfields = tfs.fields("io_uring", "io_uring_complete")
    if sfields is None or cfields is None:
        return LayerPlan("io_uring", False, "no io_uring tracepoints (io_uring_submit_req/sqe, "
                         "io_uring_complete) in tracefs: the kernel lacks io_uring or its events")
    if "opcode" not in sfields or "res" not in cfields:
        return LayerPlan("io_uring", False, f"io_uring tracepoints lack opcode/res fields ({submit})")
    plan = LayerPlan("io_uring", True, sources=["io_uring.c"], defines=["-DAETHER_LAYER_IO_URING_ON=1"])
    plan.defines.append("-DURING_SUBMIT_REQ=1" if submit == "io_uring_submit_req" else "-DURING_SUBMIT_SQE=1")
    by_req = "req" in sfields and "req" in cfields
    if not by_req:
        if not all(f in sfields and f in cfields for f in ("ctx", "user_data")):
            return LayerPlan("io_uring", False, "io_uring tracepoints carry neither req nor ctx+user_data")
        plan.defines.append("-DURING_KEY_USER_DATA=1")
        plan.reason = "requests keyed by ring and user_data (this kernel's tracepoints lack the request)"
    if "sq_thread" in sfields:
        plan.defines.append("-DURING_HAS_SQ_THREAD=1")
    key_fields = ("req",) if by_req else ("ctx", "user_data")

    def hook(event: str, role: str) -> None:
        plan.hooks.append({"layer": "io_uring", "hook": f"tracepoint:io_uring:{event}", "role": role})

    hook(submit, "submitted")
    hook("io_uring_complete", "completed")
    if tfs.has("io_uring", "io_uring_file_get", key_fields + ("fd",)):
        plan.defines.append("-DURING_HAS_FILE_GET=1")
        hook("io_uring_file_get", "fd")
    else:
        plan.skipped.append("io_uring_file_get: absent or without the request, fd not recorded")
    if tfs.has("io_uring", "io_uring_queue_async_work", key_fields):
        plan.defines.append("-DURING_HAS_ASYNC=1")
        hook("io_uring_queue_async_work", "io-wq")
    if tfs.has("syscalls", "sys_exit_io_uring_enter", ("ret",)):
        plan.defines.append("-DURING_HAS_ENTER_EXIT=1")
    for h in plan.hooks:
        h["key"] = "request" if by_req else "ring+user_data"
    return plan


def _block_op_mask(ops: frozenset[str] | None) -> list[str] | None:
    """-DBLOCK_OP_MASK for --ops ([] for all ops), None when no block op is selected."""
    if ops is None:
        return []
    wanted = [o for o in BLOCK_OPS if o in ops]
    if not wanted:
        return None
    mask = 0
    for o in wanted:
        mask |= 1 << OP_CODE[o]
    return [f"-DBLOCK_OP_MASK={mask:#x}ULL"]


def probe_block(tfs: TraceFS, ops: frozenset[str] | None = None) -> LayerPlan:
    """Raw tracepoints keyed by the request where the kernel's BTF tells its layout
    (bpf/block.c), else the classic tracepoints keyed by device and sector (block_tp.c)."""
    mask = _block_op_mask(ops)
    if mask is None:
        return LayerPlan("block", False, "no block op (read, write, flush, discard...) selected by --ops")
    try:
        plan = probe_block_raw(tfs)
    except BTFError as e:
        plan = probe_block_tp(tfs)
        if plan.available:
            plan.reason = f"classic tracepoints: {e}"
    plan.defines += mask
    return plan


def probe_block_raw(tfs: TraceFS) -> LayerPlan:
    """Raises BTFError when the raw tracepoint path cannot be used."""
    if not tfs.has("block", "block_rq_issue") or not tfs.has("block", "block_rq_complete"):
        raise BTFError("no block_rq_issue/block_rq_complete tracepoints")
    io_start = tfs.has("block", "block_io_start")
    insert = tfs.has("block", "block_rq_insert")
    try:
        st = VMLINUX.stat()
    except OSError as e:
        raise BTFError(f"cannot read {VMLINUX}: {e.strerror}") from None
    # a second of parsing in Python: remembered per kernel (progcache.memo)
    doc = {"btf": [str(VMLINUX), st.st_size, st.st_mtime_ns], "io_start": io_start, "insert": insert}
    # (in a child process: the parse's memory would stay in the recorder for its whole run)
    defines = memo("block-layout", doc, lambda: run_forked(
        lambda: block_raw_layout(BTF.load(), io_start, insert), errors=(BTFError,)))
    plan = LayerPlan("block", True, sources=["block.c"], defines=defines)
    if io_start:
        plan.hooks.append({"layer": "block", "hook": "raw_tracepoint:block_io_start", "role": "made"})
    if insert:
        plan.hooks.append({"layer": "block", "hook": "raw_tracepoint:block_rq_insert", "role": "queued"})
    plan.hooks.append({"layer": "block", "hook": "raw_tracepoint:block_rq_issue", "role": "issued"})
    plan.hooks.append({"layer": "block", "hook": "raw_tracepoint:block_rq_complete", "role": "completed"})
    plan.hooks.append({"layer": "block", "hook": "raw_tracepoint:block_bio_queue", "role": "flush owner"})
    for h in plan.hooks:
        h["key"] = "request"
    return plan


def probe_block_tp(tfs: TraceFS) -> LayerPlan:
    plan = LayerPlan("block", True, sources=["block_tp.c"])
    missing = tfs.missing("block", "block_rq_issue", _BLK_NEEDED) + tfs.missing(
        "block", "block_rq_complete", ("dev", "sector", "nr_sector")
    )
    if missing:
        return LayerPlan("block", False, "block tracepoints unusable: missing " + ", ".join(missing))
    if tfs.has("block", "block_rq_insert", _BLK_NEEDED):
        plan.defines.append("-DBLK_HAS_INSERT=1")
        plan.hooks.append({"layer": "block", "hook": "tracepoint:block:block_rq_insert", "role": "queued"})
    else:
        plan.skipped.append("block_rq_insert: absent, queue time not measured")
    issue = tfs.fields("block", "block_rq_issue") or {}
    plan.hooks.append({"layer": "block", "hook": "tracepoint:block:block_rq_issue", "role": "issued"})
    plan.hooks.append({"layer": "block", "hook": "tracepoint:block:block_rq_complete", "role": "completed"})
    if "bytes" in issue:
        plan.defines.append("-DBLK_HAS_BYTES=1")
    if "error" in (tfs.fields("block", "block_rq_complete") or {}):
        plan.defines.append("-DBLK_HAS_ERROR=1")
    key = "request" if "rq" in issue else "dev+sector"
    for h in plan.hooks:
        h["key"] = key
    return plan


def read_kconfig() -> dict[str, str] | None:
    """The running kernel's configuration (/proc/config.gz or /boot/config-*), or None."""
    text: str | None = None
    try:
        with gzip.open("/proc/config.gz", "rt") as f:
            text = f.read()
    except OSError:
        try:
            text = Path(f"/boot/config-{os.uname().release}").read_text()
        except OSError:
            return None
    out: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("CONFIG_") and "=" in line:
            k, v = line.split("=", 1)
            out[k] = v
        elif line.startswith("# CONFIG_") and line.endswith(" is not set"):
            out[line[2:-11]] = "n"
    return out


def _filter_functions(tfs: TraceFS) -> tuple[set[str] | None, str]:
    p = tfs.root / "available_filter_functions"
    try:
        with open(p) as f:
            names = {line.split()[0] for line in f if line.strip()}
    except OSError as e:
        return None, f"{p} is unreadable ({e.strerror})"
    return names, ""


VFS_FUNCS: tuple[str, ...] = ("vfs_read", "vfs_write", "vfs_fsync_range")


def probe_vfs(tfs: TraceFS) -> LayerPlan:
    """The vfs layer needs kprobes (bpf/vfs.c: a kprobe/kretprobe pair per function);
    where the kernel has none, report exactly why, for kprobes and for fentry."""
    reasons: list[str] = []
    cfg = read_kconfig()
    funcs, why_funcs = _filter_functions(tfs)
    # kprobes
    if cfg is not None and cfg.get("CONFIG_KPROBES", "n") != "y":
        reasons.append("kprobes: the kernel is built without CONFIG_KPROBES")
    elif not (tfs.root / "kprobe_events").exists():
        reasons.append("kprobes: no kprobe_events in tracefs")
    elif funcs is not None and not all(f in funcs for f in VFS_FUNCS):
        reasons.append("kprobes: vfs functions are not traceable")
    else:
        plan = LayerPlan("vfs", True, sources=["vfs.c"])
        for fn in VFS_FUNCS:
            plan.hooks.append({"layer": "vfs", "hook": f"kprobe:{fn}", "role": "entry"})
            plan.hooks.append({"layer": "vfs", "hook": f"kretprobe:{fn}", "role": "return"})
        return plan
    # fentry
    if platform.machine() != "x86_64":
        reasons.append("fentry: bcc supports fentry only on x86_64")
    elif not Path("/sys/kernel/btf/vmlinux").exists():
        reasons.append("fentry: no kernel BTF (/sys/kernel/btf/vmlinux)")
    elif cfg is not None and cfg.get("CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS", "n") != "y":
        reasons.append("fentry: the kernel lacks CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS")
    elif funcs is None:
        reasons.append(f"fentry: function tracing is locked down ({why_funcs})")
    elif not all(f in funcs for f in VFS_FUNCS):
        reasons.append("fentry: vfs functions are not in available_filter_functions")
    else:
        reasons.append("fentry: available, but aether-rec's vfs program uses kprobes")
    return LayerPlan("vfs", False, "; ".join(reasons))


def probe_layers(
    tfs: TraceFS, layers: tuple[str, ...], ops: frozenset[str] | None = None, syscall_hooks: str = "auto"
) -> dict[str, LayerPlan]:
    plans: dict[str, LayerPlan] = {}
    for layer in layers:
        if layer == "syscall":
            plans[layer] = probe_syscall(tfs, ops, syscall_hooks)
        elif layer == "block":
            plans[layer] = probe_block(tfs, ops)
        elif layer == "vfs":
            plans[layer] = probe_vfs(tfs)
        elif layer == "io_uring":
            plans[layer] = probe_io_uring(tfs, ops)
    return plans


def needs_names(plans: dict[str, LayerPlan]) -> bool:
    """Whether the layers planned have fds to name (the syscall and io_uring layers)."""
    return any(plans[x].available for x in ("syscall", "io_uring") if x in plans)


def transport_status(tfs: TraceFS) -> dict[str, object]:
    """Which transports the kernel offers (perf buffer: every kernel we target)."""
    cfg = read_kconfig() or {}
    rb = has_ringbuf()
    return {
        "ringbuf": {"available": rb, "used": rb, "note": "--transport auto uses it"},
        "perf": {
            "available": cfg.get("CONFIG_BPF_EVENTS", "y") == "y",
            "used": not rb,
            "note": "" if not rb else "--transport perf",
        },
    }


def has_ringbuf() -> bool:
    """Whether the kernel creates BPF ring buffer maps (5.8+): create one and close it."""
    from aether_rec.recorder.bpfsys import BPF_MAP_TYPE_RINGBUF, can_create_map

    return can_create_map(BPF_MAP_TYPE_RINGBUF, 0, 0, mmap_page_size())


def mmap_page_size() -> int:
    import mmap

    return mmap.PAGESIZE
