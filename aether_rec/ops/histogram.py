"""Mergeable log-linear latency histograms (in the spirit of HdrHistogram).

A value ``v`` (non-negative integer nanoseconds) falls in bucket::

    shift = max(0, bit_length(v) - P)
    index = shift * 2**(P-1) + (v >> shift)

Below ``2**P`` every value has its own bucket (exact). Above, each power-of-two range
``[2**k, 2**(k+1))`` is split into ``2**(P-1)`` equal buckets, so a bucket is never wider than
``2**-(P-1)`` of its lower bound. Reporting a bucket's midpoint (clamped to the exact min and max)
gives a **relative error of at most 2**-P** (0.39 % with the default ``P = 8``) for any
percentile, against the true sample at the same rank (numpy's ``method="inverted_cdf"``).

Histograms with the same ``P`` add bucket by bucket, so per-chunk, per-file, per-host or
per-interval histograms merge into exact totals: memory is a few KiB per histogram whatever the
number of events. Only the range of buckets actually used is stored.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from aether_rec.format.summary import (  # the one bucket rule (the format stores it)
    bucket_index,
    bucket_index_of_floats,  # noqa: F401 - ops use it from here (profile.py)
)

DEFAULT_PRECISION = 8
PERCENTILES: tuple[float, ...] = (50.0, 90.0, 99.0, 99.9)


def relative_error(precision: int = DEFAULT_PRECISION) -> float:
    """The largest relative error of a reported percentile."""
    return 2.0**-precision


def bucket_bounds(index: np.ndarray | int, precision: int = DEFAULT_PRECISION) -> tuple[Any, Any]:
    """Inclusive lower and exclusive upper value of bucket(s) ``index``."""
    idx = np.asarray(index, dtype=np.int64)
    half = 1 << (precision - 1)
    shift = np.maximum(0, idx // half - 1)
    top = idx - shift * half
    lo = top.astype(np.float64) * np.exp2(shift)
    hi = (top + 1).astype(np.float64) * np.exp2(shift)
    return lo, hi


class Histogram:
    """Counts of values per log-linear bucket, plus exact count, sum, min and max."""

    __slots__ = ("precision", "base", "counts", "total", "sum", "min", "max")

    def __init__(self, precision: int = DEFAULT_PRECISION) -> None:
        if not 2 <= precision <= 16:
            raise ValueError("precision must be 2..16 bits")
        self.precision = precision
        self.base = 0  # bucket index of counts[0]
        self.counts = np.zeros(0, dtype=np.int64)
        self.total = 0
        self.sum = 0
        self.min: int | None = None
        self.max: int | None = None

    # -- adding -------------------------------------------------------------------------
    def _ensure(self, lo: int, hi: int) -> None:
        """Grow the stored window to cover bucket indexes [lo, hi]."""
        if self.counts.size == 0:
            self.base = lo
            self.counts = np.zeros(hi - lo + 1, dtype=np.int64)
            return
        cur_lo, cur_hi = self.base, self.base + self.counts.size - 1
        if lo >= cur_lo and hi <= cur_hi:
            return
        new_lo, new_hi = min(lo, cur_lo), max(hi, cur_hi)
        grown = np.zeros(new_hi - new_lo + 1, dtype=np.int64)
        grown[cur_lo - new_lo : cur_lo - new_lo + self.counts.size] = self.counts
        self.base, self.counts = new_lo, grown

    def add_indexed(self, idx: np.ndarray, values: np.ndarray) -> None:
        """Add values whose bucket indexes are already computed."""
        if idx.size == 0:
            return
        lo, hi = int(idx.min()), int(idx.max())
        self._ensure(lo, hi)
        self.counts[lo - self.base : hi - self.base + 1] += np.bincount(idx - lo, minlength=hi - lo + 1)
        self._add_exact(values)

    def _add_exact(self, values: np.ndarray) -> None:
        self.total += int(values.size)
        self.sum += int(values.sum(dtype=np.uint64 if values.dtype.kind == "u" else np.int64))
        vmin, vmax = int(values.min()), int(values.max())
        self.min = vmin if self.min is None else min(self.min, vmin)
        self.max = vmax if self.max is None else max(self.max, vmax)

    def add(self, values: np.ndarray | Sequence[int]) -> None:
        v = np.asarray(values)
        if v.size == 0:
            return
        self.add_indexed(bucket_index(v, self.precision), v)

    def merge(self, other: Histogram) -> Histogram:
        """Add ``other`` into this histogram (same precision) and return self."""
        if other.precision != self.precision:
            raise ValueError("cannot merge histograms of different precision")
        if other.total == 0:
            return self
        if other.counts.size:
            lo, hi = other.base, other.base + other.counts.size - 1
            self._ensure(lo, hi)
            self.counts[lo - self.base : hi - self.base + 1] += other.counts
        self.total += other.total
        self.sum += other.sum
        for attr, pick in (("min", min), ("max", max)):
            o = getattr(other, attr)
            s = getattr(self, attr)
            if o is not None:
                setattr(self, attr, o if s is None else pick(s, o))
        return self

    def copy(self) -> Histogram:
        h = Histogram(self.precision)
        return h.merge(self)

    # -- reading ------------------------------------------------------------------------
    @property
    def mean(self) -> float | None:
        return self.sum / self.total if self.total else None

    def percentile(self, q: float) -> int | None:
        """The value at percentile ``q`` (0..100), nearest rank, within ``relative_error``."""
        return self.percentiles([q])[0]

    def percentiles(self, qs: Iterable[float]) -> list[int | None]:
        qs = list(qs)
        if self.total == 0:
            return [None for _ in qs]
        assert self.min is not None and self.max is not None
        cum = np.cumsum(self.counts)
        out: list[int | None] = []
        for q in qs:
            if q <= 0:
                out.append(self.min)
                continue
            if q >= 100:
                out.append(self.max)
                continue
            rank = max(1, int(np.ceil(q / 100.0 * self.total - 1e-9)))
            i = int(np.searchsorted(cum, rank, side="left"))
            lo, hi = bucket_bounds(self.base + i, self.precision)
            if hi - lo <= 1:
                value = float(lo)
            else:
                value = (float(lo) + float(hi) - 1) / 2.0
            out.append(int(round(min(max(value, self.min), self.max))))
        return out

    def summary(self, qs: Sequence[float] = PERCENTILES) -> dict[str, Any]:
        """``{"count", "min", "mean", "p50", ..., "max"}`` (ns), None values when empty."""
        d: dict[str, Any] = {"count": self.total, "min": self.min}
        mean = self.mean
        d["mean"] = None if mean is None else round(mean)
        for q, v in zip(qs, self.percentiles(qs)):
            d[pkey(q)] = v
        d["max"] = self.max
        return d

    def nonzero(self) -> tuple[np.ndarray, np.ndarray]:
        """(bucket indexes, counts) of non-empty buckets."""
        nz = np.flatnonzero(self.counts)
        return nz + self.base, self.counts[nz]

    def log2_buckets(self) -> list[tuple[int, int, int]]:
        """``(low, high, count)`` per power of two, the layout of bcc's biolatency: value v
        falls in the row with ``low <= v <= high``, ``low = 2**k``, ``high = 2**(k+1) - 1`` (the
        first row is ``0 -> 1``). Rows run from the first to the last non-empty one."""
        if self.total == 0:
            return []
        idx, cnt = self.nonzero()
        lo, _ = bucket_bounds(idx, self.precision)
        # every bucket lies inside one power of two, so its lower bound tells the row
        k = np.where(lo < 2, 0, np.floor(np.log2(np.maximum(lo, 1))).astype(np.int64))
        rows = np.bincount(k, weights=cnt).astype(np.int64)
        first = int(np.flatnonzero(rows)[0])
        out = []
        for r in range(first, rows.size):
            low = 0 if r == 0 else 1 << r
            out.append((low, (1 << (r + 1)) - 1, int(rows[r])))
        return out

    # -- serialisation ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Sparse form for JSON: ``buckets`` is ``[[index, count], ...]``."""
        idx, cnt = self.nonzero()
        return {
            "precision": self.precision,
            "count": self.total,
            "sum": self.sum,
            "min": self.min,
            "max": self.max,
            "buckets": [[int(i), int(c)] for i, c in zip(idx, cnt)],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Histogram:
        h = cls(int(d.get("precision", DEFAULT_PRECISION)))
        pairs = d.get("buckets") or []
        if pairs:
            idx = np.array([int(p[0]) for p in pairs], dtype=np.int64)
            cnt = np.array([int(p[1]) for p in pairs], dtype=np.int64)
            h._ensure(int(idx.min()), int(idx.max()))
            np.add.at(h.counts, idx - h.base, cnt)
        h.total = int(d.get("count", 0))
        h.sum = int(d.get("sum", 0))
        h.min = None if d.get("min") is None else int(d["min"])
        h.max = None if d.get("max") is None else int(d["max"])
        return h

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Histogram):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]


