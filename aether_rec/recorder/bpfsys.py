"""The bpf(2) and perf_event_open(2) calls the recorder makes without bcc, through ctypes on
the raw system calls: feature probes, per-CPU counters, program information, and loading
and attaching a cached program (progcache)."""

from __future__ import annotations

import ctypes
import fcntl
import os
import platform
import struct

from aether_rec.errors import RecorderError

NR_BPF = {"x86_64": 321, "aarch64": 280, "ppc64le": 361, "s390x": 351, "riscv64": 280}
BPF_MAP_CREATE = 0
BPF_MAP_LOOKUP_ELEM = 1
BPF_MAP_TYPE_RINGBUF = 27
BPF_MAP_TYPE_TASK_STORAGE = 29
BPF_F_NO_PREALLOC = 1
BPF_BTF_LOAD = 18
BPF_PROG_TYPE_TRACEPOINT = 5
BPF_PROG_TYPE_RAW_TRACEPOINT = 17

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


# -- loading and attaching a program without bcc (progcache) ------------------------------
BPF_PROG_LOAD = 5
BPF_RAW_TRACEPOINT_OPEN = 17
OBJ_NAME_LEN = 16
NR_PERF_EVENT_OPEN = {"x86_64": 298, "aarch64": 241, "ppc64le": 319, "s390x": 331, "riscv64": 241}
PERF_TYPE_TRACEPOINT = 2
PERF_SAMPLE_RAW = 1 << 10
PERF_FLAG_FD_CLOEXEC = 1 << 3
PERF_EVENT_IOC_ENABLE = 0x2400
PERF_EVENT_IOC_SET_BPF = 0x40042408
# bcc shows a program under its hook, without the autoload prefix (its libbpf.c does so)
_NAME_PREFIXES = ("kprobe__", "kretprobe__", "tracepoint__", "raw_tracepoint__")
# programs attached before the others, by name: the task hooks (tasks.c), so that every
# child of a traced process forked once any event hook is attached is followed (--pid)
_ATTACH_FIRST = ("tracepoint__sched__",)


def attach_rank(fn_name: str) -> int:
    """Sort key of a program's attachment (stable sort): 0 for the task hooks, 1 else."""
    return 0 if fn_name.startswith(_ATTACH_FIRST) else 1


class BpfError(RecorderError):
    """A bpf(2) or perf_event_open(2) call of the cached-program path failed."""


def _attr(size: int) -> ctypes.Array[ctypes.c_uint8]:
    return (ctypes.c_uint8 * size)()


def _call(cmd: int, attr: ctypes.Array[ctypes.c_uint8], what: str) -> int:
    nr = NR_BPF.get(platform.machine())
    if nr is None:
        raise BpfError(f"bpf(2) number unknown for {platform.machine()}")
    fd = int(_libc.syscall(nr, cmd, ctypes.byref(attr), ctypes.sizeof(attr)))
    if fd < 0:
        raise BpfError(f"{what} failed ({os.strerror(ctypes.get_errno())})")
    return fd


def obj_name(name: str) -> bytes:
    for p in _NAME_PREFIXES:
        if name.startswith(p):
            name = name[len(p) :]
            break
    return name.encode()[: OBJ_NAME_LEN - 1]


def map_create(map_type: int, key_size: int, value_size: int, max_entries: int, flags: int, name: str) -> int:
    """A new map (union bpf_attr, BPF_MAP_CREATE: type, key, value, max, flags, inner map,
    NUMA node, name; BTF for the types that need it); its descriptor."""
    attr = _attr(128)
    struct.pack_into("<5I", attr, 0, map_type, key_size, value_size, max_entries, flags)
    struct.pack_into("16s", attr, 28, obj_name(name))
    if map_type != BPF_MAP_TYPE_TASK_STORAGE:
        return _call(BPF_MAP_CREATE, attr, f"creating map {name}")
    # task storage needs BTF of its key (an int) and value (any type of the value's size)
    btf = btf_load(value_size)
    try:
        struct.pack_into("<III", attr, 48, btf, BTF_INT_ID, BTF_VALUE_ID)  # btf_fd, key, value type ids
        return _call(BPF_MAP_CREATE, attr, f"creating map {name}")
    finally:
        os.close(btf)


# The BTF map_create gives a task-storage map: type 1 "int" (4 bytes, signed), type 2 an
# unnamed 1-byte int, type 3 an array of value_size of type 2 (include/uapi/linux/btf.h).
BTF_MAGIC, BTF_KIND_INT, BTF_KIND_ARRAY, BTF_INT_SIGNED = 0xEB9F, 1, 3, 1
BTF_INT_ID, BTF_VALUE_ID = 1, 3


def btf_load(value_size: int) -> int:
    """BPF_BTF_LOAD of the three types above; the BTF object's descriptor."""
    strings = b"\0int\0"
    types = struct.pack("<IIII", 1, BTF_KIND_INT << 24, 4, (BTF_INT_SIGNED << 24) | 32)
    types += struct.pack("<IIII", 0, BTF_KIND_INT << 24, 1, 8)
    types += struct.pack("<IIIIII", 0, BTF_KIND_ARRAY << 24, 0, 2, 1, value_size)
    header = struct.pack("<HBBIIIII", BTF_MAGIC, 1, 0, 24, 0, len(types), len(types), len(strings))
    blob = ctypes.create_string_buffer(header + types + strings, 24 + len(types) + len(strings))
    attr = _attr(32)  # btf, btf_log_buf, btf_size, btf_log_size, btf_log_level
    struct.pack_into("<QQI", attr, 0, ctypes.addressof(blob), 0, len(blob))
    return _call(BPF_BTF_LOAD, attr, "loading BTF")


