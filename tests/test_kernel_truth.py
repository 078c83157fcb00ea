"""Is the capture the truth? What the recorder claims, checked against tools that share no
code with it: fio's own per-I/O logs, the kernel's /proc/diskstats, raw ftrace, perf, and
the files' sizes on disk.

Each test records a real workload with ``record -- CMD`` (the probes are attached before
CMD starts, so nothing of CMD's I/O can fall before them) and compares.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from kernel_util import (  # noqa: F401 - kernel: the fixture
    block_dir,
    capture_info,
    kernel,
    layer_code,
    load,
    op_code,
    rec,
)

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel")]

SYSCALL, BLOCK, URING = layer_code("syscall"), layer_code("block"), layer_code("io_uring")


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed (scripts/setup.sh installs it)")
    return path


@pytest.fixture
def disk_dir(tmp_path: Path) -> Path:
    got = block_dir(tmp_path)
    if got is None:
        pytest.skip("no writable directory on a block device")
    return got[0]


def record(out: Path, *cmd: str, extra: tuple[str, ...] = (), timeout: float = 240) -> dict[str, Any]:
    r = rec(["record", "-o", str(out), "--force", *extra, "--", *cmd], timeout=timeout)
    assert r.rc == 0, r.stderr
    return {"stderr": r.stderr}


def fio_log(prefix: Path, kind: str) -> np.ndarray:
    """fio's per-I/O latency log (write_lat_log with log_avg_msec=0): rows of
    (time ms, latency ns, direction 0 read/1 write, block size, offset)."""
    files = sorted(prefix.parent.glob(f"{prefix.name}_{kind}*.log"))
    assert files, f"no fio {kind} log under {prefix.parent}"
    rows = [np.loadtxt(f, delimiter=",", dtype=np.int64, ndmin=2) for f in files]
    return np.concatenate(rows)


def fio(disk: Path, name: str, engine: str, depth: int, seconds: float, rw: str = "randrw") -> list[str]:
    prefix = disk / name
    return [
        need("fio"), f"--name={name}", f"--filename={disk / (name + '.dat')}", "--size=32M",
        f"--ioengine={engine}", f"--iodepth={depth}", "--direct=1", f"--rw={rw}", "--bs=4k",
        f"--runtime={seconds}", "--time_based=1", "--norandommap=1", "--randrepeat=0",
        f"--write_lat_log={prefix}", "--log_avg_msec=0", "--per_job_logs=0", "--output=/dev/null",
    ]


@pytest.mark.parametrize(
    ("engine", "depth"), [("io_uring", 8), ("io_uring", 32), ("libaio", 8), ("psync", 1)]
)
def test_every_fio_io_is_in_the_capture(tmp_path: Path, disk_dir: Path, engine: str, depth: int) -> None:
    """fio's per-I/O log is the oracle: as many I/Os of each direction in the capture's
    syscall (psync) or io_uring layer, latencies at most fio's (fio measures around the
    kernel's work from user space), and block requests linked to the call that issued
    them."""
    out = tmp_path / "fio.aio"
    got_dev = block_dir(tmp_path)
    assert got_dev is not None
    before = diskstats(got_dev[2])
    record(out, *fio(disk_dir, "t", engine, depth, 3))
    after = diskstats(got_dev[2])
    clat = fio_log(disk_dir / "t", "clat")
    cap, cols = load(out)
    # the recorder's footer counts every event the file holds
    assert capture_info(out)["stats"]["events"] == cap.n_events == len(cols["ts"])
    n_fio = {d: int((clat[:, 2] == d).sum()) for d in (0, 1)}
    assert n_fio[0] > 500 and n_fio[1] > 500
    dat = str(disk_dir / "t.dat")
    path = np.array(cols["path"], dtype=object)
    on_file = path == dat
    blk = (cols["layer"] == BLOCK) & (cols["bytes"] == 4096)
    if engine == "io_uring":
        mine = (cols["layer"] == URING) & on_file
        got = {0: int((mine & (cols["op"] == op_code("read"))).sum()),
               1: int((mine & (cols["op"] == op_code("write"))).sum())}
        # >= 99.9 % of fio's I/Os; a few more are fine (fio's layout/prefill I/O)
        for d in (0, 1):
            assert got[d] >= n_fio[d] * 0.999, (d, got, n_fio)
        ours = np.sort(cols["lat"][mine])
        theirs = np.sort(clat[:, 1])
        for q in (0.5, 0.9, 0.99):
            o, t = np.quantile(ours, q), np.quantile(theirs, q)
            # fio's clat includes reaping the completion in user space: ours may be lower,
            # never higher (beyond noise), and within 5 % at the median
            assert o <= t * 1.05, (q, o, t)
        # From below, the kernel's own accounting: /proc/diskstats sums each request's time
        # from its start to its completion, and an io_uring request spans its block request,
        # so our mean is at least the disk's mean time per I/O (fio's clat is no floor: it
        # ends when fio reaps, 1 % after the kernel posts on a quiet machine, 40 % and more
        # when the machine is slow or fio reaps in batches at depth 32).
        d = [a - b for a, b in zip(after, before)]
        disk_mean_ns = (d[3] + d[7]) * 1e6 / max(1, d[0] + d[4])  # read + write ms over I/Os
        assert float(ours.mean()) >= 0.9 * disk_mean_ns, (float(ours.mean()), disk_mean_ns)
    elif engine == "psync":
        mine = (cols["layer"] == SYSCALL) & on_file
        got = {0: int((mine & (cols["op"] == op_code("pread"))).sum()),
               1: int((mine & (cols["op"] == op_code("pwrite"))).sum())}
        assert got == n_fio, (got, n_fio)
        # the block request of each direct I/O is linked to its syscall: same tid, the
        # link is that syscall's start time, and it carries the file's path
        sc = set(zip(cols["tid"][mine].tolist(), cols["ts"][mine].tolist()))
        linked = blk & (cols["link"] != 0)
        assert linked.sum() >= 0.99 * blk.sum() and blk.sum() >= sum(n_fio.values()) * 0.99
        pairs = list(zip(cols["tid"][linked].tolist(), cols["link"][linked].tolist()))
        assert sum(p in sc for p in pairs) >= 0.99 * len(pairs)
        assert (path[linked] == dat).mean() >= 0.99
    else:  # libaio: io_submit recorded, the block requests linked to it
        subs = (cols["layer"] == SYSCALL) & (cols["op"] == op_code("io_submit"))
        assert int(cols["result"][subs].clip(min=0).sum()) >= sum(n_fio.values())
        sub_keys = set(zip(cols["tid"][subs].tolist(), cols["ts"][subs].tolist()))
        linked = blk & (cols["link"] != 0)
        assert linked.sum() >= 0.99 * blk.sum()
        pairs = list(zip(cols["tid"][linked].tolist(), cols["link"][linked].tolist()))
        assert sum(p in sub_keys for p in pairs) >= 0.99 * len(pairs)


def diskstats(dev: str) -> list[int]:
    for line in Path("/proc/diskstats").read_text().splitlines():
        f = line.split()
        if f[2] == dev:
            return [int(x) for x in f[3:]]
    raise AssertionError(f"{dev} not in /proc/diskstats")


def test_flushes_are_events_of_the_process_that_asked(tmp_path: Path) -> None:
    """dd conv=fdatasync N times under a process filter: the disk's flush count in
    /proc/diskstats (the kernel's own) equals the flush events, each attributed to dd and
    linked to its fdatasync; no flush is reported as a loss."""
    got = block_dir(tmp_path)
    if got is None:
        pytest.skip("no writable directory on a block device")
    d, _dev, name = got
    if Path(f"/sys/block/{name}/queue/write_cache").read_text().strip() != "write back":
        pytest.skip(f"{name} has no volatile write cache: the kernel sends it no flushes")
    n = 40
    dd = f"dd if=/dev/zero of={d}/f bs=4k count=1 conv=fdatasync 2>/dev/null"
    script = f"for i in $(seq {n}); do {dd}; done"
    before = diskstats(name)
    out = tmp_path / "flush.aio"
    record(out, "sh", "-c", script)
    after = diskstats(name)
    cap, cols = load(out)
    flushes_done = after[15] - before[15]  # the 16th statistic: flush requests completed
    fl = (cols["layer"] == BLOCK) & (cols["op"] == op_code("flush"))
    comm = np.array(cols["comm"], dtype=object)
    assert fl.sum() >= n
    assert fl.sum() <= flushes_done  # other processes' flushes may be in diskstats, not ours
    assert (comm[fl] == "dd").all()
    fds = (cols["layer"] == SYSCALL) & (cols["op"] == op_code("fdatasync"))
    sync_keys = set(zip(cols["tid"][fds].tolist(), cols["ts"][fds].tolist()))
    assert all(k in sync_keys for k in zip(cols["tid"][fl].tolist(), cols["link"][fl].tolist()))
    # under a process filter, every block request in the capture is one the traced processes
    # made (none of another task that merely got dispatched from dd's context: the
    # journal's commits, other processes' writeback), and a linked one is linked to one of
    # their recorded syscalls (discards of a truncating open are dd's but unlinked: open
    # is not an I/O call)
    blk = cols["layer"] == BLOCK
    sc = cols["layer"] == SYSCALL
    assert blk.sum() >= 2 * n
    assert set(cols["pid"][blk].tolist()) <= set(cols["pid"][sc].tolist())
    calls = set(zip(cols["tid"][sc].tolist(), cols["ts"][sc].tolist()))
    linked = blk & (cols["link"] != 0)
    assert linked.sum() >= 2 * n
    assert all(k in calls for k in zip(cols["tid"][linked].tolist(), cols["link"][linked].tolist()))
    # nothing about flushes is a loss
    assert cap.lost == 0, cap.losses()
    r = rec(["stats", str(out)])
    assert r.rc == 0 and "LOST" not in r.stdout, r.stdout


def perf_counts(cmd: list[str]) -> dict[str, int]:
    events = "block:block_rq_issue,block:block_rq_complete,syscalls:sys_enter_pread64"
    p = subprocess.run([need("perf"), "stat", "-x,", "-a", "-e", events, "--", *cmd],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    out: dict[str, int] = {}
    for line in p.stderr.splitlines():
        f = line.split(",")
        if len(f) > 2 and f[2].startswith(("block:", "syscalls:")):
            out[f[2]] = int(f[0]) if f[0].isdigit() else 0
    return out


def test_other_tracers_keep_working_while_we_record(tmp_path: Path, disk_dir: Path) -> None:
    """perf stat counts the same tracepoint events with and without aether-rec recording
    (a probe returning 0 would make the kernel drop them for perf)."""
    work = [need("dd"), f"of={disk_dir}/p.dat", "if=/dev/zero", "bs=4k", "count=2000", "oflag=direct"]
    reads = [need("dd"), f"if={disk_dir}/p.dat", "of=/dev/null", "bs=4k", "count=2000", "iflag=direct"]
    subprocess.run(work, check=True, capture_output=True)
    alone = perf_counts(reads)
    out = tmp_path / "bg.aio"
    proc = subprocess.Popen(
        [*rec_cmd(), "record", "-o", str(out), "--force"], stderr=subprocess.PIPE, text=True
    )
    try:
        wait_attached(proc)
        together = perf_counts(reads)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    for k, v in alone.items():
        assert v > 0, alone
        assert abs(together[k] - v) <= max(2, 0.01 * v), (k, alone, together)


def rec_cmd() -> list[str]:
    from kernel_util import CLI

    return list(CLI)


def wait_attached(proc: subprocess.Popen[str], timeout: float = 120) -> None:
    """Until the recorder says its probes are attached (its first stderr line of the
    recording) - robust to a slow, loaded machine."""
    assert proc.stderr is not None
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        line = proc.stderr.readline()
        if not line:
            raise AssertionError("recorder exited before attaching")
        if "recording" in line:
            return
    raise AssertionError("recorder did not attach in time")


def make_tree(root: Path, n: int) -> dict[str, int]:
    rng = np.random.default_rng(7)
    sizes: dict[str, int] = {}
    for i in range(n):
        d = root / f"d{i % 97}"
        d.mkdir(parents=True, exist_ok=True)
        f = d / f"f{i}.bin"
        size = int(rng.integers(1, 12_000))
        f.write_bytes(rng.integers(0, 255, size, dtype=np.uint8).tobytes())
        sizes[str(f)] = size
    return sizes


def drop_caches() -> None:
    subprocess.run(["sync"], check=True)
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def test_paths_of_files_opened_and_closed_quickly(tmp_path: Path, disk_dir: Path) -> None:
    """tar of a 10,000-file tree after dropping the caches, then a cat per file: the bytes
    read per path equal the files' sizes on disk (>= 99.9 % of all bytes right, every
    cat right)."""
    tree = disk_dir / "tree"
    sizes = make_tree(tree, 10_000)
    drop_caches()
    out = tmp_path / "tar.aio"
    record(out, need("tar"), "-cf", str(tmp_path / "x.tar"), "-C", str(disk_dir), "tree")
    _, cols = load(out)
    reads = (cols["layer"] == SYSCALL) & (cols["op"] == op_code("read")) & (cols["result"] > 0)
    per: dict[str, int] = {}
    for p, n in zip(np.array(cols["path"], dtype=object)[reads].tolist(), cols["result"][reads].tolist()):
        per[p] = per.get(p, 0) + n
    right = sum(min(per.get(p, 0), s) for p, s in sizes.items())
    assert right >= 0.999 * sum(sizes.values()), (right, sum(sizes.values()))
    wrong = sum(v for p, v in per.items() if p.startswith(str(tree)) and p not in sizes)
    assert wrong == 0

    files = sorted(sizes)[:300]
    listing = tmp_path / "list"
    listing.write_text("\n".join(files) + "\n")
    out2 = tmp_path / "cat.aio"
    record(out2, "sh", "-c", f"while read f; do cat \"$f\" > /dev/null; done < {listing}")
    _, c2 = load(out2)
    assert not [x for x in capture_info(out2)["losses"] if x.kind == "names"]  # no fd record dropped
    reads = (c2["layer"] == SYSCALL) & (c2["op"] == op_code("read")) & (c2["result"] > 0)
    comm = np.array(c2["comm"], dtype=object)
    per = {}
    for p, n in zip(np.array(c2["path"], dtype=object)[reads & (comm == "cat")].tolist(),
                    c2["result"][reads & (comm == "cat")].tolist()):
        per[p] = per.get(p, 0) + n
    assert {p: per.get(p, 0) for p in files} == {p: sizes[p] for p in files}


def test_exited_processes_are_forgotten_and_named_until_they_exit(tmp_path: Path) -> None:
    """60 cats, each reading its own file, then a pause longer than the fd table's horizon and
    one more I/O: every cat's reads are named after its file (nothing forgotten too early),
    and the footer says the 60 cats were dropped from memory after their exit (the kernel's
    exit records reached the table); the recorder holds a handful of processes at the end."""
    from aether_rec.recorder.fdtable import HORIZON_NS

    files = []
    for i in range(60):
        f = tmp_path / f"f{i}"
        f.write_bytes(b"x" * (100 + i))
        files.append(str(f))
    script = "; ".join(f"cat {f} > /dev/null" for f in files)
    script += f"; sleep {HORIZON_NS / 1e9 + 1.5:.1f}; cat {files[0]} > /dev/null"
    out = tmp_path / "exit.aio"
    record(out, "sh", "-c", script)
    _, cols = load(out)
    reads = (cols["layer"] == SYSCALL) & (cols["op"] == op_code("read")) & (cols["result"] > 0)
    reads &= np.array(cols["comm"], dtype=object) == "cat"
    per: dict[str, int] = {}
    for p, n in zip(np.array(cols["path"], dtype=object)[reads].tolist(), cols["result"][reads].tolist()):
        per[p] = per.get(p, 0) + n
    want = {p: (100 + i) * (2 if i == 0 else 1) for i, p in enumerate(files)}  # f0 is read twice
    assert {p: per.get(p, 0) for p in files} == want
    names = capture_info(out)["stats"]["names"]
    assert names["processes_forgotten"] >= 60, names  # the cats (and the sleep)
    assert names["processes_held"] <= 8, names


class FtracePageCache:
    """Pages the kernel adds to the page cache for one inode, as ftrace sees them (a private
    tracefs instance on filemap:mm_filemap_add_to_page_cache)."""

    def __init__(self, ino: int) -> None:
        from aether_rec.recorder.tracefs import ensure_tracefs

        root, _ = ensure_tracefs()
        self.dir = Path(root) / "instances" / f"aether-pc-{os.getpid()}"
        self.dir.mkdir()
        (self.dir / "buffer_size_kb").write_text("16384\n")
        self.ev = self.dir / "events" / "filemap" / "mm_filemap_add_to_page_cache"
        (self.ev / "filter").write_text(f"i_ino == {ino}\n")
        (self.ev / "enable").write_text("1\n")

    def pages(self) -> int:
        (self.dir / "tracing_on").write_text("0\n")
        n = 0
        for line in (self.dir / "trace").read_text().splitlines():
            m = re.search(r"order=(\d+)", line)
            if "mm_filemap_add_to_page_cache" in line:
                n += 1 << int(m.group(1)) if m else 1
        (self.ev / "enable").write_text("0\n")
        self.dir.rmdir()
        return n


def test_page_cache_misses_per_read(tmp_path: Path, disk_dir: Path) -> None:
    """A 256 MiB file read after dropping the caches: >= 99 % of its pages reported
    missing. Read again: the misses are exactly the pages ftrace saw the kernel add back for
    that file. (All hits is what an idle machine gives; here the kernel evicted 1-11 % of
    the file between the two reads in some runs, and the capture said so exactly.)"""
    f = disk_dir / "big.dat"
    with open(f, "wb") as fh:
        for _ in range(16):
            fh.write(os.urandom(16 << 20))
    pages = (256 << 20) // 4096
    drop_caches()
    out = tmp_path / "cold.aio"
    record(out, need("dd"), f"if={f}", "of=/dev/null", "bs=128k")
    _, cold = load(out)
    on = (cold["layer"] == SYSCALL) & (np.array(cold["path"], dtype=object) == str(f))
    assert int(cold["pages_missed"][on].sum()) >= 0.99 * pages
    out = tmp_path / "warm.aio"
    oracle = FtracePageCache(os.stat(f).st_ino)
    record(out, need("dd"), f"if={f}", "of=/dev/null", "bs=128k")
    added = oracle.pages()
    _, warm = load(out)
    on = (warm["layer"] == SYSCALL) & (np.array(warm["path"], dtype=object) == str(f))
    assert int(warm["result"][on].clip(min=0).sum()) == 256 << 20
    missed = int(warm["pages_missed"][on].sum())
    assert missed == added, (missed, added)


def test_fd_kinds_and_storage_first_stats(tmp_path: Path) -> None:
    """Reads of a pipe, a terminal-less /dev/zero and a file are told apart; stats shows
    storage I/O and sums the rest on one line."""
    f = tmp_path / "k.dat"
    f.write_bytes(b"k" * 65536)
    out = tmp_path / "kinds.aio"
    record(out, "sh", "-c", f"cat {f} | cat > /dev/null; head -c 65536 /dev/zero > /dev/null")
    _, cols = load(out)
    from aether_rec.schema import FD_KIND_CODE

    path = np.array(cols["path"], dtype=object)
    kind = cols["fdkind"]
    sc = cols["layer"] == SYSCALL
    assert (kind[sc & (path == str(f))] == FD_KIND_CODE["file"]).all()
    assert (kind[sc & (path == "/dev/zero")] == FD_KIND_CODE["chardev"]).all()
    assert (kind[sc & (cols["op"] == op_code("read")) & (path != str(f))] != FD_KIND_CODE["file"]).any()
    assert (kind[sc] == FD_KIND_CODE["pipe"]).any()
    r = rec(["stats", str(out)])
    assert r.rc == 0
    assert re.search(r"not storage", r.stdout), r.stdout


class Ftrace:
    """A private tracefs instance recording block_rq_complete of one disk with the
    monotonic clock: the kernel's own account, read as text, sharing nothing with us."""

    def __init__(self, dev: int) -> None:
        from aether_rec.recorder.tracefs import ensure_tracefs

        root, _ = ensure_tracefs()
        self.dir = Path(root) / "instances" / f"aether-test-{os.getpid()}"
        self.dir.mkdir()
        (self.dir / "trace_clock").write_text("mono\n")
        (self.dir / "buffer_size_kb").write_text("65536\n")
        ev = self.dir / "events" / "block" / "block_rq_complete"
        major, minor = dev >> 20, dev & 0xFFFFF
        (ev / "filter").write_text(f"dev == {(major << 20) | minor} && nr_sector > 0\n")
        (ev / "enable").write_text("1\n")

    def completions(self) -> list[tuple[float, int]]:
        """(time s, sector) of every completion traced."""
        (self.dir / "tracing_on").write_text("0\n")
        out = []
        pat = re.compile(r"\s(\d+\.\d+): block_rq_complete: \d+,\d+ \S+ \(\S*\) (\d+) \+ (\d+)")
        for line in (self.dir / "trace").read_text().splitlines():
            m = pat.search(line)
            if m:
                out.append((float(m.group(1)), int(m.group(2))))
        return out

    def close(self) -> None:
        (self.dir / "events" / "block" / "block_rq_complete" / "enable").write_text("0\n")
        self.dir.rmdir()


