"""Best-effort names from /proc and /sys, so a capture reads well on another machine:
processes (comm, cmdline), fd -> path (and O_DIRECT/O_SYNC from fdinfo), device names.

fd entries are re-resolved for every batch they appear in (``fd_ttl`` 0; a descriptor can
be closed and its number reused). Events of a batch are named after what the descriptor
points to when the batch is read, so a number reused within one batch (~0.1-0.25 s) is
attributed to its latest file; a process that already exited keeps what was last known.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np

from aether_rec.schema import LAYER_CODE

F_SYNC = 1 << 0
F_DIRECT = 1 << 5
_O_DIRECT = getattr(os, "O_DIRECT", 0)
_O_SYNCISH = getattr(os, "O_DSYNC", 0) | getattr(os, "O_SYNC", 0)

SYSCALL = LAYER_CODE["syscall"]
BLOCK = LAYER_CODE["block"]


@dataclass
class FdInfo:
    path: str
    flags: int  # aether flag bits implied by the open flags
    checked: float  # time.monotonic() of the last resolution


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


def read_fd(pid: int, fd: int) -> tuple[str, int] | None:
    try:
        path = os.readlink(f"/proc/{pid}/fd/{fd}")
    except OSError:
        return None
    flags = 0
    try:
        with open(f"/proc/{pid}/fdinfo/{fd}", "rb") as f:
            for line in f:
                if line.startswith(b"flags:"):
                    oflags = int(line.split()[1], 8)
                    if oflags & _O_DIRECT:
                        flags |= F_DIRECT
                    if oflags & _O_SYNCISH:
                        flags |= F_SYNC
                    break
    except (OSError, ValueError, IndexError):
        pass
    return path, flags


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
    """Caches and new-row queues for the procs, fds and devices metadata tables."""

    def __init__(self, fd_ttl: float = 0.0) -> None:
        self.fd_ttl = fd_ttl
        self.procs: dict[int, dict[str, object]] = {}
        self.fds: dict[tuple[int, int], FdInfo] = {}
        self.devices: dict[int, str] = {}
        self.new_procs: list[dict[str, object]] = []
        self.new_fds: list[dict[str, object]] = []
        self.new_devices: list[dict[str, object]] = []

    def note_pids(self, pids: np.ndarray) -> None:
        for pid in np.unique(pids).tolist():
            if pid and pid not in self.procs:
                info = read_proc(pid) or {"pid": pid, "ppid": 0, "comm": "", "cmdline": ""}
                self.procs[pid] = info
                self.new_procs.append(info)

    def fd(self, pid: int, fd: int, now: float) -> FdInfo:
        key = (pid, fd)
        cur = self.fds.get(key)
        if cur is not None and cur.path and now - cur.checked < self.fd_ttl:
            return cur  # unresolved ones are retried every batch
        got = read_fd(pid, fd) if fd >= 0 else None
        if got is None:
            if cur is None:
                cur = FdInfo("", 0, now)
                self.fds[key] = cur
            else:
                cur.checked = now
            return cur
        path, flags = got
        if cur is None or cur.path != path or cur.flags != flags:
            self.new_fds.append({"pid": pid, "fd": fd, "path": path, "flags": flags})
        cur = FdInfo(path, flags, now)
        self.fds[key] = cur
        return cur

    def device(self, dev: int) -> str:
        name = self.devices.get(dev)
        if name is None:
            name = device_name(dev)
            self.devices[dev] = name
            self.new_devices.append({"dev": dev, "name": name})
        return name

    def annotate(self, ev: np.ndarray) -> tuple[np.ndarray, list[str], np.ndarray]:
        """(path codes, path dictionary, flags column) for a batch: fd paths for syscall
        events, device names for block events, dictionary-coded as the capture stores
        them (one lookup per distinct pid/fd or device, none per event); O_DIRECT/O_SYNC
        of the fd added to the flags."""
        n = len(ev)
        codes = np.zeros(n, dtype=np.uint32)
        words = [""]
        flags = ev["flags"].copy()
        if n == 0:
            return codes, words, flags
        self.note_pids(ev["pid"])
        now = time.monotonic()
        sc = np.flatnonzero((ev["layer"] == SYSCALL) & (ev["fd"] >= 0))
        if len(sc):
            keys = (ev["pid"][sc].astype(np.uint64) << np.uint64(32)) | ev["fd"][sc].astype(np.uint32).astype(
                np.uint64
            )
            uniq, inv = np.unique(keys, return_inverse=True)
            uflags = np.zeros(len(uniq), dtype=np.uint32)
            base = len(words)
            for i, k in enumerate(uniq.tolist()):
                info = self.fd(k >> 32, int(np.int32(np.uint32(k & 0xFFFFFFFF))), now)
                words.append(info.path)
                uflags[i] = info.flags
            codes[sc] = base + inv.reshape(-1).astype(np.uint32)
            flags[sc] |= uflags[inv.reshape(-1)]
        blk = np.flatnonzero(ev["layer"] == BLOCK)
        if len(blk):
            uniq, inv = np.unique(ev["dev"][blk], return_inverse=True)
            base = len(words)
            words.extend(self.device(int(d)) for d in uniq.tolist())
            codes[blk] = base + inv.reshape(-1).astype(np.uint32)
        return codes, words, flags

    def take_new(self) -> dict[str, list[dict[str, object]]]:
        out = {"procs": self.new_procs, "fds": self.new_fds, "devices": self.new_devices}
        self.new_procs, self.new_fds, self.new_devices = [], [], []
        return {k: v for k, v in out.items() if v}
