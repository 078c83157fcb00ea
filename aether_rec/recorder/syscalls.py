"""Which syscalls aether-rec hooks and how: the I/O syscalls of the syscall layer
(bpf/syscall.c) and the calls that name fds (bpf/names.c), their sys_enter fields and x86_64
numbers, and the choice between the raw_syscalls raw tracepoints and the classic per-syscall
ones (--syscall-hooks). recorder/probes.py plans the layers from these."""

from __future__ import annotations

import os
import platform
from collections.abc import Callable
from dataclasses import dataclass

from aether_rec.errors import RecorderError, UsageError
from aether_rec.recorder.tracefs import TraceFS


@dataclass(frozen=True)
class SyscallHook:
    name: str  # as in tracefs: sys_enter_<name>
    op: str  # schema op name
    fields: tuple[str, ...]  # sys_enter fields the C code reads
    nr_x86_64: int  # its number on x86_64 (the ABI's, fixed: asm/unistd_64.h __NR_<name>)


SYSCALL_HOOKS: tuple[SyscallHook, ...] = (
    SyscallHook("read", "read", ("fd", "count"), 0),
    SyscallHook("write", "write", ("fd", "count"), 1),
    SyscallHook("pread64", "pread", ("fd", "count", "pos"), 17),
    SyscallHook("pwrite64", "pwrite", ("fd", "count", "pos"), 18),
    SyscallHook("readv", "readv", ("fd", "vec", "vlen"), 19),
    SyscallHook("writev", "writev", ("fd", "vec", "vlen"), 20),
    SyscallHook("preadv", "preadv", ("fd", "vec", "vlen", "pos_l"), 295),
    SyscallHook("pwritev", "pwritev", ("fd", "vec", "vlen", "pos_l"), 296),
    SyscallHook("preadv2", "preadv2", ("fd", "vec", "vlen", "pos_l", "flags"), 327),
    SyscallHook("pwritev2", "pwritev2", ("fd", "vec", "vlen", "pos_l", "flags"), 328),
    SyscallHook("fsync", "fsync", ("fd",), 74),
    SyscallHook("fdatasync", "fdatasync", ("fd",), 75),
    SyscallHook("sync_file_range", "sync_file_range", ("fd", "offset", "nbytes"), 277),
    SyscallHook("sendfile64", "sendfile", ("in_fd", "count"), 40),
    SyscallHook("copy_file_range", "copy_file_range", ("fd_in", "len"), 326),
    SyscallHook("splice", "splice", ("fd_in", "len"), 275),
    SyscallHook("msync", "msync", ("len",), 26),
    SyscallHook("syncfs", "syncfs", ("fd",), 306),
    SyscallHook("sync", "sync", (), 162),
    SyscallHook("fallocate", "fallocate", ("fd", "offset", "len"), 285),
    SyscallHook("io_submit", "io_submit", ("ctx_id", "nr"), 209),
    SyscallHook("io_getevents", "io_getevents", ("ctx_id", "nr"), 208),
)

#: the calls that make, copy and close fds or change the working directory (bpf/names.c):
#: name -> sys_enter fields read. Followed with the syscall and io_uring layers, so that
#: each event's path is the one its fd had at the time.
NAME_HOOKS: dict[str, tuple[str, ...]] = {
    "openat": ("dfd", "filename", "flags"),
    "openat2": ("dfd", "filename", "how"),
    "open": ("filename", "flags"),
    "creat": ("pathname",),
    "close": ("fd",),
    "close_range": ("fd", "max_fd", "flags"),
    "dup": ("fildes",),
    "dup2": ("oldfd",),
    "dup3": ("oldfd",),
    "fcntl": ("fd", "cmd"),
    "chdir": ("filename",),
    "fchdir": ("fd",),
    "pipe": ("fildes",),
    "pipe2": ("fildes",),
    "socket": (),
    "socketpair": ("usockvec",),
    "accept": (),
    "accept4": (),
}

#: their numbers on x86_64 (the ABI's, fixed: asm/unistd_64.h __NR_<name>)
NAME_NR_X86_64: dict[str, int] = {
    "openat": 257, "openat2": 437, "open": 2, "creat": 85, "close": 3, "close_range": 436,
    "dup": 32, "dup2": 33, "dup3": 292, "fcntl": 72, "chdir": 80, "fchdir": 81, "pipe": 22,
    "pipe2": 293, "socket": 41, "socketpair": 53, "accept": 43, "accept4": 288,
}


