"""Recorder benchmark: aether-rec against `perf record -z` on the same workloads, same run.

    sudo .venv/bin/python bench/bench_recorder.py [--repeat 3] [--transport ringbuf|perf]

Workloads (each started paused; the tracer attaches to its pid; then it is released):
  storm      dd if=/dev/zero of=/dev/null bs=512 count=2000000   (4 M read/write syscalls)
  dio-write  dd if=/dev/zero of=F bs=4k count=N oflag=direct     (syscall + block layer)
  dio-read   dd if=F of=/dev/null bs=4k count=N iflag=direct

Setups: untraced; `aether-rec record --pid P` (default settings); `perf record -z -p P`
with the syscall tracepoints (and block tracepoints for the dio rows). Workload time is
dd's own figure. Syscalls captured are dd's read/write syscalls found in the capture
(perf: its sys_exit_read/write samples); block I/Os are completed block requests (perf:
block_rq_complete samples; with -p perf misses completions that run in interrupt
context). Bytes per I/O: file size over the I/Os the workload did (syscalls + requests).
Tracer CPU time and peak memory come from /proc/PID/{stat,status} sampled until the tracer
exits (ru_maxrss would carry this script's own size across fork). Then offline:
`aether-rec stats` on the storm capture against `perf report --sort comm` on the storm's
perf.data: the same I/Os.

Needs root, bcc and linux-perf (scripts/setup.sh installs them with AETHER_BENCH=1).
Every figure is the median of --repeat runs.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
AETHER = [str(ROOT / ".venv" / "bin" / "aether-rec")]
CLK = os.sysconf("SC_CLK_TCK")
SYSCALL_TPS = [f"syscalls:sys_{d}_{s}" for s in ("read", "write") for d in ("enter", "exit")]
BLOCK_TPS = ["block:block_rq_insert", "block:block_rq_issue", "block:block_rq_complete"]


@dataclass
class Run:
    workload_s: float
    captured: int = 0
    block: int = 0
    lost: int = 0
    file_bytes: int = 0
    cpu_s: float = 0.0
    peak_mb: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)


class ProcWatch(threading.Thread):
    """Samples a process's CPU time and peak RSS from /proc until it exits."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.cpu_s = 0.0
        self.peak_mb = 0.0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                stat = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
                self.cpu_s = (int(stat[11]) + int(stat[12])) / CLK
                for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        self.peak_mb = max(self.peak_mb, int(line.split()[1]) / 1024)
            except (OSError, IndexError, ValueError):
                return
            time.sleep(0.02)


def dd_seconds(stderr: str) -> float:
    m = re.search(r"copied, ([0-9.]+) s", stderr)
    if not m:
        raise RuntimeError(f"cannot read dd's time from: {stderr!r}")
    return float(m.group(1))


def paused(argv: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["sh", "-c", 'read _go; exec "$@"', "sh", *argv],
                            stdin=subprocess.PIPE, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)


def release(wl: subprocess.Popen[bytes]) -> float:
    assert wl.stdin is not None and wl.stderr is not None
    wl.stdin.write(b"go\n")
    wl.stdin.close()
    err = wl.stderr.read().decode()
    wl.wait()
    return dd_seconds(err)


def wait_for_line(proc: subprocess.Popen[bytes], needle: str, timeout: float) -> list[str]:
    """Read the tracer's stderr until a line contains ``needle``; keep reading in the background."""
    assert proc.stderr is not None
    lines: list[str] = []
    seen = threading.Event()

    def reader() -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = raw.decode(errors="replace")
            lines.append(line)
            if needle in line:
                seen.set()
        seen.set()

    threading.Thread(target=reader, daemon=True).start()
    if not seen.wait(timeout) or proc.poll() is not None:
        raise RuntimeError("tracer did not start: " + "".join(lines))
    return lines


def stop(proc: subprocess.Popen[bytes], watch: ProcWatch) -> None:
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=300)
    watch.done.set()


def run_untraced(argv: list[str]) -> Run:
    return Run(release(paused(argv)))


