"""Real-kernel tests: what `aether-rec record` captures matches what a process did.

These need root, bcc and a live kernel; under CI a skip is a failure (tests/conftest.py).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from kernel_util import (
    block_dir,
    capture_info,
    helper,
    helper_doc,
    kernel,  # noqa: F401 - the fixture
    layer_code,
    load,
    op_code,
    rec,
)

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel")]


def _scratch(tmp_path: Path, size: int = 1 << 20) -> Path:
    f = tmp_path / "data.bin"
    f.write_bytes(os.urandom(size))
    return f


@pytest.mark.parametrize("transport", ["perf", "ringbuf"])
def test_exact_syscalls_of_a_helper(tmp_path: Path, transport: str) -> None:
    n_pread, size, n_write, wsize, n_fsync = 37, 4096, 23, 100, 5
    data = _scratch(tmp_path)
    out = tmp_path / "exact.aio"
    r = rec(
        [
            "record",
            "-o",
            str(out),
            "--transport",
            transport,
            "--",
            *helper(
                "exact",
                "--file",
                str(data),
                "--n-pread",
                str(n_pread),
                "--size",
                str(size),
                "--n-write",
                str(n_write),
                "--write-size",
                str(wsize),
                "--n-fsync",
                str(n_fsync),
                "--settle",
                "0.6",
                "--linger",
                "0.8",
            ),
        ]
    )
    assert r.rc == 0, r.stderr
    doc = helper_doc(r.stdout)
    cap, ev = load(out)
    # the fd number may have served Python's start-up before: look inside the helper's window
    window = (ev["ts"] >= doc["t0"]) & (ev["ts"] <= doc["t1"])
    mine = (
        (ev["tid"] == doc["tid"]) & (ev["fd"] == doc["fd"]) & (ev["layer"] == layer_code("syscall")) & window
    )
    ops = ev["op"][mine]
    assert int((ops == op_code("pread")).sum()) == n_pread
    assert int((ops == op_code("write")).sum()) == n_write
    assert int((ops == op_code("fsync")).sum()) == n_fsync
    assert len(ops) == n_pread + n_write + n_fsync  # nothing else on that fd
    pr = mine & (ev["op"] == op_code("pread"))
    assert (ev["bytes"][pr] == size).all() and (ev["result"][pr] == size).all()
    assert sorted(ev["offset"][pr].tolist()) == [i * size for i in range(n_pread)]
    wr = mine & (ev["op"] == op_code("write"))
    assert (ev["bytes"][wr] == wsize).all() and (ev["result"][wr] == wsize).all()
    fs = mine & (ev["op"] == op_code("fsync"))
    assert (ev["result"][fs] == 0).all()
    assert (ev["pid"][mine] == doc["pid"]).all()
    # latencies are real and inside the wall-clock window the helper measured
    ts, lat = ev["ts"][mine].astype(np.int64), ev["lat"][mine].astype(np.int64)
    assert (lat > 0).all()
    assert (ts + lat <= doc["t1"]).all()
    assert int(lat.sum()) <= doc["t1"] - doc["t0"]
    # and nothing of that thread is missing: every syscall it made in the window is there
    sc = ev["layer"] == layer_code("syscall")
    assert int(((ev["tid"] == doc["tid"]) & window & sc & (ev["fd"] != doc["fd"])).sum()) == 0
    # fd -> path resolved from /proc while the helper lingered
    paths = set(ev["path"][mine].tolist())
    assert paths == {str(data)}
    info = capture_info(out)
    assert any(r["path"] == str(data) and r["fd"] == doc["fd"] for r in info["fds"])
    assert any(p["pid"] == doc["pid"] for p in info["procs"])
    assert info["header"]["transport"] == {"perf": "perf_buffer", "ringbuf": "ringbuf"}[transport]
    hooks = {h["hook"] for h in info["header"]["hooks"]}
    assert "raw_tracepoint:sys_enter:pread64" in hooks  # the raw_syscalls path (x86_64)
    assert info["header"]["filters"]["follow_children"] is True
    assert len(info["clock"]) >= 1  # clock mapping at the end


def test_direct_writes_make_block_events_on_the_right_device(tmp_path: Path) -> None:
    where = block_dir(tmp_path)
    assert where is not None, "no writable directory on a block device"
    d, dev, name = where
    try:
        count, size = 12, 4096
        out = tmp_path / "direct.aio"
        target = d / "direct.bin"
        r = rec(
            [
                "record",
                "-o",
                str(out),
                "--",
                *helper(
                    "direct",
                    "--file",
                    str(target),
                    "--count",
                    str(count),
                    "--size",
                    str(size),
                    "--linger",
                    "0.5",
                ),
            ]
        )
        assert r.rc == 0, r.stderr
        doc = helper_doc(r.stdout)
        cap, ev = load(out)
        blk = (ev["layer"] == layer_code("block")) & (ev["pid"] == doc["pid"])
        wr = blk & (ev["op"] == op_code("write")) & (ev["bytes"] == size)
        assert int(wr.sum()) == count, (name, ev["op"][blk], ev["bytes"][blk])
        assert (ev["dev"][wr] == dev).all()
        # each request is linked to the pwrite it was issued for: named after its file
        assert set(ev["path"][wr].tolist()) == {str(target)}
        assert (ev["fd"][wr] == doc["fd"]).all()
        assert (ev["result"][wr] == size).all()
        offs = ev["offset"][wr]
        assert len(set(offs.tolist())) == count and (offs % 512 == 0).all()
        lat, queue = ev["lat"][wr].astype(np.int64), ev["queue"][wr].astype(np.int64)
        assert (lat > 0).all() and (queue >= 0).all() and (queue < lat).all()  # service > 0
        ts = ev["ts"][wr].astype(np.int64)
        assert (ts >= doc["t0"]).all() and (ts + lat <= doc["t1"]).all()
        # the syscall layer saw the same writes, each at least as long as its block I/O
        sc = (
            (ev["layer"] == layer_code("syscall")) & (ev["fd"] == doc["fd"]) & (ev["op"] == op_code("pwrite"))
        )
        assert int(sc.sum()) == count
        assert ev["lat"][sc].astype(np.int64).sum() >= lat.sum()
        starts = dict(zip(ev["ts"][sc].tolist(), (ev["ts"][sc] + ev["lat"][sc]).tolist()))
        for link, b_ts, b_end in zip(ev["link"][wr].tolist(), ts.tolist(), (ts + lat).tolist()):
            assert link in starts and link <= b_ts and b_end <= starts[link]  # nested in its syscall
        assert (ev["flags"][sc] & (1 << 5)).all()  # O_DIRECT, from fdinfo
        info = capture_info(out)
        assert any(x["dev"] == dev and x["name"] == name for x in info["devices"])
    finally:
        if d != tmp_path:
            shutil.rmtree(d, ignore_errors=True)


def test_command_exit_status_and_children(tmp_path: Path) -> None:
    data = _scratch(tmp_path)
    out = tmp_path / "cmd.aio"
    script = f"{' '.join(helper('exact', '--file', str(data), '--n-pread', '9'))}; exit 7"
    r = rec(["record", "-o", str(out), "--", "sh", "-c", script])
    assert r.rc == 7, r.stderr
    doc = helper_doc(r.stdout)
    cap, ev = load(out)
    child = (ev["pid"] == doc["pid"]) & (ev["ts"] >= doc["t0"]) & (ev["ts"] <= doc["t1"])
    assert int(((ev["op"] == op_code("pread")) & child & (ev["fd"] == doc["fd"])).sum()) == 9
    pids = set(ev["pid"].tolist())
    assert doc["pid"] in pids and len(pids) >= 2  # sh and its child python
    assert os.getpid() not in pids


def test_pid_filter_follows_only_that_process(tmp_path: Path) -> None:
    data = _scratch(tmp_path)
    import subprocess

    a = subprocess.Popen(
        helper("loop", "--file", str(data), "--seconds", "20"), stdout=subprocess.PIPE, text=True
    )
    b = subprocess.Popen(
        helper("loop", "--file", str(data), "--seconds", "20"), stdout=subprocess.PIPE, text=True
    )
    try:
        assert a.stdout is not None and b.stdout is not None
        da = helper_doc(a.stdout.readline())
        db = helper_doc(b.stdout.readline())
        out = tmp_path / "pid.aio"
        r = rec(["record", "-o", str(out), "--pid", str(da["pid"]), "--duration", "1.5s"])
        assert r.rc == 0, r.stderr
        cap, ev = load(out)
        assert len(ev["pid"]) > 20
        assert set(ev["pid"].tolist()) == {da["pid"]}
        assert db["pid"] not in set(ev["pid"].tolist())
        info = capture_info(out)
        assert info["header"]["filters"]["pid"] == [da["pid"]]
    finally:
        a.kill()
        b.kill()
        a.wait()
        b.wait()


def test_min_latency_filters_in_the_kernel(tmp_path: Path) -> None:
    data = _scratch(tmp_path)
    out = tmp_path / "slow.aio"
    r = rec(
        [
            "record",
            "-o",
            str(out),
            "--min-latency",
            "10ms",
            "--",
            *helper("slow", "--file", str(data), "--n-fast", "300", "--n-slow", "4", "--sleep-ms", "40"),
        ]
    )
    assert r.rc == 0, r.stderr
    doc = helper_doc(r.stdout)
    cap, ev = load(out)
    assert (ev["lat"] >= 10_000_000).all()
    slow_reads = (ev["pid"] == doc["pid"]) & (ev["fd"] == doc["pipe_fd"]) & (ev["op"] == op_code("read"))
    assert int(slow_reads.sum()) == 4
    assert (ev["lat"][slow_reads] >= 30_000_000).all()
    assert int((ev["fd"] == doc["file_fd"]).sum()) == 0  # the fast preads were dropped
    info = capture_info(out)
    assert info["stats"]["counters"]["below_min_latency"] >= 300
    assert info["header"]["filters"]["min_latency_ns"] == 10_000_000


def test_comm_and_ops_filters(tmp_path: Path) -> None:
    import sys

    data = _scratch(tmp_path)
    out = tmp_path / "ops.aio"
    comm = Path(sys.executable).name[:15]  # the kernel names a task after the file it exec'd
    r = rec(
        [
            "record",
            "-o",
            str(out),
            "--ops",
            "pread,fsync",
            "--comm",
            comm,
            "--",
            *helper("exact", "--file", str(data), "--n-pread", "5", "--n-write", "3", "--n-fsync", "2"),
        ]
    )
    assert r.rc == 0, r.stderr
    doc = helper_doc(r.stdout)
    cap, ev = load(out)
    assert set(ev["op"].tolist()) <= {op_code("pread"), op_code("fsync")}
    mine = (ev["fd"] == doc["fd"]) & (ev["ts"] >= doc["t0"]) & (ev["ts"] <= doc["t1"])
    assert int((mine & (ev["op"] == op_code("pread"))).sum()) == 5
    assert int((mine & (ev["op"] == op_code("fsync"))).sum()) == 2
    assert set(ev["comm"].tolist()) <= {comm}
    assert "block" not in cap.header["layers"]  # no block op selected


def test_stream_to_stdout_is_a_valid_capture(tmp_path: Path) -> None:
    import subprocess

    from kernel_util import CLI

    data = _scratch(tmp_path)
    p = subprocess.run(
        [*CLI, "record", "-o", "-", "--", *helper("exact", "--file", str(data), "--n-pread", "11")],
        capture_output=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr.decode()
    doc = helper_doc(p.stderr.decode())  # with -o -, the command's stdout goes to stderr
    out = tmp_path / "stream.aio"
    out.write_bytes(p.stdout)
    cap, ev = load(out)
    win = (ev["ts"] >= doc["t0"]) & (ev["ts"] <= doc["t1"])
    assert int(((ev["op"] == op_code("pread")) & (ev["fd"] == doc["fd"]) & win).sum()) == 11


def _rmdir_when_empty(cg: Path) -> None:
    """Remove a test's cgroup once the kernel has let its killed processes go (5 s at most)."""
    for _ in range(50):
        try:
            cg.rmdir()
            return
        except OSError:
            time.sleep(0.1)