MINIMAL_COUNTER = r"""
BPF_ARRAY(times, u64, 1048576);
BPF_ARRAY(sectors, u64, 1048576);
BPF_ARRAY(next, u64, 1);
RAW_TRACEPOINT_PROBE(block_rq_complete)
{
    if (!(u32)ctx->args[2])
        return 0;
    int z = 0;
    u64 *i = next.lookup(&z);
    if (!i)
        return 0;
    int k = __sync_fetch_and_add(i, 1) & 1048575;
    u64 now = bpf_ktime_get_ns(), sector = 0;
    bpf_probe_read_kernel(&sector, 8, (char *)ctx->args[0] + SECTOR_OFF);
    times.update(&k, &now);
    sectors.update(&k, &sector);
    return 0;
}
"""


def minimal_counter() -> Any:
    """Ten lines of BPF, attached here with bcc, sharing no code with the recorder: the
    time and sector of every block completion with bytes."""
    from aether_rec.recorder.bccload import load_bcc
    from aether_rec.recorder.btf import BTF
    from aether_rec.recorder.headers import apply_headers, find_headers

    apply_headers(find_headers())
    off, _ = BTF.load().member("request", "__sector")
    bcc = load_bcc().module
    return bcc.BPF(text=MINIMAL_COUNTER, cflags=[f"-DSECTOR_OFF={off}"])


