"""Names, so a capture reads well on another machine: processes (comm, cmdline, from
/proc), the file of each event's fd (from the kernel's name records, see fdtable.py) and
device names (from /sys).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np

from aether_rec.format.chunk import distinct
from aether_rec.recorder.fdtable import FdName, FdTable
from aether_rec.schema import LAYER_CODE

SYSCALL = LAYER_CODE["syscall"]
BLOCK = LAYER_CODE["block"]


def read_proc(pid: int) -> dict[str, object] | None:
    try:
        with open(f"/proc/{pid}/comm", "rb") as f:
            comm = f.read().rstrip(b"\n").decode("utf-8", "replace")
    except OSError:
        return None
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read().rstrip(b"\0").replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        cmdline = ""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        ppid = 0
    return {"pid": pid, "ppid": ppid, "comm": comm, "cmdline": cmdline[:4096]}


def device_name(dev: int) -> str:
    """Name of a block device from the kernel's dev_t encoding (major << 20 | minor)."""
    major, minor = dev >> 20, dev & 0xFFFFF
    try:
        with open(f"/sys/dev/block/{major}:{minor}/uevent") as f:
            for line in f:
                if line.startswith("DEVNAME="):
                    return line.strip().split("=", 1)[1]
    except OSError:
        pass
    return f"{major}:{minor}"


def descendants(pids: list[int]) -> list[int]:
    """``pids`` and every process below them now (from /proc/*/stat)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    out: list[int] = []
    todo = list(pids)
    seen: set[int] = set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        out.append(p)
        todo.extend(children.get(p, ()))
    return out


class Names:
    """Caches and new-row queues for the procs, fds and devices metadata tables; which file
    each fd was comes from the kernel's name records (:class:`FdTable`)."""

    def __init__(self) -> None:
        self.fdtable = FdTable()
        self.procs: dict[int, dict[str, object]] = {}
        self.fds: dict[int, dict[int, FdName]] = {}  # the last name written, pid -> fd -> name
        self.devices: dict[int, str] = {}
        self.new_procs: list[dict[str, object]] = []
        self.new_fds: list[dict[str, object]] = []
        self.new_devices: list[dict[str, object]] = []

    def feed(self, records: np.ndarray) -> None:
        """The kernel's name records (schema.KERNEL_NAME_DTYPE) of a batch. Processes the
        fd table forgets (long exited) are forgotten here too: a later process with the
        same pid is read from /proc afresh and gets rows of its own."""
        for pid in self.fdtable.feed(records):
            self.procs.pop(pid, None)
            self.fds.pop(pid, None)

    def note_pids(self, pids: np.ndarray) -> None:
        for pid in distinct(pids).tolist():
            if pid and pid not in self.procs:
                info = read_proc(pid) or {"pid": pid, "ppid": 0, "comm": "", "cmdline": ""}
                self.procs[pid] = info
                self.new_procs.append(info)

    def device(self, dev: int) -> str:
        name = self.devices.get(dev)
        if name is None:
            name = device_name(dev)
            self.devices[dev] = name
            self.new_devices.append({"dev": dev, "name": name})
        return name

    def annotate(self, ev: Mapping[str, np.ndarray]) -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray]:
        """(path codes, path dictionary, flags column, fdkind column) for a batch, the
        paths dictionary-coded as the capture stores them. Events with an fd (syscall,
        io_uring, and block requests linked to one of those) are named after the file the
        fd had at the event's start; other block events after their device. One lookup per
        distinct (pid, fd), none per event; O_DIRECT/O_SYNC of the fd are added to flags.
        ``ev``: the batch's columns (or a structured array of them)."""
        n = len(ev["ts"])
        codes = np.zeros(n, dtype=np.uint32)
        kinds = np.zeros(n, dtype=np.uint8)
        words = [""]
        flags = ev["flags"].copy()
        if n == 0:
            return codes, words, flags, kinds
        self.note_pids(ev["pid"])
        has_fd = np.flatnonzero(ev["fd"] >= 0)
        if len(has_fd):
            keys = (ev["pid"][has_fd].astype(np.uint64) << np.uint64(32)) | ev["fd"][has_fd].astype(
                np.uint32
            ).astype(np.uint64)
            index: dict[str, int] = {}
            for grp in _groups(keys):
                k = int(keys[grp[0]])
                pid, fd = k >> 32, int(np.int32(np.uint32(k & 0xFFFFFFFF)))
                rows = has_fd[grp]
                names, idx = self.fdtable.lookup(pid, fd, ev["ts"][rows])
                code_of = np.empty(len(names), dtype=np.uint32)
                for j, nm in enumerate(names):
                    c = index.get(nm.path)
                    if c is None:
                        c = len(words)
                        words.append(nm.path)
                        index[nm.path] = c
                    code_of[j] = c
                    last = self.fds.get(pid, {}).get(fd)
                    if nm.path and (last is None or last.path != nm.path):
                        self.fds.setdefault(pid, {})[fd] = nm
                        self.new_fds.append({"pid": pid, "fd": fd, "path": nm.path, "flags": nm.flags})
                codes[rows] = code_of[idx]
                kinds[rows] = np.array([nm.kind for nm in names], dtype=np.uint8)[idx]
                flags[rows] |= np.array([nm.flags for nm in names], dtype=np.uint32)[idx]
        blk = ev["layer"] == BLOCK
        if blk.any():
            for d in distinct(ev["dev"][blk]).tolist():
                self.device(int(d))  # every device goes into the devices table
            unlinked = np.flatnonzero(blk & (ev["fd"] < 0))
            if len(unlinked):
                uniq, inv = np.unique(ev["dev"][unlinked], return_inverse=True)
                base = len(words)
                words.extend(self.device(int(d)) for d in uniq.tolist())
                codes[unlinked] = base + inv.reshape(-1).astype(np.uint32)
        return codes, words, flags, kinds

    def take_new(self) -> dict[str, list[dict[str, object]]]:
        out = {"procs": self.new_procs, "fds": self.new_fds, "devices": self.new_devices}
        self.new_procs, self.new_fds, self.new_devices = [], [], []
        return {k: v for k, v in out.items() if v}


def _groups(keys: np.ndarray, few: int = 16) -> list[np.ndarray]:
    """The positions of each distinct key, in order of position within a group. A batch
    usually holds few distinct (pid, fd) keys: found by a hash pass and one comparison
    per key and event; with more, by a stable sort."""
    uniq = distinct(keys, few)
    if len(uniq) <= few:
        return [np.flatnonzero(keys == k) for k in uniq]
    order = np.argsort(keys, kind="stable")
    return np.split(order, np.flatnonzero(np.diff(keys[order])) + 1)