def test_cgroup_filter(tmp_path: Path) -> None:
    import subprocess

    from aether_rec.recorder.options import cgroup2_root

    root = cgroup2_root()
    assert root is not None, "no cgroup v2 hierarchy mounted"
    cg = root / f"aether-test-{os.getpid()}"
    cg.mkdir()
    data = _scratch(tmp_path)
    inside = subprocess.Popen(helper("loop", "--file", str(data), "--seconds", "20"), stdout=subprocess.PIPE)
    outside = subprocess.Popen(helper("loop", "--file", str(data), "--seconds", "20"), stdout=subprocess.PIPE)
    try:
        (cg / "cgroup.procs").write_text(str(inside.pid))
        out = tmp_path / "cg.aio"
        r = rec(["record", "-o", str(out), "--cgroup", cg.name, "--duration", "1.5s"])
        assert r.rc == 0, r.stderr
        cap, ev = load(out)
        assert len(ev["pid"]) > 20
        assert set(ev["pid"].tolist()) == {inside.pid}
        assert set(ev["cgroup"].tolist()) == {os.stat(cg).st_ino}
        assert cap.header["filters"]["cgroup"] == str(cg)
    finally:
        inside.kill()
        outside.kill()
        inside.wait()
        outside.wait()
        _rmdir_when_empty(cg)