def unmatched(theirs: list[tuple[int, int]], ours: dict[int, list[int]], tol_ns: int) -> int:
    """How many (time ns, sector) of theirs have no completion of ours of that sector
    within tol_ns."""
    n = 0
    for t, s in theirs:
        if not any(abs(e - t) <= tol_ns for e in ours.get(s, ())):
            n += 1
    return n


@pytest.mark.parametrize("engine", ["libaio", "io_uring"])
def test_no_block_completion_is_missing(tmp_path: Path, engine: str) -> None:
    """fio at queue depth 8, recorded system-wide, against two oracles that share no code
    with the recorder. A minimal raw-tracepoint counter (above): inside the recording
    window every completion it saw is in the capture, same sector, same moment, none
    missing. ftrace (a private tracefs instance): at most 0.05 % missing beyond what the
    capture counts as lost. ftrace is the noisier oracle: its ring buffer stores time
    deltas, so events written while an interrupt nests in the tracer come out shifted
    (batches of 8 moved by 0.1-0.3 ms were seen), and between it and the minimal counter
    alone, without the recorder, 1-14 of ~200,000 completions disagree either way."""
    got = block_dir(tmp_path)
    if got is None:
        pytest.skip("no writable directory on a block device")
    d, dev, _name = got
    counter = minimal_counter()
    ft = Ftrace(dev)
    out = tmp_path / "qd8.aio"
    try:
        proc = subprocess.Popen([*rec_cmd(), "record", "-o", str(out), "--force", "--layers", "block"],
                                stderr=subprocess.PIPE, text=True)
        try:
            wait_attached(proc)
            subprocess.run(fio(d, "q", engine, 8, 4, rw="randwrite"), check=True, timeout=120)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
        traced = [(int(t * 1e9), s) for t, s in ft.completions()]
    finally:
        ft.close()
    n = min(int(counter["next"][0].value), 1 << 20)
    seen = list(zip([int(counter["times"][i].value) for i in range(n)],
                    [int(counter["sectors"][i].value) for i in range(n)]))
    counter.cleanup()
    cap, cols = load(out)
    blk = (cols["layer"] == BLOCK) & (cols["dev"] == dev) & (cols["bytes"] > 0)
    ends = (cols["ts"][blk] + cols["lat"][blk]).astype(np.int64)
    lo, hi = int(ends.min()) + 200_000_000, int(ends.max()) - 200_000_000  # away from the edges
    ours = _by_sector(list(zip(ends.tolist(), (cols["offset"][blk] // 512).tolist())))
    info = capture_info(out)
    counted = sum(x.count for x in info["losses"] if x.kind != "unmatched")
    # a request completed in pieces is one event of ours, at its first sector; the
    # counter sees each piece (the recorder counts them: block_partial)
    partial = int(info["stats"]["counters"].get("block_partial", 0))
    mine = [(t, s) for t, s in seen if lo <= t <= hi]
    assert len(mine) > 2000, len(mine)
    # both programs run on the same tracepoint one after the other: an interrupt, or the
    # host taking the VM's CPU, between them can part their clocks (0.1 ms was exceeded
    # once in ~10 loaded runs; 10 ms once in CI). Each completion of ours pairs with at
    # most one of the counter's, so a wide tolerance hides nothing: a missing one leaves
    # a counter completion without a partner whatever the tolerance.
    gone = unpaired(mine, ours, 50_000_000)
    nearest = [sorted(ours.get(sec, []), key=lambda e: abs(e - t))[:2] for t, sec in gone[:3]]
    assert len(gone) <= counted + partial, (len(mine), counted, partial, gone[:3], nearest)
    inside = [(t, s) for t, s in traced if lo <= t <= hi]
    missing = unmatched(inside, ours, 5_000_000)
    # ftrace's own disagreement with the minimal counter, in this same run, is its noise
    noise = unmatched(inside, _by_sector(seen), 5_000_000)
    assert missing <= noise + counted + partial + max(2, 0.0001 * len(inside)), (
        missing, noise, counted, partial, len(inside))


def unpaired(theirs: list[tuple[int, int]], ours: dict[int, list[int]],
             tol_ns: int) -> list[tuple[int, int]]:
    """The (time ns, sector) of theirs left without a partner when, sector by sector and
    in time order, each completion of theirs is paired with at most one of ours within
    tol_ns (and each of ours with at most one of theirs)."""
    by_sector = _by_sector(theirs)
    left = []
    for sec, times in by_sector.items():
        mine, j = sorted(ours.get(sec, ())), 0
        for t in sorted(times):
            while j < len(mine) and mine[j] < t - tol_ns:
                j += 1  # one of ours nobody of theirs can pair with any more
            if j < len(mine) and mine[j] <= t + tol_ns:
                j += 1
            else:
                left.append((t, sec))
    return sorted(left)


def _by_sector(events: list[tuple[int, int]]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for t, s in events:
        out.setdefault(s, []).append(t)
    return out
