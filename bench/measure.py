"""Measuring a command from outside: wall time, CPU and peak memory of its whole process tree.

Every bench script runs each tool (aether-rec and its peers alike) through ``run_tree`` or
``Tree``, so that helper processes (aether-rec's bcc/clang loader, ``perf script`` feeding a
percentile script) are counted, and nobody's figures are their own report:

- peak memory: the largest sum, over one sampling pass, of VmHWM of every live process of the
  tree (sampled every 10 ms from /proc; a process's VmHWM is its own high-water mark, so a
  short-lived helper is counted at its peak if it lived through one pass); and, when the run
  is root on a machine with cgroups, the memory peak of a cgroup made for that run alone
  (cgroup v2 ``memory.peak`` or v1 ``memory.max_usage_in_bytes``: includes page cache the
  tree wrote, so it is shown apart);
- CPU: user + system time of the tree from ``wait4`` (children the tree waited for included),
  or the sum over sampled processes when that is larger (descendants nobody waited for).

Never ``ru_maxrss`` for memory: Linux carries the parent's high-water mark across fork+exec.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CLK = os.sysconf("SC_CLK_TCK")


def today() -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        kids.setdefault(ppid, []).append(int(d))
    return kids


def tree_pids(root: int) -> list[int]:
    kids = _children()
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def _hwm_kb(pid: int) -> int:
    return _status_kb(pid)[0]


def _status_kb(pid: int) -> tuple[int, int]:
    """(VmHWM, VmRSS) of ``pid`` in KiB, from one read of its status (0, 0 once it is gone)."""
    hwm = rss = 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
            elif line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    except OSError:
        pass
    return hwm, rss


def _cpu_s(pid: int) -> float:
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / CLK
    except (OSError, IndexError, ValueError):
        return 0.0


class _Cgroup:
    """A memory cgroup for one run (root only); ``None``-like when the machine has none."""

    def __init__(self, tag: str) -> None:
        self.path: Path | None = None
        self.peak_file = ""
        for base, peak in ((Path("/sys/fs/cgroup"), "memory.peak"),
                           (Path("/sys/fs/cgroup/memory"), "memory.max_usage_in_bytes")):
            if base.joinpath("cgroup.procs").exists() and os.geteuid() == 0:
                p = base / f"aether-bench-{os.getpid()}-{tag}"
                try:
                    p.mkdir(exist_ok=True)
                except OSError:
                    continue
                if (p / peak).exists():
                    self.path, self.peak_file = p, peak
                    return
                with contextlib.suppress(OSError):
                    p.rmdir()

    def preexec(self) -> Any:
        path = self.path
        if path is None:
            return None

        def join() -> None:
            (path / "cgroup.procs").write_text(str(os.getpid()))

        return join

    def peak_mb(self) -> float | None:
        if self.path is None:
            return None
        try:
            return int((self.path / self.peak_file).read_text()) / 2**20
        except (OSError, ValueError):
            return None

    def remove(self) -> None:
        if self.path is not None:
            with contextlib.suppress(OSError):
                self.path.rmdir()


@dataclass
class Usage:
    seconds: float = 0.0
    cpu_s: float = 0.0
    peak_mb: float = 0.0  # largest sum of VmHWM over the live tree
    cgroup_peak_mb: float | None = None
    returncode: int = 0
    stdout: bytes = b""
    stderr: bytes = b""


class Tree:
    """Start ``argv`` and watch its process tree until ``wait()``."""

    def __init__(self, argv: Sequence[str], *, tag: str = "run", **popen: Any) -> None:
        import resource

        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        self._ru_start = r.ru_utime + r.ru_stime
        self.cg = _Cgroup(tag)
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen(list(argv), preexec_fn=self.cg.preexec(), **popen)
        self.peak_kb = 0
        self.rss: list[tuple[float, int]] = []  # (perf_counter, VmRSS summed over the tree, KiB)
        self.cpu: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.is_set():
            pids = tree_pids(self.proc.pid)
            kb = [_status_kb(p) for p in pids]
            self.peak_kb = max(self.peak_kb, sum(h for h, _ in kb))
            self.rss.append((time.perf_counter(), sum(r for _, r in kb)))
            for p in pids:
                self.cpu[p] = max(self.cpu.get(p, 0.0), _cpu_s(p))
            time.sleep(0.01)

    def wait(self, timeout: float | None = None, stdin: bytes | None = None, *, rusage: bool = True,
             communicate: bool = True) -> Usage:
        """``rusage``: also take CPU from RUSAGE_CHILDREN (exact for the waited tree; only
        when this script waited for nothing else meanwhile, e.g. not around a workload).
        ``communicate``: read its output pipes here (False: another thread reads them)."""
        if stdin is None and self.proc.stdout is None and self.proc.stderr is None or not communicate:
            self.proc.wait(timeout)  # its pipes are someone else's to read
            out = err = b""
        else:
            out, err = self.proc.communicate(stdin, timeout=timeout)
        secs = time.perf_counter() - self.t0
        self._stop.set()
        self._thread.join()
        ru = self.ru_children() if rusage else 0.0
        u = Usage(seconds=secs, cpu_s=max(ru, sum(self.cpu.values())), peak_mb=self.peak_kb / 1024,
                  cgroup_peak_mb=self.cg.peak_mb(), returncode=self.proc.returncode,
                  stdout=out or b"", stderr=err or b"")
        self.cg.remove()
        return u

    def rss_mb(self, t0: float, t1: float) -> float:
        """Median VmRSS of the tree (MB) over the samples taken between ``t0`` and ``t1``
        (perf_counter times), 0 when there are none."""
        xs = sorted(kb for t, kb in self.rss if t0 <= t <= t1)
        return xs[len(xs) // 2] / 1024 if xs else 0.0

    def ru_children(self) -> float:
        import resource

        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        return max(0.0, r.ru_utime + r.ru_stime - self._ru_start)

    def __enter__(self) -> Tree:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._stop.set()
        self.cg.remove()


def run_tree(argv: Sequence[str], *, tag: str = "run", check: bool = True, timeout: float | None = None,
             stdin: bytes | None = None, **popen: Any) -> Usage:
    """Run ``argv`` to its end; its stdout/stderr are captured unless redirected in ``popen``."""
    popen.setdefault("stdout", subprocess.PIPE)
    popen.setdefault("stderr", subprocess.PIPE)
    if stdin is not None:
        popen["stdin"] = subprocess.PIPE
    u = Tree(argv, tag=tag, **popen).wait(timeout, stdin)
    if check and u.returncode != 0:
        tail = u.stderr.decode(errors="replace")[-800:]
        raise RuntimeError(f"{' '.join(argv)} failed ({u.returncode}): {tail}")
    return u
