"""Latency summaries a 1.2 capture keeps beside its events (format/SPEC.md, sections 9.1 and 9.2):
each chunk's latency histograms in its index entry, and the SUMM block before the index that
sums up the whole capture, so that percentiles and ``info`` need neither decompression nor
(for SUMM) the index.

Histograms use the log-linear buckets of ops/histogram.py (``bucket_index``, defined here so
that the writer can use it; the format imports no other room). One histogram per group
``key = layer << 16 | op << 8 | fdkind``, with the exact count, sum, min and max of ``lat``,
the sum of ``bytes`` and the number of errors (``result < 0`` other than ``-EAGAIN``).

Every decode reads untrusted bytes: sizes are bounded before anything is allocated and
anything malformed raises DamagedCaptureError.

Reading a SUMM block needs no numpy (``info`` of a 1.2 capture runs without it): its counts
are checked in Python and become arrays when first used (``GroupHist.counts``).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO, NamedTuple

import zstandard

from aether_rec.errors import DamagedCaptureError, LimitError
from aether_rec.format.blocks import (
    BLOCK_OVERHEAD,
    BLOCK_TAIL,
    SUMM,
    Damage,
    checked_int,
    pack,
    read_block,
    unpack,
)
from aether_rec.format.codecs import decompress_limited
from aether_rec.format.limits import (
    MAX_HIST_BUCKETS,
    MAX_HIST_GROUPS,
    MAX_HIST_PRECISION,
    MAX_HIST_RAW,
    MAX_SUMM_CLOCK,
    MAX_SUMM_LOSSES,
    MAX_SUMM_PAYLOAD,
)

if TYPE_CHECKING:  # imported where arrays are made: see the module's docstring
    import numpy as np

PRECISION = 8  # the bucket precision writers use (relative error 2**-8)
EAGAIN = 11
U64_MAX = (1 << 64) - 1
I64_MAX = (1 << 63) - 1
_WIDTHS: dict[int, str] = {1: "B", 2: "H", 4: "I", 8: "Q"}  # stored counts: struct codes by width
_NP_WIDTHS: dict[int, Any] = {}  # and numpy dtypes, made on first use


def bucket_index(values: np.ndarray, precision: int = PRECISION) -> np.ndarray:
    """Bucket index of every value (vectorised; ``values`` non-negative integers).

    Read straight from the bits of the float64 conversion: the exponent gives ``bit_length``
    and the top ``P-1`` mantissa bits give ``v >> shift`` (exact below 2**53 ns, 104 days).
    """
    import numpy as np

    v = np.asarray(values)
    if v.dtype != np.uint64:
        v = v.astype(np.int64, copy=False).clip(0).astype(np.uint64)
    if v.size == 0:
        return np.zeros(v.shape, dtype=np.int64)
    # below 2**63 the signed conversion gives the same float64, faster; the shift and the
    # subtraction then work in place on its bits (no temporary per step)
    f = v.view(np.int64).astype(np.float64) if int(v.max()) < 2**63 else v.astype(np.float64)
    return bucket_index_of_floats(f, int(v.min()), precision, out=True)


def bucket_index_of_floats(
    values_f64: np.ndarray, vmin: int, precision: int = PRECISION, out: bool = False
) -> np.ndarray:
    """:func:`bucket_index` of non-negative integers already converted to float64 (as it
    converts them), ``vmin`` being their minimum: the same buckets in two passes when no value
    is below ``2**(precision-1)`` (from there on the bits are the bucket), a third otherwise.
    With ``out`` the buckets overwrite ``values_f64`` (its buffer, viewed as int64)."""
    import numpy as np

    if out:
        idx = values_f64.view(np.int64)
        small = values_f64 < (1 << precision) if vmin < (1 << (precision - 1)) else None
        small_v = values_f64[small].astype(np.int64) if small is not None else None
        idx >>= 53 - precision  # the bits of a non-negative float: no sign to carry
    else:
        idx = (values_f64.view(np.uint64) >> np.uint64(53 - precision)).view(np.int64)
        small = values_f64 < (1 << precision) if vmin < (1 << (precision - 1)) else None
        small_v = values_f64[small].astype(np.int64) if small is not None else None
    idx -= (1021 + precision) << (precision - 1)
    if small is not None and small_v is not None:
        idx[small] = small_v
    return idx


def group_key(layer: int, op: int, fdkind: int) -> int:
    return (int(layer) << 16) | (int(op) << 8) | int(fdkind)


class StoredCounts(NamedTuple):
    """A group's counts as stored (SPEC 9.1: ``width``-byte little-endian), checked."""

    blob: bytes
    width: int

    def array(self) -> np.ndarray:
        return _as_array(self.blob, self.width)


