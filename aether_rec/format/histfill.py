"""Chunk histograms (format/SPEC.md 9.1) computed from a decoded chunk's columns: what the
writer stores in each index entry and what ``recover`` and copies recompute. Their layout,
buckets and merging live in format/summary.py; this is only how they are filled, a slice of
SLICE events at a time, with numpy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from aether_rec.format.summary import EAGAIN, U64_MAX, GroupHist, LatencyHist, bucket_index
from aether_rec.schema import COLUMN_BY_NAME

SLICE = 1 << 18  # events summarised at a time
FEW_GROUPS = 8  # up to this many groups in a slice, each is picked by a mask (else a table)
DENSE_CELLS = 1 << 22  # groups x buckets counted in one bincount (else a group at a time)
HIST_FIELDS = ("ts", "lat", "layer", "op", "fdkind", "bytes", "result")  # the columns histograms read


def chunk_hist(chunk: Any, precision: int) -> LatencyHist:
    """The histograms of a decoded chunk (format/chunk.py ``Chunk``), computed a slice of
    SLICE events at a time, so that the memory used stays small whatever the chunk (a
    column the chunk lacks is not materialised beyond a slice)."""
    h = LatencyHist(precision)
    n = int(chunk.n)
    for a in range(0, n, SLICE):
        b = min(n, a + SLICE)
        part = LatencyHist(precision)
        _fill(part, {name: _column_slice(chunk, name, a, b) for name in HIST_FIELDS})
        if not h.groups:
            h = part
        else:
            h.merge(part)
    return h


def _fill(h: LatencyHist, cols: dict[str, np.ndarray]) -> None:
    """Add the groups of events given as columns (into an empty histogram)."""
    import numpy as np

    from aether_rec.format.chunk import few_distinct

    precision = h.precision
    lat = cols["lat"]
    ts = cols["ts"]
    key = ((cols["layer"].astype(np.uint32) << np.uint32(16))
           | (cols["op"].astype(np.uint32) << np.uint32(8))
           | cols["fdkind"].astype(np.uint32))
    ends = ts.astype(np.uint64) + lat.astype(np.uint64)
    ends[ends < ts] = np.uint64(U64_MAX)  # saturating, as stats' end times
    idx = bucket_index(lat, precision)
    result = cols["result"]
    err = (result < 0) & (result != -EAGAIN)
    few = few_distinct(key, FEW_GROUPS)
    if few is not None:  # the usual case: a group's events picked by a mask
        for k in few.tolist():
            m = key == k if len(few) > 1 else slice(None)
            i, lm = idx[m], lat[m]
            lo = int(i.min())
            h.groups[int(k)] = GroupHist(
                int(i.size), int(lm.sum(dtype=np.uint64)), int(lm.min()), int(lm.max()),
                int(cols["bytes"][m].sum(dtype=np.uint64)), int(np.count_nonzero(err[m])),
                int(ts[m].min()), int(ends[m].max()), lo,
                np.bincount(i - lo, minlength=int(i.max()) - lo + 1).astype(np.int64))
        return
    # many groups: each event's group by a table over the key range (no sort), and the
    # per-group figures by unbuffered reductions; every group's buckets by one bincount
    ukeys, inv = _group_ids(key)
    g = ukeys.size
    counts_g = np.bincount(inv, minlength=g)
    sums = np.zeros(g, dtype=np.uint64)
    np.add.at(sums, inv, lat)  # wraps as the sum of a uint64 column does
    mins = np.full(g, U64_MAX, dtype=np.uint64)
    np.minimum.at(mins, inv, lat)
    maxs = np.zeros(g, dtype=np.uint64)
    np.maximum.at(maxs, inv, lat)
    t0s = np.full(g, U64_MAX, dtype=np.uint64)
    np.minimum.at(t0s, inv, ts.astype(np.uint64, copy=False))
    endmax = np.zeros(g, dtype=np.uint64)
    np.maximum.at(endmax, inv, ends)
    nbytes = np.zeros(g, dtype=np.uint64)
    np.add.at(nbytes, inv, cols["bytes"].astype(np.uint64, copy=False))
    errors = np.bincount(inv[err], minlength=g)
    lo_all = int(idx.min())
    span = int(idx.max()) - lo_all + 1
    if g * span <= DENSE_CELLS:
        per = np.bincount(inv * span + (idx - lo_all), minlength=g * span).reshape(g, span)
        nz = per != 0
        first = nz.argmax(axis=1)
        last = span - 1 - nz[:, ::-1].argmax(axis=1)
        rows = [per[k, int(first[k]): int(last[k]) + 1].astype(np.int64) for k in range(g)]
        los = [lo_all + int(first[k]) for k in range(g)]
    else:  # a wide spread of buckets in many groups: one group at a time
        rows, los = [], []
        for k in range(g):
            i = idx[inv == k]
            lo = int(i.min())
            los.append(lo)
            rows.append(np.bincount(i - lo, minlength=int(i.max()) - lo + 1).astype(np.int64))
    for k in range(g):
        h.groups[int(ukeys[k])] = GroupHist(
            int(counts_g[k]), int(sums[k]), int(mins[k]), int(maxs[k]), int(nbytes[k]),
            int(errors[k]), int(t0s[k]), int(endmax[k]), los[k], rows[k])


def _group_ids(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct keys ascending, each element's index among them): through a table over
    the key range when it is modest (no sort), else ``np.unique``."""
    kmin, kmax = int(key.min()), int(key.max())
    if kmax - kmin >= 1 << 22:
        ukeys, inv = np.unique(key, return_inverse=True)
        return ukeys, inv.reshape(-1)
    rel = (key - kmin).astype(np.intp)
    present = np.flatnonzero(np.bincount(rel))
    lut = np.empty(kmax - kmin + 1, dtype=np.intp)  # only the present entries are read
    lut[present] = np.arange(present.size)
    return present.astype(key.dtype) + kmin, lut[rel]


def _column_slice(chunk: Any, name: str, a: int, b: int) -> np.ndarray:
    """Events a..b of a chunk's column, or of the column's default when the chunk lacks it."""
    arr = chunk.columns.get(name)
    if arr is not None:
        return np.asarray(arr[a:b])
    col = COLUMN_BY_NAME[name]
    return np.full(b - a, col.default, dtype=col.dtype)