def run_aether(argv: list[str], out: Path, transport: str | None, block: bool) -> Run:
    wl = paused(argv)
    cmd = [*AETHER, "record", "-o", str(out), "--force", "--pid", str(wl.pid)]
    if transport:
        cmd += ["--transport", transport]
    if block:
        cmd += ["--layers", "syscall,block"]
    rec = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    watch = ProcWatch(rec.pid)
    watch.start()
    log = wait_for_line(rec, "recording", 120)
    t = release(wl)
    time.sleep(0.3)
    stop(rec, watch)
    import aether_rec

    with aether_rec.open(out) as cap:
        cols = cap.to_numpy(["comm", "op", "layer", "fd"])
        is_dd = cols["comm"] == "dd"
        sysc = is_dd & (cols["layer"] == 1) & ((cols["op"] == 1) | (cols["op"] == 2))
        blk = int(((cols["layer"] == 2)).sum())
        r = Run(t, captured=int(sysc.sum()), block=blk, lost=cap.lost, file_bytes=out.stat().st_size,
                cpu_s=watch.cpu_s, peak_mb=watch.peak_mb)
        stats = cap.index_stats.get("recorder", {}) if isinstance(cap.index_stats, dict) else {}
    if isinstance(stats, dict) and stats.get("peak_rss_mb"):
        r.peak_mb = float(stats["peak_rss_mb"])
        r.cpu_s = float(stats.get("cpu_s", r.cpu_s))
    _ = log
    return r


def run_perf(argv: list[str], out: Path, block: bool) -> Run:
    wl = paused(argv)
    events = SYSCALL_TPS + (BLOCK_TPS if block else [])
    cmd = ["perf", "record", "-q", "-z", "-o", str(out), "-p", str(wl.pid)]
    for e in events:
        cmd += ["-e", e]
    rec = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    watch = ProcWatch(rec.pid)
    watch.start()
    time.sleep(2.0)  # perf says nothing when it is attached
    if rec.poll() is not None:
        raise RuntimeError("perf record failed: " + (rec.stderr.read().decode() if rec.stderr else ""))
    t = release(wl)
    time.sleep(0.3)
    stop(rec, watch)
    rep = subprocess.run(["perf", "report", "--stats", "-i", str(out)], capture_output=True, text=True)
    lost = _perf_stat(rep.stdout, "LOST") + _perf_stat(rep.stdout, "LOST_SAMPLES")
    if block:  # small: count samples per event
        names = subprocess.run(["perf", "script", "-F", "event", "-i", str(out)], capture_output=True,
                               text=True).stdout.split()
        sysc = sum(1 for x in names if x.startswith(("syscalls:sys_exit_read", "syscalls:sys_exit_write")))
        blk = sum(1 for x in names if x.startswith("block:block_rq_complete"))
    else:  # only the 4 syscall tracepoints: one enter and one exit sample per I/O
        sysc, blk = _perf_stat(rep.stdout, "SAMPLE") // 2, 0
    return Run(t, captured=sysc, block=blk, lost=lost, file_bytes=out.stat().st_size,
               cpu_s=watch.cpu_s, peak_mb=watch.peak_mb)


def _perf_stat(text: str, name: str) -> int:
    m = re.search(rf"^\s*{name} events:\s+(\d+)", text, re.M)
    return int(m.group(1)) if m else 0