def _as_array(blob: bytes, width: int) -> np.ndarray:
    """Stored counts as int64 (their dtypes made once: a capture's index holds thousands)."""
    import numpy as np

    dt = _NP_WIDTHS.get(width)
    if dt is None:
        dt = _NP_WIDTHS[width] = np.dtype(f"<u{width}")
    return np.frombuffer(blob, dtype=dt).astype(np.int64)


@dataclass
class GroupHist:
    """One group's histogram: dense ``counts`` from bucket ``base``, and exact totals."""

    count: int
    sum: int
    min: int
    max: int
    bytes: int
    errors: int
    t0: int  # smallest ts
    end: int  # largest ts + lat (saturating at 2**64 - 1)
    base: int
    _counts: np.ndarray | StoredCounts  # see ``counts``

    @property
    def counts(self) -> np.ndarray:
        """int64 counts of the buckets from ``base`` on (an array made on first use when the
        histogram was read from a file without arrays)."""
        c = self._counts
        if isinstance(c, StoredCounts):
            c = self._counts = c.array()
        return c

    @counts.setter
    def counts(self, value: np.ndarray) -> None:
        self._counts = value

    def merge(self, o: GroupHist) -> None:
        mine, theirs = self.counts, o.counts
        lo = min(self.base, o.base)
        hi = max(self.base + mine.size, o.base + theirs.size)
        if lo != self.base or hi != self.base + mine.size:
            import numpy as np

            grown = np.zeros(hi - lo, dtype=np.int64)
            grown[self.base - lo : self.base - lo + mine.size] = mine
            self.base, self.counts = lo, grown
            mine = grown
        mine[o.base - self.base : o.base - self.base + theirs.size] += theirs
        self.count += o.count
        self.sum += o.sum
        self.bytes += o.bytes
        self.errors += o.errors
        self.min = min(self.min, o.min)
        self.max = max(self.max, o.max)
        self.t0 = min(self.t0, o.t0)
        self.end = max(self.end, o.end)


@dataclass
class LatencyHist:
    """The histograms of one chunk, or of a whole capture (merged)."""

    precision: int = PRECISION
    groups: dict[int, GroupHist] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(g.count for g in self.groups.values())

    @classmethod
    def from_chunk(cls, chunk: Any, precision: int = PRECISION) -> LatencyHist:
        """The histograms of a decoded chunk (format/chunk.py ``Chunk``): format/histfill.py."""
        from aether_rec.format.histfill import chunk_hist

        return chunk_hist(chunk, precision)

    def merge(self, other: LatencyHist) -> LatencyHist:
        if other.precision != self.precision:
            raise ValueError("cannot merge histograms of different precision")
        for k, g in other.groups.items():
            mine = self.groups.get(k)
            if mine is None:
                self.groups[k] = GroupHist(g.count, g.sum, g.min, g.max, g.bytes, g.errors, g.t0, g.end,
                                           g.base, g.counts.copy())
            else:
                mine.merge(g)
        return self

    # -- the stored form (SPEC 9.1) ------------------------------------------------------
    def encode(self) -> bytes:
        """zstd(msgpack([precision, [[key, count, sum, min, max, bytes, errors, t0, end, base,
        width, counts], ...]])), groups by key, counts little-endian of ``width`` bytes."""
        rows = []
        for k in sorted(self.groups):
            g = self.groups[k]
            top = int(g.counts.max()) if g.counts.size else 0
            width = 1 if top < 1 << 8 else 2 if top < 1 << 16 else 4 if top < 1 << 32 else 8
            rows.append([k, g.count, min(g.sum, U64_MAX), g.min, g.max, min(g.bytes, U64_MAX), g.errors,
                         g.t0, g.end, g.base, width, g.counts.astype(f"<u{width}").tobytes()])
        doc = [self.precision, rows]
        raw = pack(doc, "latency histograms")
        if len(raw) > MAX_HIST_RAW or len(rows) > MAX_HIST_GROUPS:
            raise LimitError("latency histograms exceed the limits every reader enforces")
        return bytes(zstandard.ZstdCompressor(level=3).compress(raw))

    @classmethod
    def decode(cls, data: Any, arrays: bool = True) -> LatencyHist:
        """From a stored histogram element; malformed -> DamagedCaptureError. Its counts are
        checked with numpy (faster for the many histograms of an index), or without ``arrays``
        in Python and kept as stored until used (``StoredCounts``): no numpy is imported."""
        if not isinstance(data, bytes):
            raise DamagedCaptureError("latency histograms are not a byte string")
        raw = decompress_limited(data, MAX_HIST_RAW, "latency histograms")
        doc = unpack(raw, "latency histograms")
        if not isinstance(doc, list) or len(doc) < 2 or not isinstance(doc[1], list):
            raise DamagedCaptureError("latency histograms malformed")
        precision = checked_int(doc[0], "precision")
        if not 2 <= precision <= MAX_HIST_PRECISION:
            raise DamagedCaptureError(f"latency histogram precision {precision} out of range")
        if len(doc[1]) > MAX_HIST_GROUPS:
            raise DamagedCaptureError("too many latency histogram groups")
        h = cls(precision)
        for row in doc[1]:
            if not isinstance(row, list) or len(row) < 12:
                raise DamagedCaptureError("latency histogram group malformed")
            k, count, s, vmin, vmax, nbytes, errors, t0, end, base, width = (
                checked_int(x, "latency histogram") for x in row[:11])
            blob = row[11]
            if width not in _WIDTHS or not isinstance(blob, bytes) or len(blob) % width:
                raise DamagedCaptureError("latency histogram counts malformed")
            n = len(blob) // width
            if not 0 < n <= MAX_HIST_BUCKETS:  # (bounded before it is read)
                raise DamagedCaptureError("latency histogram group inconsistent")
            counts, total, edges, big = _counts_of(blob, width, arrays)
            # a count of 2**63 or more is refused (int64 arrays), so is a total above it
            if (not 0 <= base <= MAX_HIST_BUCKETS or min(k, count, s, vmin, vmax, nbytes, errors, t0, end) < 0
                    or big or total != count or not 1 <= count <= I64_MAX or k in h.groups or vmin > vmax
                    or errors > count or not edges):
                raise DamagedCaptureError("latency histogram group inconsistent")
            h.groups[k] = GroupHist(count, s, vmin, vmax, nbytes, errors, t0, end, base, counts)
        return h


