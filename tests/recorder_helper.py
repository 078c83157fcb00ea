"""A process that does an exactly known set of I/Os, for the real-kernel recorder tests.

Run as ``python tests/recorder_helper.py ACTION [options]``; it prints one JSON line on
stdout describing what it did (pid, tid, fd, CLOCK_MONOTONIC bounds around the I/O),
which the tests compare with the capture. Only the standard library is used, so it
starts fast and does no I/O of its own between the bounds.
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import sys
import threading
import time


def _emit(doc: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(doc) + "\n")
    sys.stdout.flush()


def exact(a: argparse.Namespace) -> None:
    """N preads of K bytes, M writes of W bytes, F fsyncs on one file."""
    fd = os.open(a.file, os.O_RDWR)
    time.sleep(a.settle)  # fd numbers of start-up files are reused: let their batch go by
    t0 = time.monotonic_ns()
    for i in range(a.n_pread):
        os.pread(fd, a.size, i * a.size)
    buf = b"w" * a.write_size
    for _ in range(a.n_write):
        os.write(fd, buf)
    for _ in range(a.n_fsync):
        os.fsync(fd)
    t1 = time.monotonic_ns()
    _emit({"pid": os.getpid(), "tid": threading.get_native_id(), "fd": fd, "t0": t0, "t1": t1})
    time.sleep(a.linger)  # keep the fd open so the recorder can resolve its path
    os.close(fd)


MARK = 0x5EED0000  # offset of the pread that marks the start and the end of every()


def every(a: argparse.Namespace) -> None:
    """Each I/O syscall the syscall layer traces, once or twice, between two marker preads
    (offset MARK): the test compares them with strace's view of the same process."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(a.file, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    fd2 = os.open(a.file + ".2", os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    r, w = os.pipe()
    os.write(fd, os.urandom(64 * 1024))
    m = mmap.mmap(fd, 8192)
    os.pread(fd, 1, MARK)
    os.lseek(fd, 0, os.SEEK_SET)
    os.read(fd, 100)
    os.write(fd, b"x" * 123)
    os.pread(fd, 50, 4096)
    os.pwrite(fd, b"y" * 77, 8192)
    os.readv(fd, [bytearray(10), bytearray(20)])
    os.writev(fd, [b"a" * 7, b"b" * 9])
    os.preadv(fd, [bytearray(33)], 12288)
    os.pwritev(fd, [b"c" * 44, b"d" * 5], 16384)
    os.preadv(fd, [bytearray(21)], 20480, os.RWF_HIPRI if a.hipri else os.RWF_NOWAIT)
    os.pwritev(fd, [b"e" * 66], 24576, os.RWF_DSYNC)
    # preadv/pwritev themselves (the C library may use the 2 variants for the calls above)
    buf = ctypes.create_string_buffer(b"v" * 55)
    iov = (ctypes.c_uint64 * 2)(ctypes.addressof(buf), 55)
    x86 = os.uname().machine == "x86_64"
    libc.syscall(295 if x86 else 69, fd, iov, 1, ctypes.c_long(28672), 0)  # preadv
    libc.syscall(296 if x86 else 70, fd, iov, 1, ctypes.c_long(32768), 0)  # pwritev
    os.fsync(fd)
    os.fdatasync(fd)
    libc.sync_file_range(fd, ctypes.c_int64(4096), ctypes.c_int64(8192), 2)  # SYNC_FILE_RANGE_WRITE
    os.sendfile(fd2, fd, 1000, 300)
    os.copy_file_range(fd, fd2, 400, 0, 0)
    os.splice(fd, w, 111, offset_src=0)
    os.read(r, 111)
    m[0:4] = b"mmap"
    m.flush()
    libc.syncfs(fd)
    os.sync()
    os.posix_fallocate(fd2, 65536, 4096)
    os.pread(fd, 1, MARK)
    m.close()
    _emit({"pid": os.getpid(), "tid": threading.get_native_id(), "fd": fd, "fd2": fd2, "mark": MARK})
    for x in (fd, fd2, r, w):
        os.close(x)


def direct(a: argparse.Namespace) -> None:
    """C O_DIRECT writes of S bytes at distinct aligned offsets."""
    fd = os.open(a.file, os.O_RDWR | os.O_CREAT | os.O_DIRECT, 0o600)
    buf = mmap.mmap(-1, a.size)
    buf.write(b"d" * a.size)
    t0 = time.monotonic_ns()
    for i in range(a.count):
        os.pwrite(fd, buf, i * a.size)
    t1 = time.monotonic_ns()
    st = os.fstat(fd)
    _emit(
        {
            "pid": os.getpid(),
            "tid": threading.get_native_id(),
            "fd": fd,
            "t0": t0,
            "t1": t1,
            "st_dev": st.st_dev,
        }
    )
    time.sleep(a.linger)
    os.close(fd)


