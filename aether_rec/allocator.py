"""How the process's C allocator gives memory back to the kernel, set for bulk work.

The offline commands allocate and free the same few megabytes per chunk, over and over: a
column of 131,072 eight-byte values is 1 MiB, a slice's byte matrix 7-13 MiB. glibc serves
such blocks either with ``mmap`` (from 128 KiB up, a threshold it raises as blocks are freed)
or from the heap, whose top it hands back to the kernel as soon as more than twice that
threshold is free. Either way the next chunk's arrays land on fresh pages, and the kernel
zeroes and maps every 4 KiB page again on first touch: by hand on this project's 2-core VM,
gathering 262,144 eight-byte values took 1.24 ms, 0.36 ms of it the work and the rest about
1,000 page faults.

``tune_allocator`` keeps blocks below 32 MiB on the heap and lets up to 128 MiB of free heap
stay mapped, so the pages of one chunk serve the next. The process's peak resident memory is
that of its largest moment either way; what changes is that it is not given back in between.
``bench/bench_offline.py`` measures the commands with it (the CLI calls it for every command
that reads events in bulk, not for ``record``, whose steady memory has a budget of its own).

Only glibc has these settings (``mallopt``); elsewhere this does nothing. Settings the user
chose in the environment (``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_MMAP_THRESHOLD_`` or a
``glibc.malloc`` tunable) are left as they are.
"""

from __future__ import annotations

import os
import sys

# mallopt(3) parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 32 << 20  # glibc's largest (HEAP_MAX_SIZE / 2 on 64-bit)
TRIM_THRESHOLD = 128 << 20

USER_SETTINGS = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")


def user_chose() -> bool:
    """Whether the environment already sets how the allocator trims or maps."""
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    return any(k in os.environ for k in USER_SETTINGS) or "glibc.malloc" in tunables


def tune_allocator() -> bool:
    """Keep freed memory of the C heap for reuse (module docstring); True if applied.
    Process-wide: an application calls it, a library function never does."""
    if not sys.platform.startswith("linux") or user_chose():
        return False
    try:
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
    except (ImportError, OSError, AttributeError):  # a Python without ctypes; not glibc
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success; musl's stub returns 0
    if mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) != 1:
        return False
    return bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1)
