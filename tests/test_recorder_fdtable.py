"""FdTable: replaying the kernel's name records into "which file was fd N of pid P at time T".

The records are built here as the kernel's struct aether_name (schema.KERNEL_NAME_DTYPE);
the kernel tests check the same against real programs (tests/test_kernel_truth.py)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from aether_rec.recorder.fdtable import AT_FDCWD, F_DIRECT, FdTable
from aether_rec.schema import FD_KIND_CODE, KERNEL_NAME_DTYPE, NAME_KINDS

KIND = {v: k for k, v in NAME_KINDS.items()}


def rec(ts: int, pid: int, kind: str, fd: int = -1, arg: int = -1, flags: int = 0, path: str = "") -> tuple:
    return (ts, pid, pid, fd, arg, flags, KIND[kind], b"\0\0\0", path.encode())


def recs(*rows: tuple) -> np.ndarray:
    return np.array(list(rows), dtype=KERNEL_NAME_DTYPE)


def test_a_reused_number_is_named_after_the_file_of_the_moment(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text("a")
    b.write_text("b")
    t = FdTable(proc=str(tmp_path / "noproc"))
    # records arrive out of order (per-CPU buffers): sorted by time when replayed
    t.feed(recs(rec(300, 7, "open", 3, AT_FDCWD, 0, str(b)), rec(100, 7, "open", 3, AT_FDCWD, 0, str(a)),
                rec(200, 7, "close", 3)))
    assert t.at(7, 3, 150).path == str(a)
    assert t.at(7, 3, 250).path == ""  # closed in between
    assert t.at(7, 3, 350).path == str(b)
    names, idx = t.lookup(7, 3, np.array([150, 350, 160], dtype=np.uint64))
    assert [names[i].path for i in idx] == [str(a), str(b), str(a)]


def test_relative_paths_resolve_against_the_working_directory_and_dirfd(tmp_path: Path) -> None:
    (tmp_path / "d" / "e").mkdir(parents=True)
    (tmp_path / "d" / "e" / "f").write_text("x")
    t = FdTable(proc=str(tmp_path / "noproc"))
    t.feed(recs(
        rec(10, 5, "chdir", path=str(tmp_path)),
        rec(20, 5, "chdir", path="d"),  # relative to the previous cwd
        rec(30, 5, "open", 4, AT_FDCWD, 0, "e/f"),
        rec(40, 5, "open", 6, AT_FDCWD, 0, "e"),  # a directory fd ...
        rec(50, 5, "open", 8, 6, 0, "./f"),  # ... used as dirfd
        rec(60, 5, "open", 9, AT_FDCWD, 0, "../d/e/../e/f"),
    ))
    want = str(tmp_path / "d" / "e" / "f")
    assert t.at(5, 4, 31).path == want
    assert t.at(5, 8, 51).path == want
    assert t.at(5, 9, 61).path == want
    assert t.at(5, 6, 41).kind == FD_KIND_CODE["dir"]
    assert t.at(5, 4, 31).kind == FD_KIND_CODE["file"]


def test_dup_fork_pipe_socket_and_flags(tmp_path: Path) -> None:
    f = tmp_path / "data"
    f.write_text("x")
    t = FdTable(proc=str(tmp_path / "noproc"))
    t.feed(recs(
        rec(10, 1, "open", 3, AT_FDCWD, os.O_DIRECT | os.O_RDWR, str(f)),
        rec(20, 1, "dup", 10, 3),
        rec(30, 1, "pipe", 4, 5),
        rec(40, 1, "socket", 6),
        rec(50, 1, "fork", -1, 2),
        rec(60, 1, "close", 3),
        rec(70, 2, "close_range", 4, 5),
    ))
    assert t.at(1, 10, 25).path == str(f) and t.at(1, 10, 25).flags & F_DIRECT
    assert t.at(1, 3, 65).path == ""  # closed in the parent ...
    assert t.at(2, 3, 65).path == str(f)  # ... not in the child, which inherited it
    assert t.at(1, 4, 35).kind == FD_KIND_CODE["pipe"] and t.at(1, 5, 35).kind == FD_KIND_CODE["pipe"]
    assert t.at(1, 6, 45).kind == FD_KIND_CODE["socket"]
    assert t.at(2, 4, 75).path == "" and t.at(2, 6, 75).kind == FD_KIND_CODE["socket"]


def test_fds_open_before_recording_come_from_proc(tmp_path: Path) -> None:
    t = FdTable()
    r, w = os.pipe()
    f = open(tmp_path / "old", "wb")  # noqa: SIM115 - kept open while looked up
    try:
        pid = os.getpid()
        assert t.at(pid, f.fileno(), 1).path == str(tmp_path / "old")
        assert t.at(pid, f.fileno(), 1).kind == FD_KIND_CODE["file"]
        assert t.at(pid, r, 1).kind == FD_KIND_CODE["pipe"]
        # a record later in time does not change what the fd was before it
        t.feed(recs(rec(100, pid, "close", f.fileno())))
        assert t.at(pid, f.fileno(), 50).path == str(tmp_path / "old")
        assert t.at(pid, f.fileno(), 150).path == ""
    finally:
        f.close()
        os.close(r)
        os.close(w)


def test_many_reuses_of_one_number_in_one_batch_keep_every_name(tmp_path: Path) -> None:
    """A process that opens and closes 500 files on fd 3 before the recorder reads a
    batch: every I/O in between is named after its own file (a bounded history must not
    forget entries that events of the same batch still need)."""
    t = FdTable(proc=str(tmp_path / "noproc"))
    rows = []
    for i in range(500):
        rows.append(rec(1000 * i + 1, 9, "open", 3, AT_FDCWD, 0, f"/data/f{i}"))
        rows.append(rec(1000 * i + 900, 9, "close", 3))
    t.feed(recs(*rows))
    ts = np.array([1000 * i + 500 for i in range(500)], dtype=np.uint64)
    names, idx = t.lookup(9, 3, ts)
    assert [names[i].path for i in idx] == [f"/data/f{i}" for i in range(500)]


def test_exited_processes_are_forgotten_after_the_horizon(tmp_path: Path) -> None:
    """A host that runs many short processes: each one's fds are kept until HORIZON_NS
    after its main thread's exit record (its last events are still named), then dropped;
    the table holds the living ones only."""
    from aether_rec.recorder.fdtable import HORIZON_NS

    t = FdTable(proc=str(tmp_path / "noproc"))
    s = 1_000_000_000
    rows = []
    for i in range(1000):  # process 100+i: forked at i seconds, opens a file, exits 0.5 s later
        pid = 100 + i
        rows += [rec(i * s, 1, "fork", -1, pid), rec(i * s + 1, pid, "open", 3, AT_FDCWD, 0, f"/d/{i}"),
                 rec(i * s + s // 2, pid, "exit")]
    gone = t.feed(recs(*rows))
    assert len(gone) == 1000 - HORIZON_NS // s - 1 and gone[0] == 100
    assert t.forgotten == len(gone)
    assert len(t) <= HORIZON_NS // s + 2  # the parent and those exited within the horizon
    last = 100 + 999
    assert t.at(last, 3, 999 * s + 2).path == "/d/999"  # still named: within the horizon
    # a forgotten process is not named from memory any more (nor confused with a new one)
    assert t.at(100, 3, 2).path == ""


def test_a_new_process_with_a_recycled_pid_is_not_forgotten(tmp_path: Path) -> None:
    t = FdTable(proc=str(tmp_path / "noproc"))
    s = 1_000_000_000
    t.feed(recs(rec(0, 1, "fork", -1, 5), rec(1, 5, "exit"),
                rec(2 * s, 1, "fork", -1, 5), rec(2 * s + 1, 5, "open", 4, AT_FDCWD, 0, "/new")))
    gone = t.feed(recs(rec(60 * s, 1, "open", 9, AT_FDCWD, 0, "/late")))
    assert gone == []
    assert t.at(5, 4, 3 * s).path == "/new"


def test_the_process_caches_beside_the_table_forget_with_it(tmp_path: Path) -> None:
    """procinfo.Names keeps a procs row and the last fd names per process: dropped with the
    table's entries, so a later process with the same pid is read from /proc afresh."""
    from aether_rec.recorder.procinfo import Names

    n = Names()
    n.fdtable.proc = str(tmp_path / "noproc")
    n.procs[7] = {"pid": 7, "comm": "old"}
    n.procs[8] = {"pid": 8, "comm": "alive"}
    n.fds[7] = {}
    n.feed(recs(rec(1, 7, "exit"), rec(30_000_000_000, 8, "open", 3, AT_FDCWD, 0, "/x")))
    assert 7 not in n.procs and 7 not in n.fds and 8 in n.procs