#: --syscall-hooks choices: auto (raw where possible), raw, tracepoint
SYSCALL_HOOK_KINDS: tuple[str, ...] = ("auto", "raw", "tracepoint")
#: --inflight: where the kernel keeps each thread's syscall in flight (bpf/aether_common.h)
INFLIGHT_KINDS: tuple[str, ...] = ("auto", "task-storage", "hash")


#: the newest kernel series on which raw_syscalls programs were seen to run without being
#: preempted. On 7.2 (Debian's) they are preemptible: a program preempted on a CPU makes the
#: kernel skip it for the next syscall there (a recursion miss: counted, but a loss), which
#: the VM matrix saw under load (9 of 4,000 calls) where the classic tracepoints lose none.
RAW_SYSCALLS_NEWEST: tuple[int, int] = (6, 18)


def kernel_series(release: str) -> tuple[int, int]:
    """(major, minor) of a kernel release string such as '6.18.44-fc-v1045'."""
    parts = release.split(".")
    try:
        return int(parts[0]), int("".join(c for c in parts[1] if c.isdigit()) or 0)
    except (IndexError, ValueError):
        return (0, 0)


def raw_syscalls_reason(tfs: TraceFS) -> str:
    """Why the syscall layer cannot use the raw_syscalls raw tracepoints ("" if it can):
    syscall.c reads the arguments from x86_64's saved registers and knows its numbers."""
    if platform.machine() != "x86_64":
        return (
            "aether-rec knows the syscall registers and numbers of x86_64 only, "
            f"not {platform.machine()}"
        )
    if not (tfs.has("raw_syscalls", "sys_enter") and tfs.has("raw_syscalls", "sys_exit")):
        return "no raw_syscalls:sys_enter/sys_exit tracepoints in tracefs"
    return ""


def use_raw_syscalls(tfs: TraceFS, hooks: str, release: str | None = None) -> tuple[bool, str]:
    """Whether the syscall layer and the fd names hook syscalls through raw_syscalls
    (--syscall-hooks: auto, raw, tracepoint), and why not when they do not. auto uses them
    up to RAW_SYSCALLS_NEWEST; raw on a machine that cannot is an error."""
    if hooks not in SYSCALL_HOOK_KINDS:
        raise UsageError(f"--syscall-hooks must be one of {', '.join(SYSCALL_HOOK_KINDS)}, not {hooks!r}")
    if hooks == "tracepoint":
        return False, "classic tracepoints asked for (--syscall-hooks tracepoint)"
    why = raw_syscalls_reason(tfs)
    if why:
        if hooks == "raw":
            raise RecorderError(f"--syscall-hooks raw: {why}")
        return False, why
    release = release or os.uname().release
    if hooks == "auto" and kernel_series(release) > RAW_SYSCALLS_NEWEST:
        return False, (
            f"kernel {release} may preempt raw syscall programs, which then skip calls under "
            "load (--syscall-hooks raw uses them anyway)"
        )
    return True, ""


def inflight_defines(kind: str, probe: Callable[[], bool] | None = None) -> list[str]:
    """The cflags that keep the syscall layer's in-flight calls in task storage (--inflight:
    auto where the kernel can, task-storage, hash). task-storage on a kernel that cannot
    is an error; ``probe`` (default: bpfsys.has_task_storage) says whether it can."""
    if kind not in INFLIGHT_KINDS:
        raise UsageError(f"--inflight must be one of {', '.join(INFLIGHT_KINDS)}, not {kind!r}")
    if kind == "hash":
        return []
    if probe is None:
        from aether_rec.recorder.bpfsys import has_task_storage

        probe = has_task_storage
    if probe():
        return ["-DAETHER_SC_TASK_STORAGE=1"]
    if kind == "task-storage":
        raise RecorderError("--inflight task-storage: this kernel cannot use BPF task storage in "
                            "tracing programs (Linux 5.12 and later can); use --inflight hash")
    return []


def who_cache_defines(tfs: TraceFS, defines: list[str]) -> list[str]:
    """Where the syscall layer keeps its calls in task storage (``defines``: its cflags so
    far), an event's comm and cgroup are copied from the thread's slot instead of read by
    bpf_get_current_comm / bpf_get_current_cgroup_id (bpf/syscall.c sc_who), each only when
    the kernel has the hook that says it changed: task:task_rename (which exec fires too)
    -DAETHER_COMM_CACHE, cgroup:cgroup_attach_task -DAETHER_CGROUP_CACHE."""
    if "-DAETHER_SC_TASK_STORAGE=1" not in defines:
        return []
    out = []
    if tfs.has("task", "task_rename"):
        out.append("-DAETHER_COMM_CACHE=1")
    if tfs.has("cgroup", "cgroup_attach_task"):
        out.append("-DAETHER_CGROUP_CACHE=1")
    return out
