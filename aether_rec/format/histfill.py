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
    ukeys, inv = _group_ids(key)
    g = ukeys.size
    if g == 1:
        lo = int(idx.min())
        h.groups[int(ukeys[0])] = GroupHist(
            int(idx.size), int(lat.sum(dtype=np.uint64)), int(lat.min()), int(lat.max()),
            int(cols["bytes"].sum(dtype=np.uint64)), int(np.count_nonzero(err)),
            int(ts.min()), int(ends.max()), lo,
            np.bincount(idx - lo, minlength=int(idx.max()) - lo + 1).astype(np.int64))
        return
    # Several groups: the events put in group order once (a stable radix sort of the small
    # group ids), then each figure is one reduction over every group's run: no mask and no
    # selection per group (3 groups: 98 to about 40 ns an event).
    order = np.argsort(inv.astype(np.uint8 if g <= 256 else np.uint16 if g <= 65536 else np.intp),
                       kind="stable")
    counts_g = np.bincount(inv, minlength=g)
    starts = np.zeros(g, dtype=np.intp)
    np.cumsum(counts_g[:-1], out=starts[1:])
    lat_s = lat.astype(np.uint64, copy=False)[order]
    sums = np.add.reduceat(lat_s, starts)  # wraps as the sum of a uint64 column does
    mins = np.minimum.reduceat(lat_s, starts)
    maxs = np.maximum.reduceat(lat_s, starts)
    del lat_s
    nbytes = np.add.reduceat(cols["bytes"].astype(np.uint64, copy=False)[order], starts)
    t0s = np.minimum.reduceat(ts.astype(np.uint64, copy=False)[order], starts)
    endmax = np.maximum.reduceat(ends[order], starts)
    errors = np.bincount(inv[err], minlength=g)
    lo_all = int(idx.min())
    span = int(idx.max()) - lo_all + 1
    if g * span <= DENSE_CELLS:  # every group's buckets in one bincount
        per = np.bincount(inv * span + (idx - lo_all), minlength=g * span).reshape(g, span)
        nz = per != 0
        first = nz.argmax(axis=1)
        last = span - 1 - nz[:, ::-1].argmax(axis=1)
        rows = [per[k, int(first[k]): int(last[k]) + 1].astype(np.int64) for k in range(g)]
        los = [lo_all + int(first[k]) for k in range(g)]
    else:  # a wide spread of buckets in many groups: each group's from its sorted run
        idx_s = idx[order]
        rows, los = [], []
        for a, n in zip(starts.tolist(), counts_g.tolist()):
            i = idx_s[a : a + n]
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
