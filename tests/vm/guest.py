"""The kernel matrix's guest program: runs as root inside a VM booted on a stock kernel.

``python tests/vm/guest.py --out DIR --headers exact|fallback [--writes N]``

It tests the recorder of the host checkout (shared read-only into the VM) against a
known workload with exact expected counts, and appends one JSON line per result to
``DIR/results.jsonl``: ``{"check", "layer", "transport", "events", "expected", "lost",
"status": "pass"|"fail"|"unavailable", "reason", "seconds", ...}``. The last line is
``{"check": "done"}``: a guest that dies half-way leaves no such line, and the host
(tests/vm/matrix.py) reports that as a failure. Nothing is skipped: a layer or
transport the kernel lacks is a result with status "unavailable" and doctor's reason.

The workload is GNU dd writing N direct 4 KiB blocks over a preallocated file on an
ext4 virtio-blk disk: N reads of /dev/zero and N writes of the file (syscall and vfs
layers), N block writes at the file's physical blocks, which ``filefrag`` reports
independently of the recorder. One VM boot runs every check of a kernel; each
``record`` compiles once (bcc, under TCG about a minute), so the checks share
recordings: four recordings cover both transports, all layers, both filters, loss
accounting and --duration. A fifth runs fio with the io_uring engine over its own
preallocated file, system-wide: fio's per-I/O log and filefrag are the oracles for the
io_uring and block layers.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

import aether_rec
from aether_rec.recorder.probes import RAW_SYSCALLS_NEWEST, kernel_series
from aether_rec.schema import LAYER_CODE, OP_CODE

CLI = [sys.executable, "-c", "from aether_rec.cli import main; main()"]
LAYERS = ("syscall", "block", "vfs")  # the dd recordings'
ALL_LAYERS = (*LAYERS, "io_uring")
BS = 4096
MNT = Path("/tmp/aether-vm-disk")


class Results:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.failed = 0

    def add(self, check: str, status: str, reason: str = "", **kw: Any) -> None:
        doc = {"check": check, "status": status, "reason": reason, **kw}
        if status == "fail":
            self.failed += 1
        with open(self.path, "a") as f:
            f.write(json.dumps(doc) + "\n")
        print(f"guest: {check} {kw.get('layer', '')} {kw.get('transport', '')}: {status} {reason}",
              file=sys.stderr, flush=True)


def sh(*cmd: str, check: bool = True) -> str:
    p = subprocess.run(cmd, capture_output=True, text=True)
    if check and p.returncode:
        raise RuntimeError(f"{' '.join(cmd)}: exit {p.returncode}: {p.stderr.strip()}")
    return p.stdout


# -- the disk ------------------------------------------------------------------------
def setup_disk() -> tuple[Path, int]:
    """Mount the virtio-blk ext4 image; return (mount point, its dev_t as the kernel's
    block tracepoints encode it: major << 20 | minor)."""
    for mod in ("virtio_blk", "ext4"):
        subprocess.run(["modprobe", mod], capture_output=True)  # built in on some kernels
    node = Path("/dev/vda")  # vng --disk: the only virtio-blk disk
    for _ in range(100):
        if node.exists():
            break
        time.sleep(0.1)
    MNT.mkdir(parents=True, exist_ok=True)
    sh("mount", "-t", "ext4", str(node), str(MNT))
    st = os.stat(os.path.realpath(node))
    return MNT, (os.major(st.st_rdev) << 20) | os.minor(st.st_rdev)


def prealloc(path: Path, n: int) -> list[int]:
    """Write ``path`` (n blocks), sync it, and return the disk byte offset of each of its
    blocks in file order, from filefrag (e2fsprogs), not from the recorder."""
    sh("dd", "if=/dev/zero", f"of={path}", f"bs={BS}", f"count={n}", "conv=fsync", "status=none")
    sh("sync")
    out = sh("filefrag", "-v", "-b4096", str(path))
    offsets: list[int] = []
    for m in re.finditer(r"^\s*\d+:\s+(\d+)\.\.\s*(\d+):\s+(\d+)\.\.\s*(\d+):", out, re.M):
        lo, hi, plo = int(m.group(1)), int(m.group(2)), int(m.group(3))
        offsets.extend((plo + i) * BS for i in range(hi - lo + 1))
    if len(offsets) != n:
        raise RuntimeError(f"filefrag gave {len(offsets)} blocks for {n}: {out}")
    return offsets


def dd_args(path: Path, n: int) -> list[str]:
    return ["dd", "if=/dev/zero", f"of={path}", f"bs={BS}", f"count={n}", "oflag=direct",
            "conv=notrunc", "status=none"]


# -- running the recorder ------------------------------------------------------------
class Recording:
    """``aether-rec record`` in the background; ``attached`` is set once it says it is
    recording (probes attached, output open)."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen([*CLI, "record", *args], stderr=subprocess.PIPE, text=True, env=env)
        self.lines: list[str] = []
        self.attached = threading.Event()
        self.t_attached = 0.0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))
            sys.stderr.write("  rec| " + line)
            if line.startswith("aether-rec: recording ") and not self.attached.is_set():
                self.t_attached = time.monotonic()
                self.attached.set()

    def wait(self, timeout: float) -> int:
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
            self.lines.append(f"(killed after {timeout:.0f} s)")
        self._reader.join(5)
        return rc

    @property
    def compile_s(self) -> float:
        return self.t_attached - self.t0 if self.t_attached else float("nan")

    def phases(self, out: Path) -> dict[str, float]:
        """Where the start-up went: until the first probe was attached (Python, bcc, clang),
        attaching every probe, and handing over until the recorder said it records."""
        try:
            with aether_rec.open(str(out)) as cap:
                rec = cap.header.get("recorder", {})
            attached = rec["attached_ns"] / 1e9
            return {"to_attach_s": round(attached - self.t0, 1), "attach_s": round(rec["attach_s"], 2),
                    "handover_s": round(self.t_attached - attached - rec["attach_s"], 2)}
        except Exception:  # noqa: BLE001 - a missing or damaged file is reported by the check
            return {}

    def summary(self) -> str:
        return next((x for x in reversed(self.lines) if "aether-rec: recorded " in x), "")

    def stderr_tail(self) -> str:
        return " | ".join(self.lines[-3:])


