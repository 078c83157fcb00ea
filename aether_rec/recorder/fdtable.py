"""Which file each fd of each process was, and when: replayed from the kernel's name records.

``bpf/names.c`` emits a record (``schema.KERNEL_NAME_DTYPE``) whenever a followed task
opens, copies or closes an fd, makes a pipe or socket, changes its working directory, or
forks. :class:`FdTable` replays them in time order into a short history per (pid, fd), so
an I/O is named after the file its fd had *at the time of the I/O*, even when the file was
opened and closed between two reads of the ring (``tar``, a ``cat`` loop, a database's
temporary files) or the number was reused. Relative paths are made absolute against the
working directory (or the ``dirfd``) of the moment. Only fds that were already open when
recording began, and whose open we therefore never saw, are read from ``/proc`` (once).

The fd's kind (regular file, block device, pipe, socket, tty...) is decided when its
record is replayed: pipes and sockets by the call that made them, opened paths by
``stat``, pre-existing fds by what ``/proc`` says (``pipe:[...]``, ``socket:[...]``).

Everything is kept per process, and a process is forgotten ``HORIZON_NS`` after the record
of its main thread's exit (events reach the recorder well within that), so a long recording
on a host that runs millions of short processes keeps only the living ones; a forked child
with the pid of a process not yet forgotten cancels that forgetting. :meth:`feed` returns
the pids forgotten, for the caches kept beside the table (procinfo.Names).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

import numpy as np

from aether_rec.schema import FD_KIND_CODE, NAME_KINDS

F_SYNC = 1 << 0
F_DIRECT = 1 << 5
_O_DIRECT = getattr(os, "O_DIRECT", 0o40000)
_O_SYNCISH = getattr(os, "O_DSYNC", 0o10000) | getattr(os, "O_SYNC", 0o4010000)
_O_TMPFILE = getattr(os, "O_TMPFILE", 0o20200000)
AT_FDCWD = -100
# History kept per (pid, fd): everything of the last HORIZON_NS (events reach the
# recorder within about a second of their start, so no event needs an older entry), and
# at least the latest entry before that, as what the fd was before the kept ones.
HORIZON_NS = 10_000_000_000
PRUNE_AT = 64  # entries before a history is pruned
MAX_SNAPSHOT = 4096  # fds read from /proc for a process first seen

_KIND = {v: k for k, v in NAME_KINDS.items()}
K_FILE, K_BLOCKDEV, K_PIPE = FD_KIND_CODE["file"], FD_KIND_CODE["blockdev"], FD_KIND_CODE["pipe"]
K_SOCKET, K_TTY, K_CHARDEV = FD_KIND_CODE["socket"], FD_KIND_CODE["tty"], FD_KIND_CODE["chardev"]
K_DIR, K_OTHER, K_UNKNOWN = FD_KIND_CODE["dir"], FD_KIND_CODE["other"], FD_KIND_CODE["unknown"]
_TTY_PREFIXES = ("/dev/pts/", "/dev/tty", "/dev/console", "/dev/ptmx")


@dataclass(frozen=True)
class FdName:
    path: str
    kind: int  # schema.FD_KINDS code
    flags: int  # aether flag bits implied by the open flags (direct, sync)


CLOSED = FdName("", K_UNKNOWN, 0)


def open_flags(oflags: int) -> int:
    """Aether flag bits (direct, sync) of open(2) flags."""
    flags = 0
    if oflags & _O_DIRECT:
        flags |= F_DIRECT
    if oflags & _O_SYNCISH:
        flags |= F_SYNC
    return flags


def kind_of(path: str) -> int:
    """The fd kind of a path as /proc or an open call names it."""
    if path.startswith("pipe:"):
        return K_PIPE
    if path.startswith("socket:"):
        return K_SOCKET
    if path.startswith("anon_inode:") or path.startswith("/memfd:"):
        return K_OTHER
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return K_FILE  # opened by path and gone since (a deleted temporary file)
    if stat.S_ISREG(mode):
        return K_FILE
    if stat.S_ISBLK(mode):
        return K_BLOCKDEV
    if stat.S_ISCHR(mode):
        return K_TTY if path.startswith(_TTY_PREFIXES) else K_CHARDEV
    if stat.S_ISFIFO(mode):
        return K_PIPE
    if stat.S_ISSOCK(mode):
        return K_SOCKET
    if stat.S_ISDIR(mode):
        return K_DIR
    return K_OTHER


class FdTable:
    """fd histories per (pid, fd) and working directories per pid, fed with name records."""

    def __init__(self, proc: str = "/proc") -> None:
        self.proc = proc
        self._hist: dict[int, dict[int, tuple[list[int], list[FdName]]]] = {}  # pid -> fd -> history
        self._initial: dict[int, dict[int, FdName]] = {}  # pid -> fd -> name before any record
        self._cwd: dict[int, str] = {}
        self._seen: set[int] = set()  # pids whose /proc fds were looked at
        self._exited: dict[int, int] = {}  # pid -> when its main thread exited
        self._newest = 0  # the latest record time replayed
        self.records = 0
        self.forgotten = 0  # processes forgotten after their exit

    def __len__(self) -> int:
        """Processes the table holds anything of."""
        return len(set(self._hist) | set(self._initial) | set(self._cwd) | self._seen)

    # -- replaying the kernel's records -------------------------------------------------

    def feed(self, recs: np.ndarray) -> list[int]:
        """Replay a batch of name records (any order: sorted by time here); return the pids
        of processes forgotten (exited more than HORIZON_NS before the newest record)."""
        if len(recs) == 0:
            return []
        order = np.argsort(recs["ts"], kind="stable")
        for pid in np.unique(recs["pid"]).tolist():
            self.snapshot(pid)
        for r in recs[order].tolist():  # one tuple per record: fds are made far less often than used
            ts, pid, _tid, fd, arg, oflags, kind, _pad, raw = r
            self.records += 1
            if kind == _KIND["open"]:
                path = self._absolute(pid, arg, _decode(raw), ts)
                k = K_FILE if oflags & _O_TMPFILE == _O_TMPFILE else kind_of(path)
                self._set(pid, fd, ts, FdName(path, k, open_flags(oflags)))
            elif kind == _KIND["close"]:
                self._set(pid, fd, ts, CLOSED)
            elif kind == _KIND["close_range"]:
                for n in [n for n in self._hist.get(pid, ()) if fd <= n <= (arg & 0xFFFFFFFF)]:
                    self._set(pid, n, ts, CLOSED)
            elif kind == _KIND["dup"]:
                self._set(pid, fd, ts, self.at(pid, arg, ts))
            elif kind == _KIND["pipe"]:
                for end in (fd, arg):
                    self._set(pid, end, ts, FdName("pipe", K_PIPE, 0))
            elif kind == _KIND["socket"]:
                for end in (fd, arg) if arg >= 0 else (fd,):
                    self._set(pid, end, ts, FdName("socket", K_SOCKET, 0))
            elif kind == _KIND["chdir"]:
                self._cwd[pid] = self._absolute(pid, AT_FDCWD, _decode(raw), ts)
            elif kind == _KIND["fchdir"]:
                got = self.at(pid, arg, ts)
                if got.path.startswith("/"):
                    self._cwd[pid] = got.path
            elif kind == _KIND["fork"]:
                self._fork(pid, arg, ts)
            elif kind == _KIND["exit"]:
                self._exited[pid] = ts
            self._newest = max(self._newest, ts)
        return self._forget_exited()

    def _forget_exited(self) -> list[int]:
        gone = [p for p, t in self._exited.items() if t < self._newest - HORIZON_NS]
        for pid in gone:
            del self._exited[pid]
            self._hist.pop(pid, None)
            self._initial.pop(pid, None)
            self._cwd.pop(pid, None)
            self._seen.discard(pid)
        self.forgotten += len(gone)
        return gone

    def snapshot(self, pid: int) -> None:
        """The first time a process is seen, what /proc says of the fds it already had
        (while it still runs: a short-lived process is gone by the time its I/O is
        named). Fds the records will tell about are looked up from them instead."""
        if pid in self._seen:
            return
        self._seen.add(pid)
        try:
            fds = os.listdir(f"{self.proc}/{pid}/fd")
        except OSError:
            return
        initial = self._initial.setdefault(pid, {})
        hists = self._hist.get(pid, {})
        for name in fds[:MAX_SNAPSHOT]:
            if name.isdigit():
                n = int(name)
                if n not in initial and n not in hists:
                    initial[n] = read_proc_fd(self.proc, pid, n)

    def _fork(self, parent: int, child: int, ts: int) -> None:
        if child == parent:
            return
        self._exited.pop(child, None)  # a new process with a pid not yet forgotten
        self._seen.add(child)  # its fds are its parent's, told below
        if parent in self._cwd or self._read_cwd(parent):
            self._cwd[child] = self._cwd[parent]
        initial = self._initial.setdefault(child, {})
        for fd, name in self._initial.get(parent, {}).items():
            initial.setdefault(fd, name)
        for fd in list(self._hist.get(parent, ())):
            got = self.at(parent, fd, ts)
            if got is not CLOSED:
                self._set(child, fd, ts, got)

    def _set(self, pid: int, fd: int, ts: int, name: FdName) -> None:
        hists = self._hist.setdefault(pid, {})
        hist = hists.get(fd)
        if hist is None:
            hist = ([], [])
            hists[fd] = hist
        tss, names = hist
        tss.append(ts)
        names.append(name)
        if len(tss) > PRUNE_AT and tss[0] < ts - HORIZON_NS:
            cut = _bisect_right(tss, ts - HORIZON_NS) - 1  # the last entry before the horizon ...
            if cut > 0:
                # ... is what the fd was before the kept ones
                self._initial.setdefault(pid, {})[fd] = names[cut]
                del tss[: cut + 1], names[: cut + 1]

    def _absolute(self, pid: int, dirfd: int, path: str, ts: int) -> str:
        if path.startswith("/"):
            return os.path.normpath(path)
        if dirfd == AT_FDCWD:
            base = self._cwd.get(pid) or self._read_cwd(pid)
        else:
            base = self.at(pid, dirfd, ts).path
        if not base.startswith("/"):
            return path  # unknown base: keep the path as the program gave it
        return os.path.normpath(os.path.join(base, path))

    def _read_cwd(self, pid: int) -> str:
        try:
            cwd = os.readlink(f"{self.proc}/{pid}/cwd")
        except OSError:
            return ""
        self._cwd[pid] = cwd
        return cwd

    # -- looking up ---------------------------------------------------------------------

    def at(self, pid: int, fd: int, ts: int) -> FdName:
        """What fd of pid was at time ts."""
        hist = self._hist.get(pid, {}).get(fd)
        if hist is not None:
            i = _bisect_right(hist[0], ts) - 1
            if i >= 0:
                return hist[1][i]
        return self._before(pid, fd)

    def _before(self, pid: int, fd: int) -> FdName:
        """What the fd was before any record we saw: read from /proc once (fds opened
        before recording began)."""
        initial = self._initial.setdefault(pid, {})
        got = initial.get(fd)
        if got is None:
            got = read_proc_fd(self.proc, pid, fd)
            initial[fd] = got
        return got

    def lookup(self, pid: int, fd: int, ts: np.ndarray) -> tuple[list[FdName], np.ndarray]:
        """The names an fd had at each of the times ts: (distinct names, index per time)."""
        hist = self._hist.get(pid, {}).get(fd)
        if hist is None or len(ts) == 0:
            return [self._before(pid, fd)], np.zeros(len(ts), dtype=np.int64)
        tss, names = hist
        idx = np.searchsorted(np.asarray(tss, dtype=np.uint64), ts, side="right") - 1
        if int(idx.min()) >= 0:
            return list(names), idx
        return list(names) + [self._before(pid, fd)], np.where(idx < 0, len(names), idx)


def _bisect_right(a: list[int], x: int) -> int:
    lo, hi = 0, len(a)
    while lo < hi:
        mid = (lo + hi) // 2
        if x < a[mid]:
            hi = mid
        else:
            lo = mid + 1
    return lo


def _decode(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def read_proc_fd(proc: str, pid: int, fd: int) -> FdName:
    """An fd as /proc/PID/fd and fdinfo show it now (CLOSED when it is not open)."""
    try:
        path = os.readlink(f"{proc}/{pid}/fd/{fd}")
    except OSError:
        return CLOSED
    flags = 0
    try:
        with open(f"{proc}/{pid}/fdinfo/{fd}", "rb") as f:
            for line in f:
                if line.startswith(b"flags:"):
                    flags = open_flags(int(line.split()[1], 8))
                    break
    except (OSError, ValueError, IndexError):
        pass
    shown = path[: -len(" (deleted)")] if path.endswith(" (deleted)") else path
    return FdName(path, kind_of(shown) if not path.endswith(" (deleted)") else K_FILE, flags)