def timed(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--transport", choices=["ringbuf", "perf"], action="append",
                    help="aether-rec transports to measure (repeatable; default: both)")
    ap.add_argument("--dio-count", type=int, default=20000, help="4 KiB direct I/Os per dio row")
    ap.add_argument("--storm-records", type=int, default=2_000_000,
                    help="dd records in the storm (2 syscalls each); larger shows how the offline "
                         "comparison scales once start-up costs are amortised")
    ap.add_argument("--only", choices=["storm", "dio-write", "dio-read"], action="append",
                    help="run only these workloads (repeatable)")
    ap.add_argument("--dir", default=str(ROOT), help="directory on a real block device for dio rows")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_recorder: needs root (it attaches BPF programs and perf tracepoints)")
    if shutil.which("perf") is None:
        sys.exit("bench_recorder: perf not found: AETHER_BENCH=1 bash scripts/setup.sh")
    work = Path(tempfile.mkdtemp(prefix="aether-bench-", dir=args.dir))
    dio = work / "dio.dat"
    n = args.dio_count
    # name: (argv, syscalls dd makes, block requests, block layer traced)
    workloads = {
        "storm": (["dd", "if=/dev/zero", "of=/dev/null", "bs=512", f"count={args.storm_records}"],
                  2 * args.storm_records, 0, False),
        "dio-write": (["dd", "if=/dev/zero", f"of={dio}", "bs=4k", f"count={n}", "oflag=direct"],
                      2 * n, n, True),
        "dio-read": (["dd", f"if={dio}", "of=/dev/null", "bs=4k", f"count={n}", "iflag=direct"],
                     2 * n, n, True),
    }
    if args.only:
        workloads = {k: v for k, v in workloads.items() if k in args.only}
    transports = args.transport or ["ringbuf", "perf"]
    results: dict[tuple[str, str], list[Run]] = {}
    offline: dict[str, list[float]] = {"aether-rec stats": [], "perf report --sort comm": []}
    try:
        subprocess.run(["dd", "if=/dev/zero", f"of={dio}", "bs=4k", f"count={n}"], check=True,
                       capture_output=True)
        for rep in range(args.repeat):
            for name, (argv, _nsys, _nblk, block) in workloads.items():
                print(f"[{rep + 1}/{args.repeat}] {name}", file=sys.stderr)
                aio, pdata = work / f"{name}.aio", work / f"{name}.perf.data"
                results.setdefault((name, "untraced"), []).append(run_untraced(argv))
                for tr in transports:  # the first transport's storm capture feeds the offline rows
                    out = aio if tr == transports[0] else work / f"{name}-{tr}.aio"
                    run = run_aether(argv, out, tr, block)
                    results.setdefault((name, f"aether-rec {tr}"), []).append(run)
                results.setdefault((name, "perf record -z"), []).append(run_perf(argv, pdata, block))
                if name == "storm":
                    for _ in range(3):  # each tool three times on the same file, warm cache
                        offline["aether-rec stats"].append(timed([*AETHER, "stats", str(aio)]))
                        offline["perf report --sort comm"].append(
                            timed(["perf", "report", "--sort", "comm", "--stdio", "-i", str(pdata)]))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    med = statistics.median
    print(f"\nRecorder benchmark, median of {args.repeat} runs, {time.strftime('%Y-%m-%d')}, "
          f"{os.cpu_count()} CPUs, kernel {os.uname().release}")
    hdr = (f"{'workload':<10} {'setup':<18} {'time s':>7} {'x untraced':>10} {'syscalls captured':>21} "
           f"{'block I/Os':>13} {'lost':>9} {'B per I/O':>9} {'CPU s':>6} {'peak MB':>8}")
    print(hdr)
    print("-" * len(hdr))
    for name, (_argv, nsys, nblk, _block) in workloads.items():
        base = med(r.workload_s for r in results[(name, "untraced")])
        for setup in ("untraced", *(f"aether-rec {tr}" for tr in transports), "perf record -z"):
            rs = results[(name, setup)]
            t = med(r.workload_s for r in rs)
            if setup == "untraced":
                dash = "-"
                print(f"{name:<10} {setup:<18} {t:>7.2f} {1.0:>10.2f} {dash:>21} {dash:>13} {dash:>9} "
                      f"{dash:>9} {dash:>6} {dash:>8}")
                continue
            cap = int(med(r.captured for r in rs))
            blk = int(med(r.block for r in rs))
            print(f"{name:<10} {setup:<18} {t:>7.2f} {t / base:>10.2f} {f'{cap:,}/{nsys:,}':>21} "
                  f"{f'{blk:,}/{nblk:,}':>13} {int(med(r.lost for r in rs)):>9,} "
                  f"{med(r.file_bytes for r in rs) / (nsys + nblk):>9.2f} "
                  f"{med(r.cpu_s for r in rs):>6.2f} {med(r.peak_mb for r in rs):>8.0f}")
    if offline["aether-rec stats"]:
        a, p = med(offline["aether-rec stats"]), med(offline["perf report --sort comm"])
        print(f"\nOffline, storm capture ({2 * args.storm_records:,} I/Os): aether-rec stats {a:.2f} s, "
              f"perf report --sort comm {p:.2f} s: {p / a:.1f}x faster")


if __name__ == "__main__":
    main()