def _counts_of(blob: bytes, width: int, arrays: bool) -> tuple[np.ndarray | StoredCounts, int, bool, bool]:
    """A group's stored counts (at least one, ``width`` bytes each), their exact total, whether
    the first and the last are not 0, and whether one is 2**63 or more: as an array with
    ``arrays``, else read in Python and kept as stored."""
    if arrays:
        arr = _as_array(blob, width)
        big = bool((arr < 0).any())  # a u8 count of 2**63 or more, wrapped
        # exact: an int64 sum wraps only if there are counts of 2**32 or more (8-byte widths)
        total = int(arr.sum()) if width < 8 or big else sum(arr.tolist())
        return arr, total, bool(arr[0]) and bool(arr[-1]), big
    vals = struct.unpack(f"<{len(blob) // width}{_WIDTHS[width]}", blob)
    return StoredCounts(blob, width), sum(vals), vals[0] != 0 != vals[-1], width == 8 and max(vals) > I64_MAX


# -- the SUMM block (SPEC 9.2) --------------------------------------------------------------


@dataclass
class LossTotal:
    """The LOSS blocks of one (cpu, kind): how many, how many events, and the span of those
    with a count (None when every count is 0)."""

    cpu: int
    kind: str
    count: int = 0
    blocks: int = 0
    t_first: int | None = None
    t_last: int | None = None


