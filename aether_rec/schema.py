"""The event schema: every column of a capture, defined once, with its type and unit.

Both the recorder (which fills columns from the kernel's ``struct aether_event``,
see ``bpf/aether_event.h``) and every reader and offline tool use these definitions.
Readers must tolerate columns they do not know (later minor versions add them) and
columns that are missing from a chunk (they read as the column's default).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # numpy is imported on first use: `info` and `--help` run without it
    import numpy as np


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # numpy dtype string ("<u8", "<i4", ...) or "str" (dictionary-coded)
    unit: str  # "ns", "bytes", "" ...
    default: int | str
    doc: str
    since: int = 0  # the format minor version (1.since) that added the column

    @property
    def is_str(self) -> bool:
        return self.type == "str"

    @property
    def dtype(self) -> np.dtype:
        """In-memory dtype; string columns are held as uint32 dictionary codes."""
        import numpy as np

        return np.dtype("<u4") if self.is_str else np.dtype(self.type)


COLUMNS: tuple[Column, ...] = (
    Column("ts", "<u8", "ns", 0, "start of the I/O, CLOCK_MONOTONIC"),
    Column("lat", "<u8", "ns", 0, "latency: end minus start (block: queue + service)"),
    Column("pid", "<u4", "", 0, "process id (tgid) that issued the I/O"),
    Column("tid", "<u4", "", 0, "thread id that issued the I/O"),
    Column("comm", "str", "", "", "thread name at the time of the I/O"),
    Column("cpu", "<u2", "", 0, "CPU the I/O completed on"),
    Column("layer", "<u1", "enum", 0, "I/O layer, see LAYERS"),
    Column("op", "<u1", "enum", 0, "operation, see OPS"),
    Column("fd", "<i4", "", -1, "file descriptor (syscall layer), -1 if none"),
    Column("dev", "<u4", "dev_t", 0, "device, kernel encoding major << 20 | minor"),
    Column("offset", "<i8", "bytes", -1, "file offset or device offset (sector * 512), -1 if none"),
    Column("bytes", "<u8", "bytes", 0, "bytes requested"),
    Column("result", "<i8", "", 0, "bytes done, or negative errno"),
    Column("queue", "<u8", "ns", 0, "block layer: time queued before issue to the device"),
    Column("cgroup", "<u8", "", 0, "cgroup v2 id of the issuing task"),
    Column("flags", "<u4", "", 0, "flag bits, see FLAGS"),
    # (the docs of 1.0 columns are in every 1.0 header: unchanged, so 1.0 files stay as they were;
    # since 1.1 a block request linked to a syscall or io_uring request carries its file's path)
    Column("path", "str", "", "", "file path (syscall/vfs) or device name (block), best effort"),
    Column("link", "<u8", "ns", 0, "block: ts of the syscall or io_uring event of the same tid in whose "
           "context the request was submitted (it and this event share tid); 0 if none", since=1),
    Column("pages_missed", "<u4", "pages", 0, "syscall reads: pages the read added to the page cache "
           "(0: served from the cache)", since=1),
    Column("fdkind", "<u1", "enum", 0, "what the fd refers to, see FD_KINDS", since=1),
)

COLUMN_BY_NAME: dict[str, Column] = {c.name: c for c in COLUMNS}
STR_COLUMNS: tuple[str, ...] = tuple(c.name for c in COLUMNS if c.is_str)

# Layers and ops are stable numeric codes: never renumber, only append.
LAYERS: dict[int, str] = {0: "unknown", 1: "syscall", 2: "block", 3: "vfs", 4: "io_uring"}

OPS: dict[int, str] = {
    0: "unknown",
    1: "read",
    2: "write",
    3: "pread",
    4: "pwrite",
    5: "readv",
    6: "writev",
    7: "preadv",
    8: "pwritev",
    9: "preadv2",
    10: "pwritev2",
    11: "fsync",
    12: "fdatasync",
    13: "sync_file_range",
    14: "sendfile",
    15: "copy_file_range",
    16: "splice",
    17: "msync",
    18: "syncfs",
    19: "sync",
    20: "fallocate",
    21: "io_submit",
    22: "io_getevents",
    32: "flush",
    33: "discard",
    34: "write_zeroes",
    35: "secure_erase",
    36: "other",
}

# Flag bits (the ``flags`` column).
FLAGS: dict[int, str] = {
    1 << 0: "sync",  # REQ_SYNC / O_DSYNC-like
    1 << 1: "meta",
    1 << 2: "fua",
    1 << 3: "preflush",
    1 << 4: "rahead",
    1 << 5: "direct",  # O_DIRECT file
    1 << 6: "partial",  # block: completed in more than one piece
    1 << 7: "queued",  # block: insert was seen, queue time is valid
    1 << 8: "async",  # io_uring: punted to an io-wq worker
    1 << 9: "sqpoll",  # io_uring: submitted by the SQ polling thread
}

# What an event's fd refers to (the ``fdkind`` column); "storage" kinds are what ``stats``
# shows by default.
FD_KINDS: dict[int, str] = {
    0: "unknown",
    1: "file",  # regular file
    2: "blockdev",
    3: "pipe",
    4: "socket",
    5: "tty",  # a terminal (character device under /dev/pts, /dev/tty*, /dev/console)
    6: "chardev",  # another character device
    7: "dir",
    8: "other",  # anon inodes (eventfd, epoll, timerfd...), memfd and the like
}
FD_KIND_CODE: dict[str, int] = {v: k for k, v in FD_KINDS.items()}
STORAGE_FD_KINDS: frozenset[int] = frozenset({0, 1, 2})

# Loss kinds (LOSS blocks): what was lost and whether it means I/Os of the recording
# window are missing from the capture.
LOSS_KINDS: dict[str, str] = {
    "perf_buffer": "kernel perf buffer overflow: events dropped before user space read them",
    "ringbuf": "BPF ring buffer full: events dropped before user space read them",
    "start_map_full": "no room to remember I/O starts (map full, task storage refused): I/Os not tracked",
    "pid_map_full": "traced-pid map full: a child process was not followed",
    "unmatched": "completion without a recorded start (mostly I/Os in flight when recording began)",
    "recursion": "a BPF program did not run because another BPF program was running on that CPU "
    "(the kernel's recursion_misses): its I/Os are missing or unmatched",
    "names": "fd name records (opens, closes) dropped: some paths may be wrong or empty, no I/O is missing",
}
NOT_A_LOSS: frozenset[str] = frozenset({"unmatched", "names"})


def is_real_loss(kind: str) -> bool:
    """Does a loss of this kind mean I/Os of the recording window are missing?"""
    return kind not in NOT_A_LOSS


LAYER_CODE: dict[str, int] = {v: k for k, v in LAYERS.items()}
OP_CODE: dict[str, int] = {v: k for k, v in OPS.items()}

# The numpy views of the kernel's structs (bpf/aether_event.h), built on first use (module
# ``__getattr__``) so that reading a capture's summary needs no numpy. Field order and sizes
# must match the C header byte for byte; see tests/test_schema.py.
KERNEL_EVENT_DTYPE: np.dtype[Any]  # struct aether_event: one I/O
KERNEL_NAME_DTYPE: np.dtype[Any]  # struct aether_name: how fds got their files
NAME_PATH_LEN = 256
_KERNEL_DTYPES: dict[str, tuple[list[tuple[str, str]], int]] = {
    "KERNEL_EVENT_DTYPE": (
        [
            ("ts", "<u8"),
            ("lat", "<u8"),
            ("offset", "<i8"),
            ("bytes", "<u8"),
            ("result", "<i8"),
            ("queue", "<u8"),
            ("cgroup", "<u8"),
            ("link", "<u8"),
            ("pid", "<u4"),
            ("tid", "<u4"),
            ("dev", "<u4"),
            ("fd", "<i4"),
            ("flags", "<u4"),
            ("pages_missed", "<u4"),
            ("pad", "<u4"),
            ("cpu", "<u2"),
            ("layer", "<u1"),
            ("op", "<u1"),
            ("comm", "S16"),
        ],
        112,
    ),
    "KERNEL_NAME_DTYPE": (
        [
            ("ts", "<u8"),
            ("pid", "<u4"),
            ("tid", "<u4"),
            ("fd", "<i4"),
            ("arg", "<i4"),
            ("flags", "<u4"),
            ("kind", "<u1"),
            ("pad", "V3"),
            ("path", f"S{NAME_PATH_LEN}"),
        ],
        288,
    ),
}


def __getattr__(name: str) -> Any:
    """KERNEL_EVENT_DTYPE and KERNEL_NAME_DTYPE, built (and their sizes checked) once."""
    spec = _KERNEL_DTYPES.get(name)
    if spec is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import numpy as np

    dtype = np.dtype(spec[0])
    assert dtype.itemsize == spec[1], f"{name} is {dtype.itemsize} bytes, the kernel's {spec[1]}"
    globals()[name] = dtype
    return dtype


#: kinds of name records (AETHER_NAME_*)
NAME_KINDS: dict[int, str] = {
    1: "open",
    2: "close",
    3: "dup",
    4: "chdir",
    5: "fchdir",
    6: "pipe",
    7: "socket",
    8: "fork",
    9: "close_range",
    10: "exit",
}


def layer_name(code: int) -> str:
    return LAYERS.get(int(code), f"layer{int(code)}")


def op_name(code: int) -> str:
    return OPS.get(int(code), f"op{int(code)}")


def fdkind_name(code: int) -> str:
    return FD_KINDS.get(int(code), f"fdkind{int(code)}")


#: the columns whose numbers have names, and their tables
ENUMS: dict[str, dict[int, str]] = {"layer": LAYERS, "op": OPS, "fdkind": FD_KINDS}


def enum_name(column: str, code: int) -> str:
    """``layer`` 2 -> "block"; an unknown code -> "layer9" (readers show, never refuse)."""
    return ENUMS[column].get(int(code), f"{column}{int(code)}")


def dev_name(dev: int) -> str:
    """``major:minor`` from the kernel's internal dev_t encoding."""
    dev = int(dev)
    return f"{dev >> 20}:{dev & 0xFFFFF}"


def schema_for_header(minor: int | None = None) -> list[dict[str, str]]:
    """The column schema as stored in a capture header of format version 1.minor
    (default: every column)."""
    return [
        {"name": c.name, "type": c.type, "unit": c.unit, "doc": c.doc}
        for c in COLUMNS
        if minor is None or c.since <= minor
    ]