def task_storage_probe(map_fd: int) -> bytes:
    """The instructions of has_task_storage's program: the current task's value in the
    task-storage map ``map_fd``, without creating it."""
    ld_map = struct.pack("<BBhi", 0x18, 0x10 | 1, 0, map_fd) + struct.pack("<BBhi", 0, 0, 0, 0)  # r1 = map
    return (
        struct.pack("<BBhi", 0x85, 0, 0, 158)  # call bpf_get_current_task_btf
        + struct.pack("<BBhi", 0xBF, 0x02, 0, 0)  # r2 = r0
        + ld_map
        + struct.pack("<BBhi", 0xB7, 0x03, 0, 0)  # r3 = 0
        + struct.pack("<BBhi", 0xB7, 0x04, 0, 0)  # r4 = 0
        + struct.pack("<BBhi", 0x85, 0, 0, 156)  # call bpf_task_storage_get
        + struct.pack("<BBhi", 0xB7, 0x00, 0, 0)  # r0 = 0
        + struct.pack("<BBhi", 0x95, 0, 0, 0)  # exit
    )


def has_task_storage() -> bool:
    """Whether tracepoint and raw tracepoint programs can keep per-thread values in task
    storage (bpf_get_current_task_btf and bpf_task_storage_get in tracing programs: Linux
    5.12+): a task-storage map is created and a program of each kind that reads it is
    loaded, then all are closed."""
    try:
        fd = map_create(BPF_MAP_TYPE_TASK_STORAGE, 4, 8, 0, BPF_F_NO_PREALLOC, "aether_probe")
    except (BpfError, RecorderError):
        return False
    try:
        insns = task_storage_probe(fd)
        for prog_type in (BPF_PROG_TYPE_TRACEPOINT, BPF_PROG_TYPE_RAW_TRACEPOINT):  # both kinds use it
            try:
                os.close(prog_load(prog_type, insns, "GPL", "aether_probe"))
            except (BpfError, RecorderError):
                return False
        return True
    finally:
        os.close(fd)


def prog_load(prog_type: int, insns: bytes, license: str, name: str) -> int:
    """Load a program (BPF_PROG_LOAD: type, count, instructions, licence, log, kernel
    version, flags, name); its descriptor. On failure the verifier's last line is said."""
    code = ctypes.create_string_buffer(insns, len(insns))
    lic = ctypes.create_string_buffer(license.encode())
    attr = _attr(128)
    struct.pack_into("<IIQQ", attr, 0, prog_type, len(insns) // 8, ctypes.addressof(code),
                     ctypes.addressof(lic))
    struct.pack_into("16s", attr, 48, obj_name(name))
    try:
        return _call(BPF_PROG_LOAD, attr, f"loading program {name}")
    except BpfError as e:  # again with the verifier's log, to say why
        log = ctypes.create_string_buffer(1 << 20)
        struct.pack_into("<IIQ", attr, 24, 1, len(log), ctypes.addressof(log))
        try:
            os.close(_call(BPF_PROG_LOAD, attr, f"loading program {name}"))
        except BpfError:
            pass
        lines = log.value.decode("utf-8", "replace").strip().splitlines()
        raise BpfError(f"{e}{': ' + lines[-1] if lines else ''}") from None


def raw_tracepoint_open(tracepoint: str, prog_fd: int) -> int:
    """Attach a raw-tracepoint program (BPF_RAW_TRACEPOINT_OPEN: name, program)."""
    name = ctypes.create_string_buffer(tracepoint.encode())
    attr = _attr(16)
    struct.pack_into("<QI", attr, 0, ctypes.addressof(name), prog_fd)
    return _call(BPF_RAW_TRACEPOINT_OPEN, attr, f"attaching to raw tracepoint {tracepoint}")


def attach_tracepoint(tp_id: int, prog_fd: int) -> int:
    """Attach a tracepoint program as bcc does: a perf event on the tracepoint (CPU 0, every
    task), the program set on it, enabled. The perf event's descriptor holds the attachment."""
    nr = NR_PERF_EVENT_OPEN.get(platform.machine())
    if nr is None:
        raise BpfError(f"perf_event_open(2) number unknown for {platform.machine()}")
    attr = _attr(112)  # struct perf_event_attr, PERF_ATTR_SIZE_VER5
    struct.pack_into("<IIQQQ", attr, 0, PERF_TYPE_TRACEPOINT, 112, tp_id, 1, PERF_SAMPLE_RAW)
    struct.pack_into("<I", attr, 48, 1)  # wakeup_events
    fd = int(_libc.syscall(nr, ctypes.byref(attr), -1, 0, -1, PERF_FLAG_FD_CLOEXEC))
    if fd < 0:
        raise BpfError(f"perf_event_open on tracepoint {tp_id} failed ({os.strerror(ctypes.get_errno())})")
    try:
        fcntl.ioctl(fd, PERF_EVENT_IOC_SET_BPF, prog_fd)
        fcntl.ioctl(fd, PERF_EVENT_IOC_ENABLE, 0)
    except OSError as e:
        os.close(fd)
        raise BpfError(f"attaching to tracepoint {tp_id} failed ({e.strerror})") from None
    return fd


def update_elem(map_fd: int, key: bytes, value: bytes) -> None:
    """Set an element of a map from raw key and value bytes."""
    k = ctypes.create_string_buffer(key, len(key))
    v = ctypes.create_string_buffer(value, len(value))
    attr = _ElemAttr(map_fd, 0, ctypes.addressof(k), ctypes.addressof(v), 0)
    if _bpf(BPF_MAP_UPDATE_ELEM, attr) < 0:
        raise BpfError(f"bpf map update failed ({os.strerror(ctypes.get_errno())})")