def load(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray], int, dict[str, Any]]:
    """(header, columns, real losses, footer statistics) of a complete capture. The
    kernel's recursion misses are left out of the losses: they are counted for any program
    (a fork or exit hook, another process's I/O), and the exact counts of dd's own I/Os say
    whether one of them was missed; they are in the footer's counters."""
    with aether_rec.open(str(path)) as cap:
        if not cap.has_index:
            raise RuntimeError(f"{path}: no index")
        if cap.warnings:
            raise RuntimeError(f"{path}: {cap.warnings}")
        lost = sum(x.count for x in cap.losses() if x.kind not in ("unmatched", "names", "recursion"))
        return cap.header, cap.to_numpy(), lost, dict(cap.index_stats)


VFS_PROGS = ("kprobe__vfs", "kretprobe__vfs")
SYSCALL_PROGS = ("tracepoint__syscalls__", "raw_tracepoint__sys_")


def misses(stats: dict[str, Any], progs: tuple[str, ...]) -> int:
    """Runs of the programs named ``progs*`` the kernel skipped (footer counters
    ``recursion_misses:PROG``, in the capture's recursion losses): each can cost one event."""
    counters = stats.get("counters") or {}
    return sum(int(v) for k, v in counters.items()
               if k.startswith(tuple("recursion_misses:" + p for p in progs)))


