"""The few bpf(2) calls the recorder makes without bcc: create a map (feature probe) and
look an element up (per-CPU counters), through ctypes on the raw system call."""

from __future__ import annotations

import ctypes
import os
import platform

from aether_rec.errors import RecorderError

NR_BPF = {"x86_64": 321, "aarch64": 280, "ppc64le": 361, "s390x": 351, "riscv64": 280}
BPF_MAP_CREATE = 0
BPF_MAP_LOOKUP_ELEM = 1
BPF_MAP_TYPE_RINGBUF = 27

_libc = ctypes.CDLL(None, use_errno=True)


def _bpf(cmd: int, attr: ctypes.Array[ctypes.c_uint32] | ctypes.Structure) -> int:
    nr = NR_BPF.get(platform.machine())
    if nr is None:
        raise RecorderError(f"bpf(2) number unknown for {platform.machine()}")
    return int(_libc.syscall(nr, cmd, ctypes.byref(attr), ctypes.sizeof(attr)))


def can_create_map(map_type: int, key_size: int, value_size: int, max_entries: int) -> bool:
    """Whether the kernel creates such a map (created and closed again)."""
    attr = (ctypes.c_uint32 * 32)()  # union bpf_attr, map_create: type, key, value, max
    attr[0], attr[1], attr[2], attr[3] = map_type, key_size, value_size, max_entries
    try:
        fd = _bpf(BPF_MAP_CREATE, attr)
    except RecorderError:
        return False
    if fd < 0:
        return False
    os.close(fd)
    return True


class _ElemAttr(ctypes.Structure):
    _fields_ = [
        ("map_fd", ctypes.c_uint32),
        ("pad", ctypes.c_uint32),
        ("key", ctypes.c_uint64),
        ("value", ctypes.c_uint64),
        ("flags", ctypes.c_uint64),
    ]


def possible_cpus() -> int:
    """How many CPUs the kernel may ever bring up: per-CPU map values have one slot each."""
    try:
        text = open("/sys/devices/system/cpu/possible").read().strip()
    except OSError:
        return os.cpu_count() or 1
    n = 0
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        n += (int(hi) if hi else int(lo)) - int(lo) + 1
    return n


def lookup_percpu_u64(map_fd: int, key: int, ncpu: int) -> list[int]:
    """The per-CPU u64 values of element ``key`` (u32) of a per-CPU array map."""
    k = ctypes.c_uint32(key)
    values = (ctypes.c_uint64 * ncpu)()
    attr = _ElemAttr(map_fd, 0, ctypes.addressof(k), ctypes.addressof(values), 0)
    if _bpf(BPF_MAP_LOOKUP_ELEM, attr) < 0:
        err = ctypes.get_errno()
        raise RecorderError(f"bpf map lookup failed ({os.strerror(err)})")
    return list(values)


BPF_MAP_UPDATE_ELEM = 2


def update_elem_u32(map_fd: int, key: int, value: int) -> None:
    """Set element ``key`` (u32) of a map to ``value`` (u32), e.g. a CPU's perf event
    descriptor in a BPF_PERF_EVENT_ARRAY."""
    k = ctypes.c_uint32(key)
    v = ctypes.c_uint32(value)
    attr = _ElemAttr(map_fd, 0, ctypes.addressof(k), ctypes.addressof(v), 0)
    if _bpf(BPF_MAP_UPDATE_ELEM, attr) < 0:
        err = ctypes.get_errno()
        raise RecorderError(f"bpf map update failed ({os.strerror(err)})")


BPF_OBJ_GET_INFO_BY_FD = 15
# struct bpf_prog_info (include/uapi/linux/bpf.h, a stable ABI): the fields we read
PROG_INFO_SIZE = 224
PROG_INFO_NAME = 64  # char name[16]
PROG_INFO_RUN_CNT = 200  # run_cnt: counted only with kernel.bpf_stats_enabled
PROG_INFO_RECURSION_MISSES = 208  # 5.12+; zero on older kernels


class _InfoAttr(ctypes.Structure):
    _fields_ = [("bpf_fd", ctypes.c_uint32), ("info_len", ctypes.c_uint32), ("info", ctypes.c_uint64)]


def prog_recursion_misses(prog_fd: int) -> tuple[str, int]:
    """(name, recursion_misses) of a loaded BPF program: how often the kernel did not run
    it because a BPF program was already running on that CPU (the event is lost)."""
    buf = ctypes.create_string_buffer(PROG_INFO_SIZE)
    attr = _InfoAttr(prog_fd, PROG_INFO_SIZE, ctypes.addressof(buf))
    if _bpf(BPF_OBJ_GET_INFO_BY_FD, attr) < 0:
        err = ctypes.get_errno()
        raise RecorderError(f"cannot read BPF program info ({os.strerror(err)})")
    raw = buf.raw
    name = raw[PROG_INFO_NAME : PROG_INFO_NAME + 16].split(b"\0", 1)[0].decode("ascii", "replace")
    if attr.info_len < PROG_INFO_RECURSION_MISSES + 8:  # an older kernel: no such count
        return name, 0
    return name, int.from_bytes(raw[PROG_INFO_RECURSION_MISSES : PROG_INFO_RECURSION_MISSES + 8], "little")
