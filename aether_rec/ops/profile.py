"""One streaming pass over a capture that bins everything a picture needs, first.

``collect()`` reads each chunk once and adds it to mergeable histograms (histogram.py): one per
(layer, time column) for heatmaps and percentile lines, one per (layer, op) for the histograms
and the ``diff`` test, one per comm / path / device (and per ``--by`` group). Nothing is kept
per event: memory is bounded by the number of columns and groups, not by the capture size, and
the report, the plots and ``diff`` all draw from the same :class:`Profile`.

Time columns are laid out before the pass from the chunk index (first and last start time), so
a column is ``[t0 + k*width, t0 + (k+1)*width)`` in the capture's monotonic clock, ``t0`` being
the first event (or ``--since``). An event belongs to the column of its *start* time (the ``ts``
field), so a heatmap cell is exactly the set ``ts >= A and ts < B and lat >= L and lat < H``.
"""

from __future__ import annotations

import errno as _errno
import heapq
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aether_rec.format.chunk import Chunk, distinct
from aether_rec.format.columns import Body
from aether_rec.format.partial import ORIGIN, rows_of
from aether_rec.format.reader import Capture
from aether_rec.ops.expr import FIELDS, field_values, quote, string_codes
from aether_rec.ops.histogram import (
    DEFAULT_PRECISION,
    Histogram,
    bucket_bounds,
    bucket_index,
    bucket_index_of_floats,
    group_slices,
)
from aether_rec.ops.window import Selection, capture_start
from aether_rec.schema import dev_name, is_real_loss, layer_name, op_name

# Precision of the per-column and per-group histograms: 2**-6 = 1.6 % relative error on their
# percentiles, 4 KiB each over six decades, so 240 columns x 3 layers stay near 3 MiB.
# Per-(layer, op) histograms keep the library's default (0.4 %).
COLUMN_PRECISION = 6
DEFAULT_COLUMNS = 240
COLUMNS_LIMIT = 1000  # time columns at most: 3 layers x 1000 columns of dense counts stay near 30 MB
MAX_TABLE_ROWS = 1000
TOP = 20
TABLES = ("comm", "path", "dev")
DECODERS = 2  # threads that decode and bin chunks, a collector each (zstd and numpy release the GIL)
BASE_COLUMNS = ("ts", "lat", "layer", "op", "bytes", "result")
DERIVED = {"service": ("lat", "queue"), "errno": ("result",), "end": ("ts", "lat")}


