"""The kernel's event records (numpy structured arrays of KERNEL_EVENT_DTYPE) as contiguous
columns, cheaply.

Copying each field out of 112-byte records walks the whole batch once per field, a cache
miss per element; transposing the records as 64-bit words a few thousand rows at a time
reads them once, in cache-sized blocks, after which every field is a row of the transposed
block (8-byte fields) or a short, cache-resident slice of one (narrower ones).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from aether_rec.format.chunk import Chunk, encode_strings
from aether_rec.schema import COLUMN_BY_NAME

if TYPE_CHECKING:
    from aether_rec.recorder.procinfo import Names

BLOCK_ROWS = 4096  # rows transposed at a time: 4096 x 112 bytes stay in the L2 cache


def split_columns(ev: np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
    """``{name: np.ascontiguousarray(ev[name])}`` for the fields ``names`` of the
    structured array ``ev``, computed by a blocked transposition when the record is a
    whole number of 64-bit words and each field lies within 8-byte words."""
    dt = ev.dtype
    n = len(ev)
    fields: dict[str, tuple[Any, ...]] = dict(dt.fields or {})
    def straddles(k: str) -> bool:  # not word-aligned, and not inside one word
        off, size = fields[k][1], fields[k][0].itemsize
        return off % 8 != 0 and off % 8 + size > 8

    if dt.itemsize % 8 or not ev.flags.c_contiguous or n == 0 or any(straddles(k) for k in names):
        return {k: np.ascontiguousarray(ev[k]) for k in names}
    words = dt.itemsize // 8
    rows = ev.view(np.uint64).reshape(n, words)
    t = np.empty((words, n), np.uint64)
    for i in range(0, n, BLOCK_ROWS):
        t[:, i : i + BLOCK_ROWS] = rows[i : i + BLOCK_ROWS].T
    out: dict[str, np.ndarray] = {}
    for k in names:
        fdt, off = fields[k][0], fields[k][1]
        w, size = off // 8, fdt.itemsize
        if size % 8 == 0:  # whole words: rows of t, side by side for wider fields
            span = t[w : w + size // 8]
            out[k] = (span[0].copy() if size == 8 else np.ascontiguousarray(span.T)).view(fdt).reshape(n)
        elif (off % 8) % size == 0:  # an aligned part of one word: every (8 / size)-th item
            out[k] = t[w].view(fdt)[(off % 8) // size :: 8 // size].copy()
        else:
            out[k] = np.ascontiguousarray(ev[k])
    return out


def event_columns(ev: np.ndarray) -> dict[str, np.ndarray]:
    """The schema's columns of a batch of kernel records (KERNEL_EVENT_DTYPE)."""
    return split_columns(ev, [n for n in ev.dtype.names or () if n in COLUMN_BY_NAME])


def batch_chunk(ev: np.ndarray, names: Names) -> Chunk:
    """A batch of kernel records as a chunk: the schema's columns, each I/O's path, flags
    and fd kind from ``names`` (the fd table, procinfo.Names), comm as dictionary codes."""
    cols: dict[str, np.ndarray] = event_columns(ev)
    codes, words, flags, fdkind = names.annotate(cols)
    cols["flags"] = flags
    cols["fdkind"] = fdkind
    cols["comm"], comms = encode_strings(cols["comm"])
    cols["path"] = codes
    return Chunk(len(ev), cols, {"comm": comms, "path": words})
