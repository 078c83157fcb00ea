"""Recorder benchmark: aether-rec against `perf record -z` on the same workloads, same run,
like for like.

    sudo .venv/bin/python bench/bench_recorder.py [--repeat 3] [--transport 'ringbuf|perf|ringbuf classic']

Pairs (each workload is started paused, the tracer attaches to its pid, then it is released):
  storm      dd if=/dev/zero of=/dev/null bs=512 count=2000000   (4 M read/write syscalls)
             aether-rec --layers syscall --ops read,write  vs  perf on sys_{enter,exit}_{read,write}
             (aether-rec on the raw_syscalls raw tracepoints; "ringbuf classic": on the same four
             classic tracepoints as perf, --syscall-hooks tracepoint)
  dio-write  dd if=/dev/zero of=F bs=4k count=N oflag=direct
  dio-read   dd if=F of=/dev/null bs=4k count=N iflag=direct
  loop-read  fio: 4 KiB random direct reads, io_uring at queue depth 32, on a loop device over a
             tmpfs file (the fastest block device this machine has: about 270,000 IOPS on 2 CPUs;
             no null_blk module here), a fixed number of I/Os (--loop-ios)
             aether-rec --layers block  vs  perf -a on block_rq_insert/issue/complete, both
             system-wide (perf attached by pid misses completions in interrupt context),
             counting read/write completions on the file's (the loop) device
Both tracers get the same buffer bytes: aether-rec --buffer-pages (32 MiB: in all for the
ring buffer, per CPU 32 MiB / CPUs for perf buffers) and perf record -m (32 MiB / CPUs per CPU).

Columns: workload time is dd's (fio's) own figure; "captured" counts dd's read/write syscalls in the
capture (perf: sys_exit_read/write samples, from `perf report --stats`) and completed block
read/write requests on the file's device (perf: its block_rq_complete samples); "missing" is
expected minus captured (perf's LOST records in `perf report --stats` count records, not
samples: not used); "lost" is what aether-rec says it lost. CPU and peak memory
are the tracer's whole process tree (aether-rec's bcc/clang loader helper included) measured
from outside (bench/measure.py: VmHWM summed over the tree; "cg MB" is a per-run cgroup's
peak, page cache included). "idle MB" and "steady MB": the median VmRSS summed over the
tracer's tree, sampled every 10 ms, in the 0.3 s before the workload is released (attached,
no events yet) and while it runs (issue 13's steady-memory target); mapped buffer pages count
once touched. Bytes per I/O: file size over the I/Os the workload did.

Offline, on the storm's files, the same percentiles three ways, each a whole process tree:
`aether-rec stats`; DuckDB quantile_cont over `aether-rec export --format parquet` of the same
capture; `perf script | bench/perf_pct.py` on perf's recording of the same workload.

Needs root, bcc, linux-perf (scripts/setup.sh installs them) and duckdb (the bench extra).
Every figure is the median of --repeat runs; the output carries its date.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import Tree, run_tree, today  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
AETHER = [str(ROOT / ".venv" / "bin" / "aether-rec")]
NCPU = os.cpu_count() or 1
BUFFER_BYTES = 32 << 20
RING_PAGES = BUFFER_BYTES // 4096
PER_CPU_PAGES = 1 << max(0, (RING_PAGES // NCPU).bit_length() - 1)  # a power of two, as both need
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
    idle_mb: float = 0.0  # tree VmRSS (median) in the 0.3 s before the workload starts
    steady_mb: float = 0.0  # tree VmRSS (median) while the workload runs
    cgroup_mb: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)


def dd_seconds(stderr: str) -> float:
    """The workload's own time: dd's "copied, X s", or fio's "run=A-Bmsec" (its longest job)."""
    m = re.search(r"copied, ([0-9.]+) s", stderr)
    if m:
        return float(m.group(1))
    m = re.search(r"run=\d+-(\d+)msec", stderr)
    if m:
        return int(m.group(1)) / 1000.0
    raise RuntimeError(f"cannot read the workload's time from: {stderr!r}")


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


def traced(tree: Tree, wl: subprocess.Popen[bytes]) -> Run:
    """Release the paused workload under the attached tracer ``tree``; the tracer's memory
    before (idle) and during (steady) the workload, from the tree's VmRSS samples."""
    time.sleep(0.3)  # samples of the attached, idle tracer
    t0 = time.perf_counter()
    r = Run(release(wl))
    t1 = time.perf_counter()
    r.idle_mb, r.steady_mb = tree.rss_mb(t0 - 0.3, t0), tree.rss_mb(t0, t1)
    return r


def stop(tree: Tree, run: Run) -> None:
    tree.proc.send_signal(signal.SIGINT)
    u = tree.wait(300, rusage=False, communicate=False)  # the workload ran meanwhile: sample only
    run.cpu_s, run.peak_mb, run.cgroup_mb = u.cpu_s, u.peak_mb, u.cgroup_peak_mb or 0.0