FAULTS = """
import mmap, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
other = os.open(sys.argv[2], os.O_RDONLY)
os.pread(other, 4096, 0)  # the last traced syscall before the page faults
m = mmap.mmap(fd, 0, prot=mmap.PROT_READ)
print(sum(m[i] for i in range(0, len(m), 4096)))
"""


def test_a_syscall_that_ended_links_no_later_block_io(tmp_path: Path) -> None:
    """Block reads that page faults cause run in the thread's context outside any syscall:
    none may be linked to the pread that ended before them. (A syscall slot left in flight
    after its exit, in task storage or in the hash, links the whole mapped file to it.)"""
    where = block_dir(tmp_path)
    assert where is not None, "no writable directory on a block device"
    d = where[0]
    data, other = d / "mapped.bin", d / "other.bin"
    data.write_bytes(os.urandom(8 << 20))
    other.write_bytes(b"x")
    os.sync()
    out = tmp_path / "faults.aio"
    r = rec(["record", "-o", str(out), "--layers", "syscall,block", "--",
             "python3", "-c", FAULTS, str(data), str(other)])
    assert r.rc == 0, r.stderr
    _, ev = load(out)
    mine = np.array(ev["path"], dtype=object) == str(other)
    preads = ev["ts"][mine & (ev["layer"] == layer_code("syscall")) & (ev["op"] == op_code("pread"))]
    assert len(preads) == 1
    block = ev["layer"] == layer_code("block")
    faulted = int(ev["bytes"][block & (ev["op"] == op_code("read"))].sum())
    assert faulted >= 4 << 20  # the faults read the mapped file from the disk
    linked = int(ev["bytes"][block & (ev["link"] == preads[0])].sum())
    assert linked <= 4096, f"{linked} bytes of block reads linked to a pread that had ended"