# -- checks --------------------------------------------------------------------------
class Guest:
    def __init__(self, a: argparse.Namespace) -> None:
        self.a = a
        self.out = Path(a.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.res = Results(self.out / "results.jsonl")
        self.env = dict(os.environ, AETHER_REC_CACHE="/tmp/aether-rec-cache", LANG="C")
        self.available: dict[str, str] = {}  # layer -> "" or why not
        self.transports: dict[str, str] = {}

    def doctor(self) -> None:
        t = time.monotonic()
        p = subprocess.run([*CLI, "doctor", "--json"], capture_output=True, text=True, env=self.env)
        secs = time.monotonic() - t
        try:
            rep = json.loads(p.stdout)
        except ValueError:
            self.res.add("doctor", "fail", f"exit {p.returncode}, no JSON: {p.stderr.strip()[-300:]}",
                         seconds=secs)
            return
        (self.out / "doctor.json").write_text(json.dumps(rep, indent=1))
        # the text `aether-rec doctor` prints, from the same report (a second run costs a minute)
        from aether_rec.recorder.doctor import render

        (self.out / "doctor.txt").write_text("".join(line + "\n" for line in render(rep)))
        for name in ALL_LAYERS:
            lay = rep["layers"].get(name, {})
            self.available[name] = "" if lay.get("available") else (lay.get("reason") or "not reported")
        for name in ("ringbuf", "perf"):
            tr = rep.get("transport", {}).get(name, {})
            self.transports[name] = "" if tr.get("available") else (tr.get("reason") or "not reported")
        problems = []
        if p.returncode != 0 or not rep.get("ok"):
            problems.append(f"doctor says not ready (exit {p.returncode})")
        kind = rep.get("headers", {}).get("kind")
        if kind != self.a.headers:
            problems.append(f"headers: doctor picked {kind!r}, the VM provides {self.a.headers!r}")
        if rep.get("kernel") != os.uname().release:
            problems.append(f"kernel {rep.get('kernel')} is not the running {os.uname().release}")
        self.res.add("doctor", "fail" if problems else "pass", "; ".join(problems), seconds=secs,
                     headers=kind, kernel=rep.get("kernel"))
        missing = {**self.available, **{"transport " + k: v for k, v in self.transports.items()}}
        for name, why in missing.items():
            if why:  # reported, never skipped; the host decides whether it was expected
                self.res.add("available", "unavailable", why, layer=name)

    def _layers_arg(self) -> list[str]:
        return [x for x in LAYERS if not self.available.get(x)]

    def check_layers(
        self, name: str, path: Path, transport: str, ev: dict[str, np.ndarray], lost: int,
        pids: set[int], blocks: list[int], dev: int, secs: float, extra: dict[str, Any],
    ) -> None:
        """Exact counts per layer for one dd of N direct writes over ``blocks``."""
        n = self.a.writes
        layer, op = ev["layer"], ev["op"]
        mine = np.isin(ev["pid"], list(pids))
        for lay in LAYERS:
            if self.available.get(lay):
                self.res.add(name, "unavailable", self.available[lay], layer=lay, transport=transport)
                continue
            sel = layer == LAYER_CODE[lay]
            problems: list[str] = []
            if lay == "syscall":
                w = sel & mine & (op == OP_CODE["write"]) & (ev["path"] == str(path)) & (ev["result"] == BS)
                r = sel & mine & (op == OP_CODE["read"]) & (ev["path"] == "/dev/zero") & (ev["result"] == BS)
                got, exp = int(w.sum()) + int(r.sum()), 2 * n
                if int(w.sum()) != n or int(r.sum()) != n:
                    problems.append(f"{int(w.sum())} writes of the file and {int(r.sum())} reads of "
                                    f"/dev/zero, expected {n} each")
                if self._accounted(name, lay, transport, problems, got, exp, lost, secs, extra,
                                   int(extra.get("syscall_misses", 0)), "syscall"):
                    continue
            elif lay == "block":
                w = sel & mine & (op == OP_CODE["write"]) & (ev["dev"] == dev) & (ev["bytes"] == BS)
                got, exp = int(w.sum()), n
                offs = sorted(ev["offset"][w].tolist())
                if offs != sorted(blocks):
                    missing = len(set(blocks) - set(offs))
                    problems.append(f"{got} block writes, expected {n} at filefrag's blocks "
                                    f"({missing} of those missing)")
                if w.any() and not (ev["queue"][w] <= ev["lat"][w]).all():
                    problems.append("queue time above latency")
            else:
                w = sel & mine & (op == OP_CODE["write"]) & (ev["bytes"] == BS) & (ev["result"] == BS)
                r = sel & mine & (op == OP_CODE["read"]) & (ev["bytes"] == BS) & (ev["result"] == BS)
                got, exp = int(w.sum()) + int(r.sum()), 2 * n
                if sorted(ev["offset"][w].tolist()) != [i * BS for i in range(n)]:
                    problems.append(f"{int(w.sum())} vfs writes, expected {n} at offsets 0..{n - 1} x 4 KiB")
                if int(r.sum()) != n:
                    problems.append(f"{int(r.sum())} vfs reads, expected {n}")
                problems += self._vfs_nesting(ev, w, path)
                # a vfs write whose write syscall the kernel skipped is not nested in one
                if self._accounted(name, lay, transport, problems, got, exp, lost, secs, extra,
                                   int(extra.get("vfs_misses", 0)) + int(extra.get("syscall_misses", 0)),
                                   "vfs and syscall"):
                    continue
            if lost:
                problems.append(f"{lost} lost")
            self.res.add(name, "fail" if problems else "pass", "; ".join(problems), layer=lay,
                         transport=transport, events=got, expected=exp, lost=lost, seconds=secs, **extra)

    def _accounted(self, name: str, lay: str, transport: str, problems: list[str], got: int, exp: int,
                   lost: int, secs: float, extra: dict[str, Any], missed: int, progs: str) -> bool:
        """A shortfall no larger than the kernel's counted misses of the layer's programs passes,
        said as such: the kernel did not run the program (on kernels that may preempt BPF
        programs, a preempted one makes it skip the next on that CPU). Not silent: the capture
        counts it as a recursion loss (a missed kretprobe also pairs the next call with a
        stale entry)."""
        if not (problems and missed and 0 <= exp - got <= missed) or lost:
            return False
        self.res.add(name, "pass", f"{exp - got} missing, accounted for by {missed} recursion misses "
                     f"of the {progs} programs (in the capture's losses): " + "; ".join(problems),
                     layer=lay, transport=transport, events=got, expected=exp, lost=lost, seconds=secs,
                     **extra)
        return True

    def _vfs_nesting(self, ev: dict[str, np.ndarray], vfs_w: np.ndarray, path: Path) -> list[str]:
        """Each vfs_write of dd lies inside exactly one write syscall of the file, on the same
        thread, and each such syscall holds exactly one vfs_write (kprobe/kretprobe pairing)."""
        sc = ev["layer"] == LAYER_CODE["syscall"]
        sc &= (ev["op"] == OP_CODE["write"]) & (ev["path"] == str(path))
        if not sc.any() or not vfs_w.any():
            return ["no write syscalls or vfs writes to pair"]
        s_ts, s_end, s_tid = ev["ts"][sc], ev["ts"][sc] + ev["lat"][sc], ev["tid"][sc]
        v_ts, v_end, v_tid = ev["ts"][vfs_w], ev["ts"][vfs_w] + ev["lat"][vfs_w], ev["tid"][vfs_w]
        order = np.argsort(s_ts)
        s_ts, s_end, s_tid = s_ts[order], s_end[order], s_tid[order]
        k = np.searchsorted(s_ts, v_ts, side="right") - 1  # the syscall that started last before
        ok = k >= 0
        kk = np.where(ok, k, 0)
        inside = ok & (s_ts[kk] <= v_ts) & (v_end <= s_end[kk]) & (s_tid[kk] == v_tid)
        problems = []
        if not inside.all():
            problems.append(f"{int((~inside).sum())} of {len(v_ts)} vfs writes not nested in a write "
                            "syscall of the same thread")
        per = np.bincount(kk[inside], minlength=len(s_ts))
        if (per != 1).any():
            problems.append(f"{int((per != 1).sum())} write syscalls hold other than one vfs write")
        return problems

    def check_header(self, name: str, hdr: dict[str, Any], transport: str, filt: dict[str, Any]) -> None:
        hooks = {h["hook"] for h in hdr.get("hooks", [])}
        # the block layer is on raw tracepoints where the kernel's BTF tells struct request's
        # layout (every kernel of the matrix), else on the classic ones
        raw = {"raw_tracepoint:block_rq_issue", "raw_tracepoint:block_rq_complete"}
        classic = {"tracepoint:block:block_rq_issue", "tracepoint:block:block_rq_complete"}
        # the syscall layer is on the raw_syscalls raw tracepoints up to the kernels whose raw
        # syscall programs may be preempted (probes.RAW_SYSCALLS_NEWEST), classic ones after
        if kernel_series(os.uname().release) <= RAW_SYSCALLS_NEWEST:
            want = {"raw_tracepoint:sys_enter:write", "raw_tracepoint:sys_exit:write"}
        else:
            want = {"tracepoint:syscalls:sys_enter_write", "tracepoint:syscalls:sys_exit_write"}
        want |= raw if raw <= hooks else classic
        if not self.available.get("vfs"):
            want |= {"kprobe:vfs_write", "kretprobe:vfs_write", "kprobe:vfs_read", "kretprobe:vfs_read"}
        problems = [f"hook {h} missing" for h in sorted(want - hooks)]
        if hdr.get("layers") != self._layers_arg():
            problems.append(f"layers {hdr.get('layers')} != {self._layers_arg()}")
        tname = {"perf": "perf_buffer", "ringbuf": "ringbuf"}[transport]
        if hdr.get("transport") != tname:
            problems.append(f"transport {hdr.get('transport')} != {tname}")
        for k, v in filt.items():
            if hdr.get("filters", {}).get(k) != v:
                problems.append(f"filters.{k} = {hdr.get('filters', {}).get(k)!r}, expected {v!r}")
        hs = hdr.get("recorder", {}).get("headers", {}).get("kind")
        if hs != self.a.headers:
            problems.append(f"headers {hs!r}, expected {self.a.headers!r}")
        self.res.add(name + "-header", "fail" if problems else "pass", "; ".join(problems),
                     transport=transport, hooks=len(hooks))

    def outsider(self, path: Path) -> subprocess.Popen[bytes]:
        """A process outside the filter doing the same kind of I/O meanwhile: none of its
        events may be recorded."""
        return subprocess.Popen(["sh", "-c", f"while :; do {' '.join(dd_args(path, 8))}; sleep 0.2; done"])

    def run_cmd_filter(self, transport: str, dev: int, mnt: Path) -> None:
        """Recording 1: ``-- dd ...`` (the command filter), every layer."""
        n = self.a.writes
        data = mnt / "cmd.bin"
        blocks = prealloc(data, n)
        prealloc(mnt / "outsider.bin", 8)
        out = self.out / f"cmd-{transport}.aio"
        other = self.outsider(mnt / "outsider.bin")
        try:
            r = Recording(["-o", str(out), "--force", "--transport", transport, "--layers",
                           ",".join(self._layers_arg()), "--", *dd_args(data, n)], self.env)
            rc = r.wait(900)
        finally:
            other.kill()
            other.wait()
        self._finish_filter("cmd", r, rc, out, transport, data, blocks, dev, {"command": dd_args(data, n)})

    def run_pid_filter(self, transport: str, dev: int, mnt: Path) -> None:
        """Recording 2: ``--pid P --duration D``. P is a shell that, once the recorder is
        attached, runs dd over the file as its child (children are followed), then a second
        dd that writes without pause until the recording stops: --duration is checked on
        it (one compile fewer than a recording of its own)."""
        n, dur = self.a.writes, self.a.duration
        data, tail = mnt / "pid.bin", mnt / "dur.bin"
        blocks = prealloc(data, n)
        prealloc(mnt / "outsider.bin", 8)
        go = mnt / "go"
        go.unlink(missing_ok=True)
        endless = dd_args(tail, 10_000_000)[:-2] + ["status=none"]
        target = subprocess.Popen(["sh", "-c", f"while [ ! -e {go} ]; do sleep 0.05; done; "
                                   f"{' '.join(dd_args(data, n))}; {' '.join(endless)}"],
                                  start_new_session=True)
        out = self.out / f"pid-{transport}.aio"
        other = self.outsider(mnt / "outsider.bin")
        try:
            r = Recording(["-o", str(out), "--force", "--transport", transport, "--layers",
                           ",".join(self._layers_arg()), "--pid", str(target.pid), "--duration", f"{dur}s"],
                          self.env)
            if not r.attached.wait(900):
                target.kill()
            go.touch()
            rc = r.wait(600)
        finally:
            other.kill()
            other.wait()
            os.killpg(target.pid, signal.SIGKILL)  # the shell and its endless dd
            target.wait()
        self._finish_filter("pid", r, rc, out, transport, data, blocks, dev,
                            {"pid": [target.pid], "follow_children": True}, root=target.pid)
        if rc == 0 and out.exists():
            self.check_duration(r, out, transport, tail, target.pid)

    def check_duration(self, r: Recording, out: Path, transport: str, tail: Path, root: int) -> None:
        """--duration D counts from the first probe attached and the file holds the events
        until the stop: the summary says D; the traced tree is seen from the attach on (its
        filter is in place before); the endless dd's writes run on to the stop, without a
        hole (consecutive file offsets at the vfs layer), and none begun after it."""
        dur = self.a.duration
        hdr, ev, lost, stats = load(out)
        problems = []
        m = re.search(r"recorded [\d,]+ events in ([\d.]+) s", r.summary())
        said = float(m.group(1)) if m else float("nan")
        if not (dur <= said <= dur + 0.3):
            problems.append(f"summary says {said} s for --duration {dur}s")
        if stats.get("stop_reason") != "--duration":
            problems.append(f"stop reason {stats.get('stop_reason')!r}")
        attach = hdr.get("recorder", {}).get("attached_ns")
        attach_s = float(hdr.get("recorder", {}).get("attach_s") or 0.0)
        w = ev["layer"] == LAYER_CODE["syscall"]
        w &= (ev["op"] == OP_CODE["write"]) & (ev["path"] == str(tail))
        ts = np.sort(ev["ts"][w].astype(np.int64))
        t_all = np.sort(ev["ts"].astype(np.int64))
        gap = float(np.diff(ts).max() / 1e9) if len(ts) > 2 else float("nan")
        if attach is None:
            problems.append("the header has no recorder.attached_ns")
        elif len(ts) < 10:
            problems.append(f"only {len(ts)} writes of the endless dd recorded (the first dd too slow?)")
        else:
            first = (t_all[0] - attach) / 1e9  # the shell's sleep loop does I/O all the time
            last, end = (ts[-1] - attach) / 1e9, (t_all[-1] - attach) / 1e9
            if not (-0.05 <= first <= attach_s + 0.5):
                problems.append(f"first event {first:+.2f} s after the attach "
                                f"(attaching took {attach_s:.2f} s)")
            if not (said - 0.3 <= last) or end > said + 0.05:
                problems.append(f"the endless dd's writes end {last:.2f} s and all events {end:.2f} s "
                                f"after the attach; the stop was at {said} s")
            if gap > 0.5:
                problems.append(f"a {gap:.2f} s hole between writes")
        vfs_w = (ev["layer"] == LAYER_CODE["vfs"]) & (ev["op"] == OP_CODE["write"])
        vfs_w &= (ev["bytes"] == BS) & (ev["offset"] >= 0)
        vfs_w &= np.isin(ev["tid"], np.unique(ev["tid"][w]))
        if vfs_w.any():  # the endless dd's writes are consecutive: their offsets leave no hole
            offs = np.sort(ev["offset"][vfs_w].astype(np.int64)) // BS
            holes = int((np.diff(offs) != 1).sum())
            if holes:
                problems.append(f"{holes} holes in the offsets of the vfs writes")
        if lost:
            problems.append(f"{lost} lost")
        self.res.add("duration", "fail" if problems else "pass", "; ".join(problems), transport=transport,
                     layer="syscall", events=len(ts), summary_s=said, attach_s=attach_s,
                     max_gap_s=round(gap, 3))

    def _finish_filter(self, name: str, r: Recording, rc: int, out: Path, transport: str, data: Path,
                       blocks: list[int], dev: int, filt: dict[str, Any], root: int | None = None) -> None:
        secs = time.monotonic() - r.t0
        extra = {"compile_s": round(r.compile_s, 1), "record_s": round(secs, 1), **r.phases(out)}
        if rc != 0 or not out.exists():
            self.res.add(name, "fail", f"record exit {rc}: {r.stderr_tail()}", transport=transport,
                         seconds=secs, **extra)
            return
        hdr, ev, lost, stats = load(out)
        pids = set(np.unique(ev["pid"]).tolist())
        # the filter: dd (and with --pid, the shell and its children) only, never the outsider
        with open(out.parent / f"{name}-{transport}.pids", "w") as f:
            f.write(" ".join(map(str, sorted(pids))))
        comms = {c for c in np.unique(ev["comm"]).tolist()}
        expect_comms = {"dd"} if root is None else {"dd", "sh", "sleep"}
        outsider_events = int((ev["path"] == str(data.parent / "outsider.bin")).sum())
        problems = []
        if not comms <= expect_comms:
            problems.append(f"events of {sorted(comms - expect_comms)} passed the {name} filter")
        if outsider_events:
            problems.append(f"{outsider_events} events of the outsider on outsider.bin passed the filter")
        if root is None and len(pids) != 1:
            problems.append(f"{len(pids)} pids under -- CMD, expected dd's one")
        self.res.add(name + "-filter", "fail" if problems else "pass", "; ".join(problems),
                     transport=transport, events=len(ev["ts"]), pids=len(pids), **extra)
        dd_pids = set(np.unique(ev["pid"][ev["path"] == str(data)]).tolist())  # the dd over the file
        extra["vfs_misses"] = misses(stats, VFS_PROGS)
        extra["syscall_misses"] = misses(stats, SYSCALL_PROGS)
        self.check_layers(name, data, transport, ev, lost, dd_pids, blocks, dev, secs, extra)
        self.check_header(name, hdr, transport, filt)

    def run_loss(self, transport: str) -> None:
        """Recording 3: a one-page buffer against K one-byte writes: captured + lost = K."""
        k = self.a.loss_writes
        out = self.out / f"loss-{transport}.aio"
        cmd = ["dd", "if=/dev/zero", "of=/dev/null", "bs=1", f"count={k}", "status=none"]
        r = Recording(["-o", str(out), "--force", "--transport", transport, "--layers", "syscall",
                       "--ops", "write", "--buffer-pages", "1", "--", *cmd], self.env)
        rc = r.wait(900)
        secs = time.monotonic() - r.t0
        extra = {"compile_s": round(r.compile_s, 1), "record_s": round(secs, 1), **r.phases(out)}
        if rc != 0:
            self.res.add("loss", "fail", f"record exit {rc}: {r.stderr_tail()}", layer="syscall",
                         transport=transport, **extra)
            return
        _hdr, ev, lost, _stats = load(out)
        # dd's of= is its fd 1; no path: dd is gone before the recorder could look it up
        got = int(((ev["op"] == OP_CODE["write"]) & (ev["fd"] == 1) & (ev["result"] == 1)).sum())
        problems = []
        if got + lost != k:
            problems.append(f"captured {got} + lost {lost} = {got + lost}, expected {k}")
        if len(ev["ts"]) != got:
            problems.append(f"{len(ev['ts']) - got} events other than dd's one-byte writes to fd 1")
        if lost == 0:
            problems.append("nothing lost: a one-page buffer did not overflow, so the accounting is untested")
        if f"lost {lost:,}" not in r.summary():
            problems.append(f"summary does not say lost {lost:,}: {r.summary()!r}")
        self.res.add("loss", "fail" if problems else "pass", "; ".join(problems), layer="syscall",
                     transport=transport, events=got, expected=k, lost=lost, **extra)

    def run_uring(self, transport: str, dev: int, mnt: Path) -> None:
        """Recording 4, system-wide (io-wq workers are kernel threads on older kernels, so a
        process filter would judge attribution, not completeness): fio writes each 4 KiB
        block of a preallocated file once with the io_uring engine at depth 8. Expected:
        exactly N io_uring writes of fio with result 4096 (of the file, where the kernel
        names the fd), fio's own per-I/O log says N too, latency at most fio's (which adds
        reaping the completion in user space), and exactly N block writes at filefrag's
        blocks of the file, whoever issued them (reported)."""
        if self.available.get("io_uring"):
            self.res.add("uring", "unavailable", self.available["io_uring"], layer="io_uring",
                         transport=transport)
            return
        n = self.a.writes
        data = mnt / "uring.bin"
        blocks = prealloc(data, n)
        logp = self.out / f"uring-{transport}"
        fio = ["fio", "--name=uring", f"--filename={data}", "--ioengine=io_uring", "--iodepth=8",
               "--direct=1", "--rw=write", "--bs=4k", f"--size={n * BS}", "--randrepeat=0",
               f"--write_lat_log={logp}", "--log_avg_msec=0", "--per_job_logs=0",
               "--output=/dev/null"]
        out = self.out / f"uring-{transport}.aio"
        r = Recording(["-o", str(out), "--force", "--transport", transport, "--layers",
                       "io_uring,block", "--duration", "600s"], self.env)
        fio_rc, fio_err = -1, ""
        if r.attached.wait(900):
            p = subprocess.run(fio, capture_output=True, text=True, timeout=600)
            fio_rc, fio_err = p.returncode, p.stderr.strip()[-300:]
        r.proc.send_signal(signal.SIGINT)  # stop: drain, index, exit 0
        rc = r.wait(300)
        secs = time.monotonic() - r.t0
        extra = {"compile_s": round(r.compile_s, 1), "record_s": round(secs, 1), **r.phases(out)}
        if rc != 0 or not out.exists() or fio_rc != 0:
            self.res.add("uring", "fail", f"record exit {rc}, fio exit {fio_rc} {fio_err}: "
                         f"{r.stderr_tail()}", layer="io_uring", transport=transport, **extra)
            return
        hdr, ev, lost, _stats = load(out)
        self.check_uring(ev, lost, hdr, data, logp, blocks, dev, transport, extra)

    def check_uring(self, ev: dict[str, np.ndarray], lost: int, hdr: dict[str, Any], data: Path,
                    logp: Path, blocks: list[int], dev: int, transport: str, extra: dict[str, Any]) -> None:
        n = self.a.writes
        log = np.loadtxt(f"{logp}_clat.log", delimiter=",", usecols=(1, 2), ndmin=2)
        fio_w = log[log[:, 1] == 1, 0]  # fio's completion latency of each write, ns
        sel = (ev["layer"] == LAYER_CODE["io_uring"]) & (ev["comm"] == "fio")
        w = sel & (ev["op"] == OP_CODE["write"]) & (ev["result"] == BS)
        problems = []
        if len(fio_w) != n:
            problems.append(f"fio's log has {len(fio_w)} writes, expected {n}")
        if int(w.sum()) != n:
            problems.append(f"{int(w.sum())} io_uring writes of fio, expected {n}")
        hooks = {h["hook"] for h in hdr.get("hooks", [])}
        named = "tracepoint:io_uring:io_uring_file_get" in hooks
        if named and w.any() and not (ev["path"][w] == str(data)).all():
            problems.append(f"{int((ev['path'][w] != str(data)).sum())} io_uring writes not named {data}")
        if w.any() and len(fio_w):
            ours, theirs = float(np.median(ev["lat"][w])), float(np.median(fio_w))
            if ours > theirs * 1.05:
                problems.append(f"median io_uring latency {ours / 1e3:.0f} us above fio's "
                                f"{theirs / 1e3:.0f} us")
        if lost:
            problems.append(f"{lost} lost")
        self.res.add("uring", "fail" if problems else "pass", "; ".join(problems), layer="io_uring",
                     transport=transport, events=int(w.sum()), expected=n, lost=lost, fd_named=named, **extra)
        b = (ev["layer"] == LAYER_CODE["block"]) & (ev["op"] == OP_CODE["write"]) & (ev["dev"] == dev)
        b &= ev["bytes"] == BS
        mine = set(blocks)
        at = [i for i, off in zip(np.flatnonzero(b).tolist(), ev["offset"][b].tolist()) if off in mine]
        offs = sorted(int(ev["offset"][i]) for i in at)
        comms: dict[str, int] = {}
        for i in at:
            comms[str(ev["comm"][i])] = comms.get(str(ev["comm"][i]), 0) + 1
        problems = []
        if offs != sorted(blocks):
            problems.append(f"{len(offs)} block writes at the file's blocks, expected {n} "
                            f"({len(set(blocks) - set(offs))} missing, {len(offs) - len(set(offs))} twice)")
        if lost:
            problems.append(f"{lost} lost")
        self.res.add("uring", "fail" if problems else "pass", "; ".join(problems), layer="block",
                     transport=transport, events=len(offs), expected=n, lost=lost, issued_by=comms, **extra)

    def main(self) -> int:
        t0 = time.monotonic()
        self.doctor()
        try:
            mnt, dev = setup_disk()
        except Exception as e:  # noqa: BLE001 - reported as a failed result, never a traceback
            self.res.add("disk", "fail", str(e))
            mnt, dev = None, 0
        plan = [x for x in self.a.checks.split(",") if x]
        if mnt is not None:
            for check in plan:
                kind, _, transport = check.partition(":")
                t = time.monotonic()
                if self.transports.get(transport):
                    self.res.add(kind, "unavailable", self.transports[transport], transport=transport)
                    continue
                try:
                    if kind == "cmd":
                        self.run_cmd_filter(transport, dev, mnt)
                    elif kind == "pid":
                        self.run_pid_filter(transport, dev, mnt)
                    elif kind == "loss":
                        self.run_loss(transport)
                    elif kind == "uring":
                        self.run_uring(transport, dev, mnt)
                    else:
                        self.res.add(kind, "fail", f"unknown check {check!r}")
                except Exception as e:  # noqa: BLE001 - one failed check must not hide the others
                    self.res.add(kind, "fail", f"{type(e).__name__}: {e}", transport=transport)
                self.res.add("timing", "info", step=check, seconds=round(time.monotonic() - t, 1))
        self.res.add("done", "pass" if not self.res.failed else "fail", f"{self.res.failed} failed",
                     seconds=round(time.monotonic() - t0, 1), kernel=os.uname().release)
        return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--headers", choices=["exact", "fallback"], required=True)
    ap.add_argument("--writes", type=int, default=2000)
    ap.add_argument("--loss-writes", type=int, default=20000)
    ap.add_argument("--duration", type=float, default=30.0, help="of the --pid recording")
    ap.add_argument("--checks", default="cmd:ringbuf,pid:perf,loss:ringbuf,uring:ringbuf")
    a = ap.parse_args()
    return Guest(a).main()


if __name__ == "__main__":
    sys.exit(main())
