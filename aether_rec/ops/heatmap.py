"""Latency heatmaps from binned profiles: time on x, latency on a log y axis, counts in cells.

Rows are log-spaced latency ranges whose edges fall on bucket edges of the profile's histograms
(1, 2, 4 or 8 rows per power of two), so every cell count is exact, not interpolated: a cell is
exactly the I/Os with ``ts`` in its time column and ``lat`` in its row, and ``cell_expression``
prints the ``filter`` expression that selects them. Row 0 holds everything faster than the
first edge (underflow) and the last row everything at or above the last edge (overflow), so
outliers stay visible instead of being clipped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from aether_rec.ops.histogram import Histogram, bucket_bounds
from aether_rec.ops.profile import Profile
from aether_rec.schema import layer_name

MAX_ROWS = 40
MIN_EDGE = 8  # ns: below this, one row (underflow) is enough


@dataclass
class Rows:
    """Latency row edges (ns): row 0 is ``< edges[0]``, row ``i`` (1..K) is
    ``[edges[i-1], edges[i])`` and row K+1 is ``>= edges[-1]``."""

    edges: list[int]

    @property
    def n(self) -> int:
        return len(self.edges) + 1

    def bounds(self, r: int) -> tuple[int | None, int | None]:
        """(inclusive low, exclusive high) of row ``r``; None for an open end."""
        lo = None if r == 0 else self.edges[r - 1]
        hi = None if r == len(self.edges) else self.edges[r]
        return lo, hi

    def index(self, values: np.ndarray) -> np.ndarray:
        """The row of each value (values are lower bounds of buckets or exact latencies)."""
        return np.searchsorted(np.asarray(self.edges, dtype=np.float64), values, side="right")


def choose_rows(h: Histogram, max_rows: int = MAX_ROWS) -> Rows:
    """Rows spanning the bulk of ``h`` (0.1st to 99.9th percentile), as fine as ``max_rows``
    allows (8, 4, 2 or 1 per power of two); the rest falls in the under/overflow rows."""
    if h.total == 0:
        return Rows([1 << 10, 1 << 20])
    p_lo, p_hi = h.percentiles([0.1, 99.9])
    lo = max(MIN_EDGE, int(p_lo or MIN_EDGE))
    hi = max(lo + 1, int(p_hi or lo) + 1)
    # align lo down, hi up to powers of two, then subdivide
    lo2 = 1 << int(math.floor(math.log2(lo)))
    hi2 = 1 << int(math.ceil(math.log2(hi)))
    if hi2 <= lo2:
        hi2 = lo2 * 2
    octaves = int(math.log2(hi2 // lo2))
    per = 8
    while per > 1 and octaves * per > max_rows:
        per //= 2
    if octaves * per > max_rows:  # more than max_rows powers of two: widen around the middle
        mid = (int(math.log2(lo2)) + int(math.log2(hi2))) // 2
        lo2 = 1 << max(3, mid - max_rows // 2)
        hi2 = lo2 << max_rows
        octaves = max_rows
    edges = []
    k = lo2
    while k < hi2:
        for j in range(per):
            edges.append(k + k * j // per)
        k *= 2
    edges.append(hi2)
    # trim rows wholly outside [lo, hi): keep the edge at or below lo and at or above hi
    first = max(0, int(np.searchsorted(edges, lo, side="right")) - 1)
    last = int(np.searchsorted(edges, hi, side="left"))
    return Rows(edges[first: last + 1])


def hist_rows(h: Histogram, rows: Rows) -> np.ndarray:
    """Counts of ``h`` per row (exact: row edges are bucket edges of ``h``)."""
    out = np.zeros(rows.n, dtype=np.int64)
    if h.total == 0:
        return out
    idx, cnt = h.nonzero()
    lo, _ = bucket_bounds(idx, h.precision)
    np.add.at(out, rows.index(lo), cnt)
    return out


@dataclass
class Heat:
    """One layer's heatmap: ``counts[c, r]`` I/Os in time column c, latency row r."""

    layer: int
    rows: Rows
    counts: np.ndarray

    @property
    def vmax(self) -> int:
        return int(self.counts.max()) if self.counts.size else 0

    def cells(self) -> list[list[int]]:
        """``[column, row, count]`` of every non-empty cell."""
        c, r = np.nonzero(self.counts)
        return [[int(a), int(b), int(self.counts[a, b])] for a, b in zip(c, r)]


def heat(prof: Profile, layer: int, rows: Rows) -> Heat:
    cols = prof.column_hists(layer)
    counts = np.zeros((prof.ncols, rows.n), dtype=np.int64)
    for c, h in enumerate(cols):
        if h.total:
            counts[c] = hist_rows(h, rows)
    return Heat(layer, rows, counts)


def shared_rows(profiles: Sequence[Profile], layer: int, max_rows: int = MAX_ROWS) -> Rows:
    """One row layout for ``layer`` across several profiles (compare: one scale for both)."""
    h = Histogram()
    for p in profiles:
        h.merge(p.layer_hist(layer))
    return choose_rows(h, max_rows)


def cell_expression(prof: Profile, layer: int, rows: Rows, col: int, row: int) -> str:
    """The ``filter`` expression that selects exactly the I/Os of one heatmap cell."""
    t_lo = prof.t0 + col * prof.width
    parts = [f"layer == {layer_name(layer)}", f"ts >= {t_lo}", f"ts < {t_lo + prof.width}"]
    lo, hi = rows.bounds(row)
    if lo is not None:
        parts.append(f"lat >= {lo}")
    if hi is not None:
        parts.append(f"lat < {hi}")
    expr = " and ".join(parts)
    if prof.where_text:
        expr = f"({prof.where_text}) and {expr}"
    return expr