RENAMES = r'''
import ctypes, os, sys, threading, time
libc = ctypes.CDLL(None, use_errno=True)

def name(n):  # prctl(PR_SET_NAME)
    assert libc.prctl(15, n.encode(), 0, 0, 0) == 0

f = os.open(sys.argv[1], os.O_RDONLY)
def preads(first):
    for i in range(first, first + 10):
        os.pread(f, 4096, i * 4096)

name("aeth-before"); preads(0)            # cached in the thread's slot
time.sleep(0.05)
name("aeth-after"); time.sleep(0.05); preads(10)
go, tid = threading.Event(), []
def worker():
    tid.append(threading.get_native_id())
    name("aeth-w1"); preads(20)
    go.wait(); preads(30)
t = threading.Thread(target=worker); t.start()
while len(tid) == 0: time.sleep(0.01)
time.sleep(0.1)                             # the worker's old name is cached by now
with open(f"/proc/self/task/{tid[0]}/comm", "w") as c:
    c.write("aeth-w2")                      # renamed by another thread
time.sleep(0.05); go.set(); t.join()
time.sleep(0.05)
os.execv("/bin/sh", ["sh", "-c", "exec 3<" + sys.argv[2] + "; sleep 0.05; read -r x <&3"])
'''


def test_an_events_comm_follows_renames_and_exec(tmp_path: Path) -> None:
    """The name each I/O was made under, across the ways a thread's name changes: prctl by
    the thread itself, a write to /proc/PID/task/TID/comm by another thread, and exec.
    With task storage the syscall layer keeps each thread's name in its slot and reads it
    again only after a rename (bpf/syscall.c sc_comm): a cached name that outlived a
    rename fails here. The truth is the script's own order: what it named itself before
    each group of preads (at distinct offsets), and the name exec gives (the file's)."""
    import sys

    data, other = tmp_path / "data.bin", tmp_path / "line.txt"
    data.write_bytes(os.urandom(40 * 4096))
    other.write_text("one line\n")
    script = tmp_path / "renames.py"
    script.write_text(RENAMES)
    out = tmp_path / "renames.aio"
    r = rec(["record", "-o", str(out), "--layers", "syscall", "--",
             sys.executable, str(script), str(data), str(other)])
    assert r.rc == 0, r.stderr
    cap, ev = load(out)
    sc = ev["layer"] == layer_code("syscall")
    mine = sc & (ev["path"] == str(data)) & (ev["op"] == op_code("pread"))
    by_group: dict[int, set[str]] = {}
    for off, comm in zip(ev["offset"][mine].tolist(), ev["comm"][mine].tolist()):
        by_group.setdefault(off // 4096 // 10, set()).add(comm)
    assert by_group == {0: {"aeth-before"}, 1: {"aeth-after"}, 2: {"aeth-w1"}, 3: {"aeth-w2"}}
    assert int(mine.sum()) == 40
    shell = sc & (ev["path"] == str(other)) & (ev["op"] == op_code("read"))
    assert int(shell.sum()) >= 1 and set(ev["comm"][shell].tolist()) == {"sh"}
    cflags = capture_info(out)["header"]["recorder"]["cflags"]
    if "-DAETHER_SC_TASK_STORAGE=1" in cflags:  # the cache is in use wherever task storage is
        assert "-DAETHER_COMM_CACHE=1" in cflags


MOVES = r'''
import os, sys, time
f = os.open(sys.argv[1], os.O_RDONLY)
def preads(first):
    for i in range(first, first + 10):
        os.pread(f, 4096, i * 4096)
def move(cg):
    with open(os.path.join(cg, "cgroup.procs"), "w") as p:
        p.write(str(os.getpid()))
    time.sleep(0.05)
home = sys.argv[4]
preads(0)                       # cached in the thread's slot
move(sys.argv[2]); preads(10)
move(sys.argv[3]); preads(20)
move(home); preads(30)
'''


def test_an_events_cgroup_follows_moves(tmp_path: Path) -> None:
    """The cgroup each I/O was made in, as a process moves between cgroups (v2): with task
    storage the syscall layer keeps each thread's cgroup id in its slot and reads it again
    only after a move (bpf/syscall.c sc_who). The truth: the cgroups' ids are the inode
    numbers of their directories, and the script moves itself between groups of preads."""
    import sys

    from aether_rec.recorder.options import cgroup2_root

    root = cgroup2_root()
    assert root is not None, "no cgroup v2 hierarchy mounted"
    a, b = root / f"aether-move-a-{os.getpid()}", root / f"aether-move-b-{os.getpid()}"
    a.mkdir()
    b.mkdir()
    try:
        (v2,) = [ln for ln in Path("/proc/self/cgroup").read_text().splitlines() if ln.startswith("0::")]
        home = root / v2[3:].lstrip("/")  # where this test runs, and the script goes back to
        data = _scratch(tmp_path, 40 * 4096)
        script = tmp_path / "moves.py"
        script.write_text(MOVES)
        out = tmp_path / "moves.aio"
        r = rec(["record", "-o", str(out), "--layers", "syscall", "--",
                 sys.executable, str(script), str(data), str(a), str(b), str(home)])
        assert r.rc == 0, r.stderr
        cap, ev = load(out)
        mine = (ev["layer"] == layer_code("syscall")) & (ev["path"] == str(data))
        mine &= ev["op"] == op_code("pread")
        by_group: dict[int, set[int]] = {}
        for off, cg in zip(ev["offset"][mine].tolist(), ev["cgroup"][mine].tolist()):
            by_group.setdefault(off // 4096 // 10, set()).add(cg)
        ino = {p: os.stat(p).st_ino for p in (a, b, home)}
        assert by_group == {0: {ino[home]}, 1: {ino[a]}, 2: {ino[b]}, 3: {ino[home]}}
        cflags = capture_info(out)["header"]["recorder"]["cflags"]
        if "-DAETHER_SC_TASK_STORAGE=1" in cflags:
            assert "-DAETHER_CGROUP_CACHE=1" in cflags
    finally:
        for cg in (a, b):
            _rmdir_when_empty(cg)