@dataclass
class CaptureSummary:
    chunks: int = 0
    events: int = 0
    t_first: int | None = None
    t_last: int | None = None
    compressed: int = 0  # bytes of the CHNK blocks
    raw: int = 0  # their decompressed body sizes
    hist_chunks: int = 0  # chunks whose histograms ``hist`` includes
    hist: LatencyHist = field(default_factory=LatencyHist)
    losses: list[LossTotal] = field(default_factory=list)
    clock: list[tuple[int, int]] | None = None  # the clock table's (mono, real) pairs
    stats: dict[str, Any] = field(default_factory=dict)  # the index's recorder statistics
    offset: int = -1  # of the SUMM block

    @property
    def complete(self) -> bool:
        """Whether the histograms cover every chunk (else per-op counts need the chunks)."""
        return self.hist_chunks == self.chunks

    def add_chunk(self, n: int, t_first: int, t_last: int, length: int, raw: int,
                  hist: LatencyHist | None) -> None:
        self.chunks += 1
        self.events += n
        if n:
            self.t_first = t_first if self.t_first is None else min(self.t_first, t_first)
            self.t_last = t_last if self.t_last is None else max(self.t_last, t_last)
        self.compressed += length
        self.raw += raw
        if hist is not None:
            self.hist_chunks += 1
            self.hist.merge(hist)

    def add_loss(self, cpu: int, kind: str, count: int, t_first: int, t_last: int) -> None:
        for lt in self.losses:
            if lt.cpu == cpu and lt.kind == kind:
                break
        else:
            lt = LossTotal(cpu, kind)
            self.losses.append(lt)
        lt.blocks += 1
        lt.count += count
        if count:
            lt.t_first = t_first if lt.t_first is None else min(lt.t_first, t_first)
            lt.t_last = t_last if lt.t_last is None else max(lt.t_last, t_last)

    def to_doc(self) -> dict[str, Any]:
        """The SUMM document; LimitError when readers would refuse it."""
        if len(self.losses) > MAX_SUMM_LOSSES:
            raise LimitError("too many loss rows for a summary")
        clock = self.clock if self.clock is not None and len(self.clock) <= MAX_SUMM_CLOCK else None
        return {
            "chunks": self.chunks, "events": self.events, "t_first": self.t_first, "t_last": self.t_last,
            "compressed": self.compressed, "raw": self.raw, "hist_chunks": self.hist_chunks,
            "hist": self.hist.encode(),
            "losses": [[x.cpu, x.kind, x.count, x.blocks, x.t_first, x.t_last] for x in self.losses],
            "clock": None if clock is None else [list(p) for p in clock],
            "stats": self.stats,
        }

    @classmethod
    def from_doc(cls, doc: Any, offset: int = -1) -> CaptureSummary:
        if not isinstance(doc, Mapping):
            raise DamagedCaptureError("summary is not a map")

        def num(k: str) -> int:
            v = checked_int(doc.get(k), f"summary {k}")
            if v < 0:
                raise DamagedCaptureError(f"summary {k} is negative")
            return v

        def opt(v: Any, what: str) -> int | None:
            return None if v is None else checked_int(v, what)

        s = cls(num("chunks"), num("events"), opt(doc.get("t_first"), "t_first"),
                opt(doc.get("t_last"), "t_last"), num("compressed"), num("raw"), num("hist_chunks"),
                LatencyHist.decode(doc.get("hist"), arrays=False), offset=offset)
        if s.hist_chunks > s.chunks:
            raise DamagedCaptureError("summary has histograms of more chunks than it counts")
        if s.complete and s.hist.total != s.events:
            raise DamagedCaptureError("summary histograms disagree with its event count")
        losses = doc.get("losses", [])
        if not isinstance(losses, list) or len(losses) > MAX_SUMM_LOSSES:
            raise DamagedCaptureError("summary losses malformed")
        for row in losses:
            if not isinstance(row, list) or len(row) < 6 or not isinstance(row[1], str):
                raise DamagedCaptureError("summary loss row malformed")
            s.losses.append(LossTotal(checked_int(row[0], "loss cpu"), row[1],
                                      checked_int(row[2], "loss count"), checked_int(row[3], "loss blocks"),
                                      opt(row[4], "loss t_first"), opt(row[5], "loss t_last")))
        clock = doc.get("clock")
        if clock is not None:
            if not isinstance(clock, list) or len(clock) > MAX_SUMM_CLOCK:
                raise DamagedCaptureError("summary clock malformed")
            pairs = []
            for p in clock:
                if not isinstance(p, list) or len(p) != 2:
                    raise DamagedCaptureError("summary clock pair malformed")
                pairs.append((checked_int(p[0], "clock"), checked_int(p[1], "clock")))
            s.clock = pairs
        stats = doc.get("stats")
        s.stats = stats if isinstance(stats, dict) else {}
        return s


def summary_before(f: BinaryIO, end: int, first_block: int) -> tuple[CaptureSummary | None, str, bool]:
    """The SUMM block that ends at ``end`` (the index offset the trailer gives), found from
    the length its last field repeats (SPEC 9.2): (summary, "", _) or (None, why, hard), hard
    being False when the block before the index is simply not a SUMM block."""
    why = "missing"
    if end - first_block >= BLOCK_OVERHEAD:
        f.seek(end - BLOCK_TAIL.size)
        _, total = BLOCK_TAIL.unpack(f.read(BLOCK_TAIL.size))
        start = end - total
        if total < BLOCK_OVERHEAD or start < first_block or total - BLOCK_OVERHEAD > MAX_SUMM_PAYLOAD:
            why = "its length field is wrong"
        else:
            f.seek(start)
            try:
                block = read_block(f, start)
                if block.type != SUMM:
                    return None, "no summary block before the index; reading the index", False
                return CaptureSummary.from_doc(unpack(block.payload, "summary"), start), "", False
            except (Damage, EOFError, DamagedCaptureError) as exc:
                why = exc.reason if isinstance(exc, Damage) else str(exc) or "cut short"
    return None, f"summary block unusable ({why}); reading the index instead", True