def nice_width(span_ns: int, max_columns: int) -> int:
    """The smallest 1/2/5 x 10**k ns width that splits ``span_ns`` into at most ``max_columns``."""
    need = max(1, -(-max(span_ns, 1) // max(1, max_columns)))
    k = 1
    while True:
        for m in (1, 2, 5):
            if m * k >= need:
                return m * k
        k *= 10


class Dense:
    """Histograms for many small integer keys at once, as one dense count matrix.

    A chunk is added with one ``bincount`` over (key, bucket) and no sort; the per-key sums,
    minima and maxima come from the chunk's combinations (few), not its events. ``hist(key)``
    returns the key's
    :class:`Histogram` (same buckets, exact count/sum/min/max), so everything downstream merges
    as usual. Latencies of ``2**44`` ns (4.9 hours) and more share the last bucket (min and max
    stay exact)."""

    def __init__(self, precision: int = COLUMN_PRECISION, keys: int = 16) -> None:
        self.precision = precision
        self.nb = n_buckets(precision)
        self.counts = np.zeros((keys, self.nb), dtype=np.int64)
        self.sum = np.zeros(keys, dtype=np.int64)
        self.min = np.full(keys, _UMAX, dtype=np.uint64)
        self.max = np.zeros(keys, dtype=np.uint64)
        self.bytes = np.zeros(keys, dtype=np.int64)
        self.errors = np.zeros(keys, dtype=np.int64)

    def _grow(self, need: int) -> None:
        have = self.counts.shape[0]
        if need <= have:
            return
        k = max(need, 2 * have)
        self.counts = np.vstack([self.counts, np.zeros((k - have, self.nb), dtype=np.int64)])
        for name, fill in (("sum", 0), ("min", _UMAX), ("max", 0), ("bytes", 0), ("errors", 0)):
            arr = getattr(self, name)
            setattr(self, name, np.concatenate([arr, np.full(k - have, fill, dtype=arr.dtype)]))

    def add(self, cid: np.ndarray, idx: _Buckets, keys_c: np.ndarray, part: _Part) -> None:
        """Add a chunk: ``cid`` the combination of every event, ``idx`` their buckets at this
        precision, ``keys_c`` the key of every combination, ``part`` its aggregates."""
        # the combinations grouped by key with one small sort: the distinct keys, each
        # combination's rank among them, and per-key reductions (exact int64, no ufunc.at)
        order = np.argsort(keys_c, kind="stable")
        sk = keys_c[order]
        first = np.flatnonzero(np.concatenate(([True], sk[1:] != sk[:-1])))
        uk = sk[first]
        inv = np.empty(keys_c.size, dtype=np.int64)
        inv[order] = np.repeat(np.arange(uk.size, dtype=np.int64), np.diff(np.append(first, sk.size)))
        self._grow(int(uk[-1]) + 1)
        span = idx.span
        row = (inv * span)[cid]  # each event's row offset, by combination
        row += idx.rel
        m = np.bincount(row, minlength=uk.size * span).reshape(uk.size, span)
        self.counts[uk, idx.lo: idx.lo + span] += m
        self.sum[uk] += np.add.reduceat(part.sum[order], first)
        self.bytes[uk] += np.add.reduceat(part.bytes[order], first)
        self.errors[uk] += np.add.reduceat(part.errors[order], first)
        self.min[uk] = np.minimum(self.min[uk], np.minimum.reduceat(part.min[order], first))
        self.max[uk] = np.maximum(self.max[uk], np.maximum.reduceat(part.max[order], first))

    def add_row(self, key: int, other: Dense, okey: int) -> None:
        """Add ``other``'s row ``okey`` (same precision) into row ``key``."""
        self._grow(key + 1)
        self.counts[key] += other.counts[okey]
        self.sum[key] += other.sum[okey]
        self.bytes[key] += other.bytes[okey]
        self.errors[key] += other.errors[okey]
        self.min[key] = min(self.min[key], other.min[okey])
        self.max[key] = max(self.max[key], other.max[okey])

    def total(self, key: int) -> int:
        return int(self.counts[key].sum()) if key < self.counts.shape[0] else 0

    def hist(self, key: int) -> Histogram:
        if key >= self.counts.shape[0]:
            return Histogram(self.precision)
        row = self.counts[key]
        nz = np.flatnonzero(row)
        if nz.size == 0:
            return Histogram(self.precision)
        # the histogram's public fields, filled from the row (no per-bucket Python loop)
        h = Histogram(self.precision)
        h.base = int(nz[0])
        h.counts = row[nz[0]: nz[-1] + 1].copy()
        h.total = int(h.counts.sum())
        h.sum = int(self.sum[key])
        h.min = int(self.min[key])
        h.max = int(self.max[key])
        return h


_UMAX = np.iinfo(np.uint64).max


def n_buckets(precision: int) -> int:
    return int(bucket_index(np.array([1 << 44], dtype=np.uint64), precision)[0]) + 1


@dataclass
class _Buckets:
    """The buckets of a chunk's events as offsets (``rel``) from the lowest one (``lo``),
    ``span`` buckets in all: computed once, shared by every table."""

    lo: int
    span: int
    rel: np.ndarray


@dataclass
class _Part:
    """Per-combination aggregates of one chunk."""

    sum: np.ndarray
    bytes: np.ndarray
    errors: np.ndarray
    min: np.ndarray
    max: np.ndarray


class _Values:
    """Compacts an integer column to dense ids ``0..k-1`` that stay stable across chunks.

    A 65536-entry table indexed by the value (1- and 2-byte columns) or by a 16-bit hash of it
    (wider ones, e.g. ``dev``) gives each event its id in two gathers; a hash collision between
    two values of the column falls back to a binary search."""

    def __init__(self) -> None:
        self.values: list[int] = []
        self.lut_id = np.zeros(1 << 16, dtype=np.int64)
        self.lut_val = np.zeros(1 << 16, dtype=np.int64)
        self.used = np.zeros(1 << 16, dtype=bool)
        self.collided = False

    @staticmethod
    def _hash(v: np.ndarray) -> np.ndarray:
        if v.dtype.itemsize <= 2:
            return v.view(np.dtype(f"u{v.dtype.itemsize}")).astype(np.intp)
        if v.dtype.itemsize == 4:
            w = v.view(np.uint32)
            return ((w ^ (w >> np.uint32(16))) & np.uint32(0xFFFF)).astype(np.intp)
        u = v.astype(np.uint64, copy=False)
        return ((u ^ (u >> np.uint64(16)) ^ (u >> np.uint64(32)) ^ (u >> np.uint64(48)))
                & np.uint64(0xFFFF)).astype(np.intp)

    def ids(self, col: np.ndarray) -> np.ndarray:
        if self.collided:
            return self._search(col)
        if col.dtype.itemsize == 4:  # widened once, for the hash and the comparison
            wide = col.astype(np.int64)
            h = (wide ^ (wide >> 16)) & 0xFFFF  # _hash's value: the low 16 bits agree
            ok = self.used[h] & (self.lut_val[h] == wide)
        else:
            h = self._hash(col)
            if col.dtype.itemsize <= 2:  # the hash is the value itself: seen means known
                ok = self.used[h]
            else:
                ok = self.used[h] & (self.lut_val[h] == _as_i64(col))
        if not ok.all():
            for x in distinct(col[~ok]):
                k = int(self._hash(np.array([x], dtype=col.dtype))[0])
                self.values.append(int(x))
                if self.used[k]:
                    self.collided = True
                else:
                    self.used[k], self.lut_id[k] = True, len(self.values) - 1
                    self.lut_val[k] = _as_i64(np.array([x]))[0]
            if self.collided:
                return self._search(col)
        return self.lut_id[h]

    def _search(self, col: np.ndarray) -> np.ndarray:
        allv = np.array(self.values, dtype=col.dtype)
        order = np.argsort(allv)
        pos = np.searchsorted(allv[order], col).clip(0, max(0, allv.size - 1))
        miss = allv[order][pos] != col
        if miss.any():
            self.values.extend(int(x) for x in np.unique(col[miss]))
            return self._search(col)
        return order[pos].astype(np.int64)


def _as_i64(a: np.ndarray) -> np.ndarray:
    """The same bits as int64 (8-byte columns) or the values widened (narrower ones)."""
    return a.view(np.int64) if a.dtype.itemsize == 8 else a.astype(np.int64)


class _Strings:
    """Global dense ids for the strings of a dictionary-coded column (at most ``limit``; the
    rest share the id ``limit``, shown as ``(other)``)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.ids: dict[str, int] = {}
        self._names: dict[int, Any] | None = None
        self._lock = threading.Lock()  # shared by the collectors of one pass (one per thread)

    def local(self, chunk: Chunk, name: str, source: str) -> tuple[np.ndarray | None, np.ndarray]:
        """The chunk's codes of column ``name`` (None: one value for all) and the global id of
        every code (ids are given in dictionary order)."""
        if name == "source" and "source" not in chunk.columns:
            return None, np.array([self._id(source)], dtype=np.int64)
        codes, d = string_codes(chunk, name)
        if not len(d):
            return None, np.zeros(1, dtype=np.int64)
        with self._lock:
            return codes, np.fromiter((self._id(str(x)) for x in d), dtype=np.int64, count=len(d))

    def _id(self, s: str) -> int:
        k = self.ids.get(s)
        if k is None:
            if len(self.ids) >= self.limit:
                return self.limit
            k = self.ids[s] = len(self.ids)
            self._names = None
        return k

    def names(self) -> dict[int, Any]:
        if self._names is None:
            self._names = {k: s for s, k in self.ids.items()}
            self._names[self.limit] = "(other)"
        return self._names


class Table:
    """Histograms per value of some columns (``("comm",)``, ``("layer", "op", "comm")``...);
    the values of a string column beyond the first 1000 share ``(other)``."""

    def __init__(self, names: Sequence[str], precision: int = COLUMN_PRECISION) -> None:
        self.names = tuple(names)
        self.precision = precision
        self.keys: dict[int, tuple[Any, ...]] = {}  # dense id -> key
        self.dense = Dense(precision)

    def merge(self, other: Table) -> None:
        """Add ``other`` (the same columns, binned from other chunks) into this table, key
        by key (the two may number their keys differently)."""
        slot_of = {key: slot for slot, key in self.keys.items()}
        d, od = self.dense, other.dense
        for so, key in other.keys.items():
            if not od.total(so):
                continue
            s = slot_of.get(key)
            if s is None:
                s = slot_of[key] = max(self.keys, default=-1) + 1
                self.keys[s] = key
            d.add_row(s, od, so)

    def rows(self) -> list[tuple[tuple[Any, ...], Histogram, int, int]]:
        """(key, histogram, bytes, errors), most events first; ``(other)`` rows last."""
        d = self.dense
        out = [(key, d.hist(s), int(d.bytes[s]), int(d.errors[s]))
               for s, key in self.keys.items() if d.total(s)]
        out.sort(key=lambda r: ("(other)" in r[0], -r[1].total, str(r[0])))
        return out


@dataclass
class Profile:
    """Everything binned from one capture (or one source of a merged capture)."""

    label: str
    t0: int  # monotonic ns of column 0's start
    width: int  # ns per time column
    ncols: int
    real_offset: int | None  # add to monotonic ns for wall-clock ns (at t0), None if unknown
    layer_cols: dict[int, dict[int, Histogram]] = field(default_factory=dict)  # layer -> col -> h
    layer_col_bytes: dict[int, np.ndarray] = field(default_factory=dict)
    layer_col_errors: dict[int, np.ndarray] = field(default_factory=dict)
    layer_op: dict[int, Histogram] = field(default_factory=dict)  # layer << 8 | op
    layer_op_bytes: dict[int, int] = field(default_factory=dict)
    layer_op_errors: dict[int, int] = field(default_factory=dict)
    tables: dict[str, Table] = field(default_factory=dict)
    by: Table | None = None
    top: list[dict[str, Any]] = field(default_factory=list)
    losses: list[dict[str, Any]] = field(default_factory=list)
    header: dict[str, Any] = field(default_factory=dict)
    path: str = ""
    filter_text: str | None = None  # the selection as shown (expression, window)
    where_text: str | None = None  # the selection's expression alone
    events: int = 0
    first_ts: int | None = None
    last_end: int | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def layers(self) -> list[int]:
        return sorted(self.layer_cols)

    @property
    def span_s(self) -> float | None:
        if self.first_ts is None or self.last_end is None or self.last_end <= self.first_ts:
            return None
        return (self.last_end - self.first_ts) / 1e9

    def layer_hist(self, layer: int) -> Histogram:
        """All events of ``layer`` at the default precision (from the per-op histograms)."""
        h = Histogram(DEFAULT_PRECISION)
        for k, hk in self.layer_op.items():
            if k >> 8 == layer:
                h.merge(hk)
        return h

    def total_hist(self) -> Histogram:
        h = Histogram(DEFAULT_PRECISION)
        for hk in self.layer_op.values():
            h.merge(hk)
        return h

    def column_hists(self, layer: int) -> list[Histogram]:
        cols = self.layer_cols.get(layer, {})
        return [cols.get(c) or Histogram(COLUMN_PRECISION) for c in range(self.ncols)]


class _Collector:
    """Per chunk: one joint key per event over the time column and every column a table needs,
    compacted to the combinations present. Sums, minima, maxima, bytes and errors are taken
    once per combination; each table (and the heatmap columns, and the (layer, op) histograms)
    then maps combinations to its keys and counts buckets with one 2-D ``bincount``."""

    def __init__(self, prof: Profile, top: int, by: Sequence[str] | None, tables: Sequence[str],
                 strings: dict[str, _Strings] | None = None) -> None:
        self.p = prof
        self.ntop = top
        self.heap: list[tuple[int, int, int]] = []
        self.rows: dict[int, dict[str, Any]] = {}
        self.seq = 0
        self.by = list(by or [])
        self.names = list(dict.fromkeys(["layer", "op", *tables, *self.by]))
        if strings is None:
            strings = {n: _Strings(MAX_TABLE_ROWS) for n in self.names if FIELDS[n].kind == "str"}
        self.strings = strings  # string ids: shared by the collectors of one pass
        self.values = {n: _Values() for n in self.names if FIELDS[n].kind != "str"}
        self.cols = Dense(COLUMN_PRECISION, 2 * prof.ncols)  # key: layer slot * ncols + column
        self.lo = Table(("layer", "op"), precision=DEFAULT_PRECISION)
        for name in tables:
            prof.tables[name] = Table((name,))
        if self.by:
            prof.by = Table(tuple(self.by), precision=DEFAULT_PRECISION)
        # P=8 bucket -> P=6 bucket: the column precision's buckets without a second float pass
        b8 = np.arange(n_buckets(DEFAULT_PRECISION), dtype=np.int64)
        lo8, _ = bucket_bounds(b8, DEFAULT_PRECISION)
        self.to6 = np.minimum(bucket_index(lo8.astype(np.uint64), COLUMN_PRECISION), self.cols.nb - 1)
        self.to6 = self.to6.astype(np.int64)
        self.lay = Table(("layer",))
        self.slot_ids: dict[int, dict[int, int]] = {}

    def add(self, chunk: Chunk, body: Body | None = None) -> None:
        """Bin a chunk's events; ``body``: its stored body when the chunk was decoded in
        part (with an ``ORIGIN`` column), for the other columns of the slowest events."""
        p = self.p
        n = chunk.n
        if n == 0:
            return
        ts = chunk.column("ts")
        lat = chunk.column("lat")
        nbytes = chunk.column("bytes")
        err = chunk.column("result") < 0
        lat_min, lat_max = int(lat.min()), int(lat.max())
        latf = lat.astype(np.float64)  # converted once: the buckets' bits and the latency sums
        idx8 = bucket_index_of_floats(latf, lat_min, DEFAULT_PRECISION)
        if lat_max >= 1 << 44:
            np.minimum(idx8, self.lo.dense.nb - 1, out=idx8)
        # the buckets as offsets from the chunk's lowest (monotonic in the value: no pass to
        # find it), at both precisions; the coarse ones by one gather from a small table
        lo8, hi8 = (int(x) for x in np.minimum(bucket_index(np.array([lat_min, lat_max], dtype=np.uint64),
                                                                 DEFAULT_PRECISION), self.lo.dense.nb - 1))
        idx8 -= lo8
        lo6 = int(self.to6[lo8])
        b8 = _Buckets(lo8, hi8 - lo8 + 1, idx8)
        to6 = (self.to6[lo8: hi8 + 1] - lo6).astype(np.int32)
        b6 = _Buckets(lo6, int(self.to6[hi8]) - lo6 + 1, to6[idx8])
        # the time column by one integer division (a view: ts are below 2**63), clipped only
        # when the chunk strays out of the columns; it then becomes the joint key in place
        combo = (ts.view(np.int64) if ts.dtype == np.uint64 else ts.astype(np.int64)) - p.t0
        combo //= p.width
        cmin, cmax = int(combo.min()), int(combo.max())
        if cmin < 0 or cmax >= p.ncols:
            np.clip(combo, 0, p.ncols - 1, out=combo)
            cmin, cmax = min(max(cmin, 0), p.ncols - 1), min(max(cmax, 0), p.ncols - 1)
        # the joint key: mixed radix over the time column and every table's column (string
        # columns by the chunk's own codes, mapped to global ids per combination, not per
        # event); its distinct values (the combinations present) carry the per-key aggregates
        offset = cmin
        radix = [cmax - cmin + 1]
        luts: dict[str, np.ndarray] = {}
        for name in self.names:
            ids: np.ndarray | None
            if name in self.strings:
                ids, luts[name] = self.strings[name].local(chunk, name, p.label)
                size = luts[name].size
            else:
                ids = self.values[name].ids(field_values(chunk, name))
                size = len(self.values[name].values)
            radix.append(size)
            offset *= size
            combo *= size
            if ids is not None:
                combo += ids
        uc, cid = _compact(combo)
        uc -= offset
        nc = uc.size
        mins = np.full(nc, _UMAX, dtype=np.uint64)
        maxs = np.zeros(nc, dtype=np.uint64)
        np.minimum.at(mins, cid, lat)
        np.maximum.at(maxs, cid, lat)
        # per-chunk sums in float64 are exact while below 2**53 (104 days of latency in one
        # chunk), and are accumulated across chunks as int64
        part = _Part(
            np.rint(np.bincount(cid, weights=latf, minlength=nc)).astype(np.int64),
            np.rint(np.bincount(cid, weights=nbytes.astype(np.float64), minlength=nc)).astype(np.int64),
            np.bincount(cid[err], minlength=nc) if err.any() else np.zeros(nc, dtype=np.int64),
            mins,
            maxs,
        )
        comps: list[np.ndarray] = []
        rest = uc
        for size in reversed(radix):
            comps.append(rest % size)
            rest = rest // size
        comps.reverse()
        ccol = comps[0] + cmin
        cpart = {name: luts[name][c] if name in luts else c for name, c in zip(self.names, comps[1:])}
        # (layer, op) at full precision
        lo_c = self._slots(self.lo, ("layer", "op"), cpart)
        self.lo.dense.add(cid, b8, lo_c, part)
        if p.by is not None:
            by_c = self._slots(p.by, self.by, cpart)
            p.by.dense.add(cid, b8, by_c, part)
        # heatmap columns (layer slot * ncols + column) and tables at the column precision
        lay_c = self._slots(self.lay, ("layer",), cpart) * p.ncols + ccol
        self.cols.add(cid, b6, lay_c, part)
        for name, t in p.tables.items():
            self._name_keys(t, name)
            t.dense.add(cid, b6, cpart[name], part)
        # span
        first, last = int(ts.min()), int((ts + lat).max())
        p.first_ts = first if p.first_ts is None else min(p.first_ts, first)
        p.last_end = last if p.last_end is None else max(p.last_end, last)
        p.events += n
        self._top(chunk, lat, lat_max, body)

    def _value(self, name: str, i: int) -> Any:
        if name in self.strings:
            return self.strings[name].names()[i]
        return self.values[name].values[i]

    def _slots(self, t: Table, names: Sequence[str], cpart: dict[str, np.ndarray]) -> np.ndarray:
        """Dense ids in ``t`` of the key (``names``) of every combination."""
        key = np.zeros_like(cpart[names[0]])
        for name in names:
            key = key * 65536 + cpart[name]  # ids stay below 65536 (at most 1001 strings)
        uk, inv = np.unique(key, return_inverse=True)
        lut = np.empty(uk.size, dtype=np.int64)
        slots = self.slot_ids.setdefault(id(t), {})
        for j, k in enumerate(uk.tolist()):
            s = slots.get(k)
            if s is None:
                s = slots[k] = len(slots)
                parts, rest = [], k
                for name in reversed(names):
                    parts.append(self._value(name, rest % 65536))
                    rest //= 65536
                t.keys[s] = tuple(reversed(parts))
            lut[j] = s
        return lut[inv.reshape(-1)]

    def _name_keys(self, t: Table, name: str) -> None:
        """A one-column table uses the column's own dense ids."""
        known = len(self.strings[name].ids) if name in self.strings else len(self.values[name].values)
        if len(t.keys) - (name in self.strings) < known:
            for i in range(known):
                t.keys.setdefault(i, (self._value(name, i),))
            if name in self.strings:
                t.keys[self.strings[name].limit] = ("(other)",)

    def _top(self, chunk: Chunk, lat: np.ndarray, lat_max: int, body: Body | None) -> None:
        k = self.ntop
        if k <= 0:
            return
        if len(self.heap) >= k and lat_max <= self.heap[0][0]:
            return
        if len(self.heap) >= k:  # only events as slow as the k-th kept can enter: few, found in one pass
            cand = np.flatnonzero(lat >= self.heap[0][0])
            if cand.size > k:
                cand = cand[np.argpartition(lat[cand], cand.size - k)[cand.size - k:]]
        else:
            cand = np.argpartition(lat, lat.size - k)[lat.size - k:] if lat.size > k else np.arange(lat.size)
        ts = chunk.column("ts")
        kept: list[tuple[int, int]] = []  # (seq, row in chunk)
        for c in cand.tolist():
            item = (int(lat[c]), -int(ts[c]), self.seq)
            if len(self.heap) < k:
                heapq.heappush(self.heap, item)
            elif item > self.heap[0]:
                old = heapq.heapreplace(self.heap, item)
                self.rows.pop(old[2], None)
            else:
                continue
            kept.append((self.seq, c))
            self.seq += 1
        live = {s for _, _, s in self.heap}
        kept = [(s, c) for s, c in kept if s in live]
        if not kept:
            return
        picked = np.array([c for _, c in kept], dtype=np.int64)
        if body is not None and ORIGIN in chunk.columns:
            rows = rows_of(chunk, body, picked)  # the columns not decoded, for these rows only
        else:
            rows = chunk.take(picked)
        for j, (s, _) in enumerate(kept):
            self.rows[s] = _record(rows, j, self.p)

    def finish(self) -> None:
        p = self.p
        nc = p.ncols
        for slot, (lay,) in self.lay.keys.items():
            p.layer_cols[lay] = {c: self.cols.hist(slot * nc + c) for c in range(nc)
                                 if self.cols.total(slot * nc + c)}
            p.layer_col_bytes[lay] = _window(self.cols.bytes, slot * nc, (slot + 1) * nc)
            p.layer_col_errors[lay] = _window(self.cols.errors, slot * nc, (slot + 1) * nc)
        for (lay, op), h, nbytes, nerr in self.lo.rows():
            k = int(lay) << 8 | int(op)
            p.layer_op[k] = h
            p.layer_op_bytes[k] = nbytes
            p.layer_op_errors[k] = nerr
        p.top = [self.rows[s] for _, _, s in sorted(self.heap, reverse=True)]


def _window(arr: np.ndarray, a: int, b: int) -> np.ndarray:
    out = np.zeros(b - a, dtype=arr.dtype)
    part = arr[a:b]
    out[: part.size] = part
    return out


def _compact(combo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct values ascending, dense id of every element), without a sort when the values
    span a modest range (``combo`` is then shifted in place: the caller's scratch)."""
    cmin, cmax = int(combo.min()), int(combo.max())
    if cmax - cmin < (1 << 22):
        combo -= cmin
        present = np.flatnonzero(np.bincount(combo))
        lut = np.empty(cmax - cmin + 1, dtype=np.intp)  # only the present entries are read
        lut[present] = np.arange(present.size)
        return present + cmin, lut[combo]
    uc, inv = np.unique(combo, return_inverse=True)
    return uc, inv.reshape(-1)


def _str(chunk: Chunk, name: str, i: int) -> str:
    codes, d = string_codes(chunk, name)
    return str(d[int(codes[i])]) if len(d) else ""


def _record(chunk: Chunk, i: int, p: Profile) -> dict[str, Any]:
    ts = int(chunk.column("ts")[i])
    result = int(chunk.column("result")[i])
    dev = int(chunk.column("dev")[i])
    return {
        "t": (ts - p.t0) / 1e9,
        "ts": ts,
        "time_ns": None if p.real_offset is None else ts + p.real_offset,
        "lat": int(chunk.column("lat")[i]),
        "comm": _str(chunk, "comm", i),
        "pid": int(chunk.column("pid")[i]),
        "tid": int(chunk.column("tid")[i]),
        "layer": layer_name(int(chunk.column("layer")[i])),
        "op": op_name(int(chunk.column("op")[i])),
        "bytes": int(chunk.column("bytes")[i]),
        "offset": int(chunk.column("offset")[i]),
        "dev": dev_name(dev) if dev else "",
        "path": _str(chunk, "path", i),
        "result": result,
        "error": _errno.errorcode.get(-result, str(-result)) if result < 0 else "",
    }


def plan_columns(cap: Capture, sel: Selection, max_columns: int = DEFAULT_COLUMNS) -> tuple[int, int, int]:
    """``(t0, width, ncols)`` for ``cap`` under ``sel``, from the chunk index alone."""
    if not 1 <= max_columns <= COLUMNS_LIMIT:
        raise ValueError(f"columns must be 1..{COLUMNS_LIMIT}")
    f = sel.filter
    infos = [i for i in cap.chunk_infos() if i.n and (f.is_trivial or f.can_match(i))]
    start = capture_start(cap)
    t0 = sel.t_min if sel.t_min is not None else (min((i.t_first for i in infos), default=start or 0))
    t_last = max((i.t_last for i in infos), default=t0)
    if sel.t_max is not None:
        t_last = min(t_last, sel.t_max - 1)
    span = max(1, t_last - t0 + 1)
    width = nice_width(span, max_columns)
    return t0, width, max(1, -(-span // width))


def _new_profile(cap: Capture, sel: Selection, label: str, plan: tuple[int, int, int],
                 where_text: str | None) -> Profile:
    t0, width, ncols = plan
    real_offset = None
    if len(cap.clock_pairs()):
        real_offset = int(np.asarray(cap.mono_to_real(np.array([t0], dtype=np.int64)))[0]) - t0
    return Profile(
        label=label,
        t0=t0,
        width=width,
        ncols=ncols,
        real_offset=real_offset,
        header=dict(cap.header),
        path=cap.name,
        filter_text=sel.text,
        where_text=where_text,
    )


def _finish(prof: Profile, col: _Collector, cap: Capture, sel: Selection) -> Profile:
    col.finish()
    return _losses(prof, cap, sel)


def _losses(prof: Profile, cap: Capture, sel: Selection) -> Profile:
    for loss in cap.losses():
        if (sel.t_min is not None and loss.t_last < sel.t_min) or (
                sel.t_max is not None and loss.t_first >= sel.t_max):
            continue
        prof.losses.append({
            "cpu": loss.cpu,
            "count": loss.count,
            "kind": loss.kind,
            "real": bool(is_real_loss(loss.kind)),
            "t_first": (loss.t_first - prof.t0) / 1e9,
            "t_last": (loss.t_last - prof.t0) / 1e9,
        })
    prof.warnings = list(cap.warnings)
    return prof


def _merge(p: Profile, q: Profile, top: int) -> None:
    """Add ``q`` (the same plan, binned from other chunks) into ``p``."""
    for lay, cols in q.layer_cols.items():
        mine = p.layer_cols.setdefault(lay, {})
        for c, h in cols.items():
            if c in mine:
                mine[c].merge(h)
            else:
                mine[c] = h
    for name in ("layer_col_bytes", "layer_col_errors"):
        into, other = getattr(p, name), getattr(q, name)
        for lay, arr in other.items():
            into[lay] = into[lay] + arr if lay in into else arr
    for k, h in q.layer_op.items():
        if k in p.layer_op:
            p.layer_op[k].merge(h)
        else:
            p.layer_op[k] = h
        p.layer_op_bytes[k] = p.layer_op_bytes.get(k, 0) + q.layer_op_bytes[k]
        p.layer_op_errors[k] = p.layer_op_errors.get(k, 0) + q.layer_op_errors[k]
    for name, t in q.tables.items():
        p.tables[name].merge(t)
    if p.by is not None and q.by is not None:
        p.by.merge(q.by)
    # the slowest first; of equally slow ones, the earliest (as one collector orders them)
    p.top = sorted(p.top + q.top, key=lambda r: (-r["lat"], r["ts"]))[:top]
    p.events += q.events
    for name, pick in (("first_ts", min), ("last_end", max)):
        a, b = getattr(p, name), getattr(q, name)
        setattr(p, name, b if a is None else a if b is None else pick(a, b))


def collect(
    cap: Capture,
    sel: Selection,
    *,
    label: str | None = None,
    max_columns: int = DEFAULT_COLUMNS,
    top: int = TOP,
    by: Sequence[str] | None = None,
    tables: Sequence[str] = TABLES,
) -> Profile:
    """Bin the events of ``cap`` selected by ``sel`` in one pass (see the module docstring).

    Each of ``DECODERS`` threads decodes chunks and bins them into a collector of its own
    (numpy and zstd release the GIL, so both cores bin); the collectors' profiles are merged
    at the end. String ids are shared, so a table's first 1000 values are the same in all."""
    plan = plan_columns(cap, sel, max_columns)
    name = label or _source_label(cap)
    where_text = None if sel.where.is_trivial else sel.where.text
    strings: dict[str, _Strings] | None = None
    made: list[_Collector] = []
    lock = threading.Lock()
    local = threading.local()

    def collector() -> _Collector:
        nonlocal strings
        with lock:
            col = _Collector(_new_profile(cap, sel, name, plan, where_text), top, by, tables, strings)
            strings = col.strings
            made.append(col)
        return col

    def work(chunk: Chunk, body: Body | None) -> None:
        col = getattr(local, "col", None)
        if col is None:
            col = local.col = collector()
        col.add(chunk, body)

    # without an expression, only the binned columns are decoded: the slowest events' other
    # columns come from their chunk's body, row by row
    sel.each(cap, work, _columns(sel, by, tables), workers=DECODERS)
    if not made:
        collector()
    for col in made:
        col.finish()
    prof = made[0].p
    for col in made[1:]:
        _merge(prof, col.p, top)
    return _losses(prof, cap, sel)


def _columns(sel: Selection, by: Sequence[str] | None, tables: Sequence[str]) -> list[str] | None:
    """The columns to decode (fewer columns, less work), or None for all of them when an
    expression must see whatever columns it names."""
    if not sel.where.is_trivial:
        return None
    out = list(BASE_COLUMNS) + list(tables)
    for name in by or ():
        out += DERIVED.get(name, (name,))
    return list(dict.fromkeys(out))


def collect_sources(
    cap: Capture,
    sel: Selection,
    *,
    max_columns: int = DEFAULT_COLUMNS,
    top: int = TOP,
    max_sources: int = 64,
) -> list[Profile]:
    """One profile per value of the ``source`` column (a capture made by ``merge``), on one
    shared time axis, still in one pass. Losses are the capture's and shown with every source
    (loss records do not say which source lost them)."""
    plan = plan_columns(cap, sel, max_columns)
    base = None if sel.where.is_trivial else sel.where.text
    profs: dict[str, tuple[Profile, _Collector]] = {}
    for chunk in sel.chunks(cap, workers=DECODERS, ordered=False):
        if "source" in chunk.columns:
            codes, names = string_codes(chunk, "source")
        else:
            codes, names = np.zeros(chunk.n, dtype=np.uint32), [_source_label(cap)]
        ukeys, order, edges = group_slices(codes.astype(np.int64))
        for g, code in enumerate(ukeys.tolist()):
            name = str(names[code])
            if name not in profs:
                if len(profs) >= max_sources:
                    raise ValueError(f"more than {max_sources} sources: select some with -e 'source == ...'")
                where = f"source == {quote(name)}"
                p = _new_profile(cap, sel, name, plan, f"({base}) and {where}" if base else where)
                profs[name] = (p, _Collector(p, top, None, TABLES))
            part = chunk if order is None else chunk.take(order[edges[g]: edges[g + 1]])
            profs[name][1].add(part)
    return [_finish(p, c, cap, sel) for p, c in (profs[k] for k in sorted(profs))]


def _source_label(cap: Capture) -> str:
    h = cap.header
    return str(h.get("hostname") or h.get("capture_id") or cap.name)
