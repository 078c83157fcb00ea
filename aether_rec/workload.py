"""A small built-in I/O workload, for the demo and the kernel tests.

``python -m aether_rec.workload --seconds 4`` writes, reads back (buffered and with
O_DIRECT, so both the syscall and the block layer see I/O), fsyncs and removes a
scratch file in the current directory, and prints what it did as JSON on stdout.
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import sys
import tempfile
import time


def run(seconds: float, directory: str, size: int = 4 << 20, block: int = 4096) -> dict[str, int]:
    """Loop over buffered and direct I/O on a scratch file for ``seconds``."""
    counts = {"write": 0, "pread": 0, "fsync": 0, "direct_write": 0, "direct_read": 0}
    fd, path = tempfile.mkstemp(prefix=".aether-workload-", dir=directory)
    try:
        buf = os.urandom(block)
        end = time.monotonic() + seconds
        direct = _direct_fd(path)
        aligned = mmap.mmap(-1, block)  # page-aligned buffer for O_DIRECT
        aligned.write(buf)
        while time.monotonic() < end:
            os.lseek(fd, 0, os.SEEK_SET)
            for _ in range(64):
                os.write(fd, buf)
                counts["write"] += 1
            os.fsync(fd)
            counts["fsync"] += 1
            for i in range(64):
                os.pread(fd, block, i * block)
                counts["pread"] += 1
            if direct is not None:
                for i in range(16):
                    os.pwrite(direct, aligned, (64 + i) * block)
                    counts["direct_write"] += 1
                for i in range(16):
                    os.preadv(direct, [aligned], (64 + i) * block)
                    counts["direct_read"] += 1
            time.sleep(0.01)
            if os.fstat(fd).st_size > size:
                os.ftruncate(fd, 0)
        if direct is not None:
            os.close(direct)
    finally:
        os.close(fd)
        os.unlink(path)
    return counts


def _direct_fd(path: str) -> int | None:
    try:
        return os.open(path, os.O_RDWR | getattr(os, "O_DIRECT", 0))
    except OSError:
        return None  # tmpfs and some filesystems refuse O_DIRECT


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m aether_rec.workload", description=__doc__)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--dir", default=".")
    args = p.parse_args(argv)
    counts = run(args.seconds, args.dir)
    json.dump(counts, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