def pkey(q: float) -> str:
    """``50 -> "p50"``, ``99.9 -> "p99_9"`` (JSON keys)."""
    s = f"{q:g}".replace(".", "_")
    return f"p{s}"


def group_slices(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Group events by integer key without a comparison sort.

    Returns ``(ukeys, order, edges)``: the distinct keys ascending, a permutation that puts
    events of one key together (None when there is a single key) and ``edges`` such that
    group ``g`` is ``order[edges[g]:edges[g+1]]``. Keys within a 65536 span use bincount and
    numpy's radix sort; others fall back to a stable comparison sort."""
    n = keys.size
    if n == 0:
        return np.zeros(0, dtype=np.int64), None, np.zeros(1, dtype=np.int64)
    kmin, kmax = int(keys.min()), int(keys.max())
    if kmin == kmax:
        return np.array([kmin], dtype=np.int64), None, np.array([0, n], dtype=np.int64)
    if kmax - kmin < 65536:
        if keys.dtype == np.uint8 or keys.dtype == np.uint16:
            k = keys if kmin == 0 else keys - keys.dtype.type(kmin)
        else:
            k = (keys - kmin).astype(np.uint16)
        counts = np.bincount(k)
        nz = np.flatnonzero(counts)
        order = np.argsort(k, kind="stable")
        edges = np.zeros(nz.size + 1, dtype=np.int64)
        np.cumsum(counts[nz], out=edges[1:])
        return nz.astype(np.int64) + kmin, order, edges
    order = np.argsort(keys, kind="stable")
    sk = keys[order]
    starts = np.flatnonzero(np.concatenate(([True], sk[1:] != sk[:-1])))
    edges = np.append(starts, n).astype(np.int64)
    return sk[starts].astype(np.int64), order, edges


def dense_groups(keys: np.ndarray, max_key: int = 1 << 16) -> tuple[np.ndarray, np.ndarray | None] | None:
    """Small non-negative integer keys as dense group ids, without sorting: ``(ukeys, ids)``
    with the distinct keys ascending and ``ids[i]`` the position of ``keys[i]`` among them
    (None when there is a single key). None when a key is negative or ``max_key`` or more
    (then use :func:`group_slices`)."""
    if keys.size == 0 or keys.dtype.kind not in "ui":
        return None
    if keys.dtype.kind == "i" and int(keys.min()) < 0:
        return None
    kmax = int(keys.max())
    if kmax >= max_key:
        return None
    present = np.flatnonzero(np.bincount(keys, minlength=kmax + 1))
    if present.size == 1:
        return present.astype(np.int64), None
    lut = np.zeros(kmax + 1, dtype=np.intp)
    lut[present] = np.arange(present.size, dtype=np.intp)
    return present.astype(np.int64), lut[keys]


def group_sums(ids: np.ndarray, values: np.ndarray, groups: int) -> list[int]:
    """Exact per-group sums of integer ``values`` (modulo 2**64 for unsigned ones, as numpy's
    uint64 sum): a float64 bincount when no partial sum can reach 2**53, else integer adds."""
    if values.size == 0:
        return [0] * groups
    if values.dtype.kind == "u" and int(values.max()) * values.size < 2**53:
        return [int(x) for x in np.bincount(ids, weights=values, minlength=groups).tolist()]
    acc = np.zeros(groups, dtype=np.uint64 if values.dtype.kind == "u" else np.int64)
    np.add.at(acc, ids, values)
    return [int(x) for x in acc.tolist()]


class GroupedHistograms:
    """One histogram per integer group key, filled chunk by chunk."""

    def __init__(self, precision: int = DEFAULT_PRECISION) -> None:
        self.precision = precision
        self.groups: dict[int, Histogram] = {}

    def add(self, keys: np.ndarray, idx: np.ndarray, values: np.ndarray) -> None:
        """Add ``values`` (bucket indexes ``idx``) to the histograms of ``keys``."""
        self.add_grouped(group_slices(keys), idx, values)

    def add_grouped(
        self,
        grouping: tuple[np.ndarray, np.ndarray | None, np.ndarray],
        idx: np.ndarray,
        values: np.ndarray,
    ) -> None:
        ukeys, order, edges = grouping
        if values.size == 0:
            return
        if order is None:
            self._get(int(ukeys[0])).add_indexed(idx, values)
            return
        vs = values[order]
        ix = idx[order]
        starts = edges[:-1]
        mins = np.minimum.reduceat(vs, starts)
        maxs = np.maximum.reduceat(vs, starts)
        sums = np.add.reduceat(vs, starts, dtype=np.uint64 if vs.dtype.kind == "u" else np.int64)
        for g, key in enumerate(ukeys.tolist()):
            a, b = int(edges[g]), int(edges[g + 1])
            part = ix[a:b]
            lo, hi = int(part.min()), int(part.max())
            h = self._get(int(key))
            h._ensure(lo, hi)
            h.counts[lo - h.base : hi - h.base + 1] += np.bincount(part - lo, minlength=hi - lo + 1)
            h.total += b - a
            h.sum += int(sums[g])
            vmin, vmax = int(mins[g]), int(maxs[g])
            h.min = vmin if h.min is None else min(h.min, vmin)
            h.max = vmax if h.max is None else max(h.max, vmax)

    MAX_DENSE_BINS = 1 << 20

    def add_dense(
        self, ukeys: np.ndarray, ids: np.ndarray | None, idx: np.ndarray, values: np.ndarray
    ) -> None:
        """As :meth:`add_grouped`, for groups given by :func:`dense_groups` (``ids[i]`` indexes
        ``ukeys``): the counts of every group in one bincount of ``id * buckets + bucket``, and
        sums, minima and maxima per id, with no sort and no gather."""
        if values.size == 0:
            return
        if ids is None:
            self._get(int(ukeys[0])).add_indexed(idx, values)
            return
        groups = int(ukeys.size)
        lo, hi = int(idx.min()), int(idx.max())
        width = hi - lo + 1
        if groups * width > max(self.MAX_DENSE_BINS, 4 * values.size):  # very wide: sort instead
            self.add_grouped(group_slices(ukeys[ids]), idx, values)
            return
        cell = ids * width
        cell += idx
        if lo:
            cell -= lo
        counts = np.bincount(cell, minlength=groups * width).reshape(groups, width)
        sums = group_sums(ids, values, groups)
        mins = np.full(groups, values.max(), dtype=values.dtype)
        np.minimum.at(mins, ids, values)
        maxs = np.full(groups, values.min(), dtype=values.dtype)
        np.maximum.at(maxs, ids, values)
        used = counts != 0
        first = used.argmax(axis=1)
        last = width - 1 - used[:, ::-1].argmax(axis=1)
        totals = counts.sum(axis=1)
        for g, key in enumerate(ukeys.tolist()):
            a, b = int(first[g]), int(last[g])
            h = self._get(int(key))
            h._ensure(lo + a, lo + b)
            h.counts[lo + a - h.base : lo + b + 1 - h.base] += counts[g, a : b + 1]
            h.total += int(totals[g])
            h.sum += sums[g]
            vmin, vmax = int(mins[g]), int(maxs[g])
            h.min = vmin if h.min is None else min(h.min, vmin)
            h.max = vmax if h.max is None else max(h.max, vmax)

    def _get(self, key: int) -> Histogram:
        h = self.groups.get(key)
        if h is None:
            h = self.groups[key] = Histogram(self.precision)
        return h

    def pop(self, key: int) -> Histogram:
        return self.groups.pop(key)


def log2_rows(h: Histogram, div: int = 1) -> list[int]:
    """Counts per biolatency row for values divided by ``div`` (ns -> display unit): row 0 holds
    0 and 1, row ``r >= 1`` holds ``2**r .. 2**(r+1) - 1``. Rows are regrouped from the fine
    buckets by their midpoint, so an event within the histogram's relative error of a row edge
    may land in the neighbouring row."""
    if h.total == 0:
        return []
    idx, cnt = h.nonzero()
    lo, hi = bucket_bounds(idx, h.precision)
    mids = np.maximum(np.floor(((lo + hi - 1) / 2.0) / div), 0)
    k = np.where(mids < 2, 0, np.floor(np.log2(np.maximum(mids, 1)))).astype(np.int64)
    return [int(c) for c in np.bincount(k, weights=cnt).astype(np.int64)]


def _stars(val: int, val_max: int, width: int) -> str:
    # bcc's table.py _stars, so the bars look the same
    i = 0
    text = ""
    while not (i > (width * val / val_max) - 1 or i > width - 1):
        text += "*"
        i += 1
    if val > val_max:
        text = text[:-1] + "+"
    return text


def render_log2(h: Histogram, unit: str = "usecs") -> list[str]:
    """Text rows in the layout of bcc's biolatency (``print_log2_hist``)::

    usecs               : count     distribution
        0 -> 1          : 0        |                                        |
        2 -> 3          : 4        |**                                      |
    """
    div = {"nsecs": 1, "usecs": 1_000, "msecs": 1_000_000}[unit]
    rows = log2_rows(h, div)
    while rows and rows[-1] == 0:
        rows.pop()
    if len(rows) <= 32:
        header = f"     {unit:<19} : count     distribution"
        body = "%10d -> %-10d : %-8d |%-*s|"
        stars = 40
    else:
        header = f"               {unit:<29} : count     distribution"
        body = "%20d -> %-20d : %-8d |%-*s|"
        stars = 20
    lines = [header]
    peak = max(rows) if rows else 0
    for r, c in enumerate(rows):
        low, high = (0, 1) if r == 0 else (1 << r, (1 << (r + 1)) - 1)
        lines.append(body % (low, high, c, stars, _stars(c, peak, stars) if peak else ""))
    return lines