def slow(a: argparse.Namespace) -> None:
    """n_fast preads on a file, then n_slow pipe reads that each wait sleep_ms."""
    fd = os.open(a.file, os.O_RDONLY)
    r, w = os.pipe()
    for i in range(a.n_fast):
        os.pread(fd, 512, (i % 8) * 512)

    def writer() -> None:
        for _ in range(a.n_slow):
            time.sleep(a.sleep_ms / 1000)
            os.write(w, b"x")

    t = threading.Thread(target=writer)
    t.start()
    for _ in range(a.n_slow):
        os.read(r, 1)
    t.join()
    _emit({"pid": os.getpid(), "tid": threading.get_native_id(), "pipe_fd": r, "file_fd": fd})


def loop(a: argparse.Namespace) -> None:
    """A pread every interval until killed (or for seconds): a process to attach to."""
    fd = os.open(a.file, os.O_RDONLY)
    _emit({"pid": os.getpid(), "fd": fd})
    end = time.monotonic() + a.seconds
    while time.monotonic() < end:
        os.pread(fd, 512, 0)
        time.sleep(a.interval)


def steady(a: argparse.Namespace) -> None:
    """A pread every interval until SIGTERM; then the CLOCK_MONOTONIC time after each
    pread (ns), so a test can tell exactly which I/Os a capture should hold."""
    import signal

    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM])
    fd = os.open(a.file, os.O_RDONLY)
    _emit({"pid": os.getpid(), "fd": fd})
    times: list[int] = []
    step = int(a.interval * 1e9)
    nxt = time.monotonic_ns()
    while not signal.sigpending():
        os.pread(fd, 1, 0)
        times.append(time.monotonic_ns())
        nxt += step
        delay = nxt - time.monotonic_ns()
        if delay > 0:
            time.sleep(delay / 1e9)
    _emit({"pid": os.getpid(), "fd": fd, "times": times})


def storm(a: argparse.Namespace) -> None:
    """Bursts of exactly --count one-byte preads each (repeat --count for several), each
    started by a SIGUSR1 (so a recorder can attach to this pid first; the wait itself is
    no pread); one JSON line per burst, then the total, then exit at once."""
    import signal

    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])
    fd = os.open(a.file, os.O_RDONLY)
    _emit({"pid": os.getpid(), "fd": fd, "ready": True})
    pread = os.pread
    for n in a.count:
        signal.sigwait([signal.SIGUSR1])
        t0 = time.monotonic_ns()
        for _ in range(n):
            pread(fd, 1, 0)
        _emit({"burst": n, "t0": t0, "t1": time.monotonic_ns()})
    _emit({"pid": os.getpid(), "fd": fd, "count": sum(a.count)})
    os._exit(0)


def main() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="action", required=True)
    e = sub.add_parser("exact")
    e.add_argument("--file", required=True)
    e.add_argument("--n-pread", type=int, default=0)
    e.add_argument("--size", type=int, default=4096)
    e.add_argument("--n-write", type=int, default=0)
    e.add_argument("--write-size", type=int, default=100)
    e.add_argument("--n-fsync", type=int, default=0)
    e.add_argument("--linger", type=float, default=0.0)
    e.add_argument("--settle", type=float, default=0.0)
    ev = sub.add_parser("every")
    ev.add_argument("--file", required=True)
    ev.add_argument("--hipri", action="store_true")
    d = sub.add_parser("direct")
    d.add_argument("--file", required=True)
    d.add_argument("--count", type=int, default=8)
    d.add_argument("--size", type=int, default=4096)
    d.add_argument("--linger", type=float, default=0.0)
    s = sub.add_parser("slow")
    s.add_argument("--file", required=True)
    s.add_argument("--n-fast", type=int, default=200)
    s.add_argument("--n-slow", type=int, default=3)
    s.add_argument("--sleep-ms", type=float, default=30.0)
    lp = sub.add_parser("loop")
    lp.add_argument("--file", required=True)
    lp.add_argument("--seconds", type=float, default=30.0)
    lp.add_argument("--interval", type=float, default=0.01)
    sd = sub.add_parser("steady")
    sd.add_argument("--file", required=True)
    sd.add_argument("--interval", type=float, default=0.001)
    st = sub.add_parser("storm")
    st.add_argument("--file", required=True)
    st.add_argument("--count", type=int, action="append", required=True)
    a = p.parse_args()
    actions = {"every": every, "exact": exact, "direct": direct, "slow": slow}
    actions.update({"loop": loop, "steady": steady, "storm": storm})
    actions[a.action](a)


if __name__ == "__main__":
    main()