def run_untraced(argv: list[str]) -> Run:
    return Run(release(paused(argv)))


def run_aether(argv: list[str], out: Path, setup: str, block: bool, dev: int) -> Run:
    """setup: a transport, or "TRANSPORT classic": the classic syscall tracepoints."""
    wl = paused(argv)
    transport, _, hooks = setup.partition(" ")
    cmd = [*AETHER, "record", "-o", str(out), "--force", "--transport", transport,
           "--syscall-hooks", "tracepoint" if hooks == "classic" else "auto",
           "--buffer-pages", str(RING_PAGES if transport == "ringbuf" else PER_CPU_PAGES)]
    # block pair: system-wide (perf attached by pid misses completions in interrupt context)
    if block:
        cmd += ["--layers", "block"]
    else:
        cmd += ["--pid", str(wl.pid), "--layers", "syscall", "--ops", "read,write"]
    tree = Tree(cmd, tag="aether", stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    wait_for_line(tree.proc, "recording", 120)
    r = traced(tree, wl)
    time.sleep(0.3)
    stop(tree, r)
    import aether_rec

    with aether_rec.open(out) as cap:
        cols = cap.to_numpy(["comm", "op", "layer", "fd", "dev"])
        is_dd = cols["comm"] == "dd"
        sysc = is_dd & (cols["layer"] == 1) & ((cols["op"] == 1) | (cols["op"] == 2))
        on_dev = (cols["layer"] == 2) & (cols["dev"] == dev) & ((cols["op"] == 1) | (cols["op"] == 2))
        r.captured, r.block = int(sysc.sum()), int(on_dev.sum())
        r.lost, r.file_bytes = cap.lost, out.stat().st_size
    return r


def run_perf(argv: list[str], out: Path, block: bool, dev: int) -> Run:
    wl = paused(argv)
    events = BLOCK_TPS if block else SYSCALL_TPS
    cmd = ["perf", "record", "-q", "-z", "-m", str(PER_CPU_PAGES), "-o", str(out)]
    cmd += ["-a"] if block else ["-p", str(wl.pid)]
    for e in events:
        cmd += ["-e", e]
    tree = Tree(cmd, tag="perf", stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    time.sleep(2.0)  # perf says nothing when it is attached
    if tree.proc.poll() is not None:
        err = tree.proc.stderr.read().decode() if tree.proc.stderr else ""
        raise RuntimeError("perf record failed: " + err)
    r = traced(tree, wl)
    time.sleep(0.3)
    stop(tree, r)
    rep = subprocess.run(["perf", "report", "--stats", "-i", str(out)], capture_output=True, text=True)
    per_event = _perf_samples(rep.stdout)
    r.captured = per_event.get("syscalls:sys_exit_read", 0) + per_event.get("syscalls:sys_exit_write", 0)
    if block:  # completions of reads and writes on the file's device
        txt = subprocess.run(["perf", "script", "-F", "event,trace", "-i", str(out)], capture_output=True,
                             text=True).stdout
        want = f"{dev >> 20},{dev & 0xFFFFF} "
        r.block = sum(1 for line in txt.splitlines() if "block_rq_complete" in line
                      and want in line and re.search(rf"{re.escape(want)}\S*[RW]", line))
    r.file_bytes = out.stat().st_size
    return r


def _perf_samples(text: str) -> dict[str, int]:
    """Samples per event from `perf report --stats` ("NAME stats:" then "SAMPLE events: N")."""
    out: dict[str, int] = {}
    name = None
    for line in text.splitlines():
        m = re.match(r"^(\S+) stats:\s*$", line)
        if m:
            name = m.group(1)
            continue
        m = re.match(r"^\s*SAMPLE events:\s+(\d+)", line)
        if m and name:
            out[name] = int(m.group(1))
    return out


def _perf_stat(text: str, name: str) -> int:
    m = re.search(rf"^\s*{name} events:\s+(\d+)", text, re.M)
    return int(m.group(1)) if m else 0


PCTS = (0.5, 0.9, 0.99, 0.999)


def offline_peers(aio: Path, pdata: Path, work: Path) -> dict[str, tuple[float, float]]:
    """(seconds, tree MB) of: aether-rec stats; DuckDB on the Parquet export; perf script | pct."""
    pq = work / "storm.parquet"
    subprocess.run([*AETHER, "export", "--format", "parquet", "--force", "-o", str(pq), str(aio)], check=True,
                   capture_output=True)
    query = (f"SELECT layer_name, op_name, count(*), quantile_cont(lat, {list(PCTS)}) "
             "FROM read_parquet(?) GROUP BY ALL")
    duck = f"import duckdb,sys; print(duckdb.connect().execute({query!r}, [sys.argv[1]]).fetchall())"
    cmds = {
        "aether-rec stats": [*AETHER, "stats", "--all-fds", str(aio)],
        "DuckDB on its Parquet export": [sys.executable, "-c", duck, str(pq)],
        "perf script | perf_pct.py": [
            "sh", "-c", f"perf script -F tid,time,event --ns -i '{pdata}' 2>/dev/null"
            f" | '{sys.executable}' '{Path(__file__).parent / 'perf_pct.py'}'"],
    }
    out = {}
    for name, cmd in cmds.items():
        u = run_tree(cmd, tag="offline")
        out[name] = (u.seconds, u.peak_mb)
    return out


def make_loop(ios: int) -> tuple[tuple[str, Path], int]:
    """A loop device over a tmpfs file of ``ios`` 4 KiB blocks: ((device, file), its dev_t)."""
    img = Path("/dev/shm") / f"aether-bench-{os.getpid()}.img"
    with open(img, "wb") as f:
        f.truncate(4096 * ios)
    name = subprocess.run(["losetup", "-f", "--show", str(img)], capture_output=True, text=True,
                          check=True).stdout.strip()
    st = os.stat(name)
    return (name, img), (os.major(st.st_rdev) << 20) | os.minor(st.st_rdev)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--transport", choices=["ringbuf", "perf", "ringbuf classic"], action="append",
                    help="aether-rec setups to measure (repeatable; default: all three; 'classic': the "
                         "classic syscall tracepoints instead of raw_syscalls, storm only)")
    ap.add_argument("--dio-count", type=int, default=20000, help="4 KiB direct I/Os per dio row")
    ap.add_argument("--storm-records", type=int, default=2_000_000,
                    help="dd records in the storm (2 syscalls each); larger shows how the offline "
                         "comparison scales once start-up costs are amortised")
    ap.add_argument("--loop-ios", type=int, default=524288, help="4 KiB reads of the loop-read row")
    ap.add_argument("--only", choices=["storm", "dio-write", "dio-read", "loop-read"], action="append",
                    help="run only these workloads (repeatable)")
    ap.add_argument("--dir", default=str(ROOT), help="directory on a real block device for dio rows")
    ap.add_argument("--no-offline", action="store_true", help="skip the offline peers on the storm files")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_recorder: needs root (it attaches BPF programs and perf tracepoints)")
    if shutil.which("perf") is None:
        sys.exit("bench_recorder: perf not found: bash scripts/setup.sh installs linux-perf")
    work = Path(tempfile.mkdtemp(prefix="aether-bench-", dir=args.dir))
    st = os.stat(work)
    dev = (os.major(st.st_dev) << 20) | os.minor(st.st_dev)  # the kernel's dev_t, as block events carry
    dio = work / "dio.dat"
    n = args.dio_count
    # name: (argv, syscalls dd makes, block requests, block layer traced)
    workloads = {
        "storm": (["dd", "if=/dev/zero", "of=/dev/null", "bs=512", f"count={args.storm_records}"],
                  2 * args.storm_records, 0, False),
        "dio-write": (["dd", "if=/dev/zero", f"of={dio}", "bs=4k", f"count={n}", "oflag=direct"],
                      0, n, True),
        "dio-read": (["dd", f"if={dio}", "of=/dev/null", "bs=4k", f"count={n}", "iflag=direct"],
                     0, n, True),
    }
    devs = {"loop-read": dev}
    loop: tuple[str, Path] | None = None
    if not args.only or "loop-read" in args.only:
        loop, loop_dev = make_loop(args.loop_ios)
        devs["loop-read"] = loop_dev
        fio = ["fio", "--name=r", f"--filename={loop[0]}", "--direct=1", "--rw=randread", "--bs=4k",
               "--ioengine=io_uring", "--iodepth=32", f"--io_size={4096 * args.loop_ios}",
               "--randrepeat=0", "--norandommap"]
        workloads["loop-read"] = (["sh", "-c", 'exec "$@" 1>&2', "fio", *fio], 0, args.loop_ios, True)
    if args.only:
        workloads = {k: v for k, v in workloads.items() if k in args.only}
    transports = args.transport or ["ringbuf", "perf", "ringbuf classic"]
    results: dict[tuple[str, str], list[Run]] = {}
    offline: dict[str, list[tuple[float, float]]] = {}
    try:
        subprocess.run(["dd", "if=/dev/zero", f"of={dio}", "bs=4k", f"count={n}"], check=True,
                       capture_output=True)
        for rep in range(args.repeat):
            for name, (argv, _nsys, _nblk, block) in workloads.items():
                print(f"[{rep + 1}/{args.repeat}] {name}", file=sys.stderr)
                aio, pdata = work / f"{name}.aio", work / f"{name}.perf.data"
                results.setdefault((name, "untraced"), []).append(run_untraced(argv))
                for tr in transports:  # the first transport's storm capture feeds the offline rows
                    if block and tr.endswith("classic"):
                        continue  # no syscall hooks in the block rows
                    out = aio if tr == transports[0] else work / f"{name}-{tr.replace(' ', '-')}.aio"
                    run = run_aether(argv, out, tr, block, devs.get(name, dev))
                    results.setdefault((name, f"aether-rec {tr}"), []).append(run)
                results.setdefault((name, "perf record -z"), []).append(
                    run_perf(argv, pdata, block, devs.get(name, dev)))
                if name == "storm" and not args.no_offline:
                    for k, v in offline_peers(aio, pdata, work).items():
                        offline.setdefault(k, []).append(v)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if loop is not None:
            subprocess.run(["losetup", "-d", loop[0]], check=False)
            loop[1].unlink(missing_ok=True)
    med = statistics.median
    print(f"\nRecorder benchmark, median of {args.repeat} runs, {today()}, {NCPU} CPUs, kernel "
          f"{os.uname().release} (bench/bench_recorder.py)")
    print(f"Same events for both tracers (storm: syscall read/write; dio: block layer), same buffer: "
          f"{BUFFER_BYTES >> 20} MiB (aether-rec ringbuf --buffer-pages {RING_PAGES}; perf buffers and "
          f"perf record -m {PER_CPU_PAGES} per CPU)")
    hdr = (f"{'workload':<10} {'setup':<25} {'time s':>7} {'x untraced':>10} {'syscalls captured':>21} "
           f"{'block I/Os':>13} {'missing':>9} {'lost':>7} {'B per I/O':>9} {'CPU s':>6} {'tree MB':>8} "
           f"{'cg MB':>6} {'idle MB':>7} {'steady MB':>9}")
    print(hdr)
    print("-" * len(hdr))
    for name, (_argv, nsys, nblk, _block) in workloads.items():
        base = med(r.workload_s for r in results[(name, "untraced")])
        for setup in ("untraced", *(f"aether-rec {tr}" for tr in transports), "perf record -z"):
            if (name, setup) not in results:
                continue
            rs = results[(name, setup)]
            t = med(r.workload_s for r in rs)
            if setup == "untraced":
                print(f"{name:<10} {setup:<25} {t:>7.2f} {1.0:>10.2f}")
                continue
            cap = int(med(r.captured for r in rs))
            blk = int(med(r.block for r in rs))
            missing = int(med(max(0, nsys - r.captured) + max(0, nblk - r.block) for r in rs))
            lost = "-" if setup.startswith("perf") else f"{int(med(r.lost for r in rs)):,}"
            print(f"{name:<10} {setup:<25} {t:>7.2f} {t / base:>10.2f} {f'{cap:,}/{nsys:,}':>21} "
                  f"{f'{blk:,}/{nblk:,}':>13} {missing:>9,} {lost:>7} "
                  f"{med(r.file_bytes for r in rs) / (nsys + nblk):>9.2f} "
                  f"{med(r.cpu_s for r in rs):>6.2f} {med(r.peak_mb for r in rs):>8.0f} "
                  f"{med(r.cgroup_mb for r in rs):>6.0f} {med(r.idle_mb for r in rs):>7.0f} "
                  f"{med(r.steady_mb for r in rs):>9.0f}")
    if "storm" in workloads:
        tr0 = f"aether-rec {transports[0]}"
        a = med(r.workload_s for r in results[("storm", tr0)])
        p = med(r.workload_s for r in results[("storm", "perf record -z")])
        print(f"\nstorm under {tr0} / under perf record -z: {a / p:.2f} (issue 13 target <= 0.5)")
    if "loop-read" in workloads:
        base = med(r.workload_s for r in results[("loop-read", "untraced")])
        for setup in (*(f"aether-rec {tr}" for tr in transports if "classic" not in tr), "perf record -z"):
            t = med(r.workload_s for r in results[("loop-read", setup)])
            print(f"loop-read under {setup}: {t / base - 1:+.1%} time against untraced "
                  f"({args.loop_ios / base:,.0f} IOPS untraced; issue 13 target <= +5 %)")
    if offline:
        print(f"\nOffline, storm files ({2 * args.storm_records:,} I/Os), the same latency percentiles "
              f"(p50/p90/p99/p99.9 per op), whole process trees, median of {args.repeat}:")
        base_s = med(x[0] for x in offline["aether-rec stats"])
        for k, xs in offline.items():
            secs, mb = med(x[0] for x in xs), med(x[1] for x in xs)
            print(f"  {k:<30} {secs:>7.2f} s {mb:>7.0f} MB   {secs / base_s:>6.2f}x aether-rec stats' time")


if __name__ == "__main__":
    main()
