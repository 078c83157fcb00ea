"""Whole columns formatted at once, for replay and export rows.

No Python step per event: low-cardinality transformations (names, durations, sizes, errno
names, dates) are computed once per distinct value and gathered with numpy; integers and times
of day are written as digits (integers four at a time) into byte matrices (RowMatrix, below), from which a
chunk's rows come out as one string. Every function here gives exactly what the per-value
function it replaces (ops/units.py, ops/text.py) gives, for every input: tests/test_rows_fast.py
compares them on random columns and chunks, tests/test_rows_property.py on columns hypothesis
draws. The cost that remains is per row and part (a few ns to copy each of a row's 20-30
fields into a matrix, assembled in cache-sized tiles) and per byte (numpy's boolean compress
that drops the NUL padding, about 1 ns a byte).
"""

from __future__ import annotations

import errno as _errno
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from aether_rec.ops.units import fmt_duration

I64_MIN = -(2**63)
I64_MAX = 2**63 - 1
NS = 1_000_000_000
DAY_NS = 86_400 * NS


def gather(words: Sequence[Any], codes: np.ndarray) -> list[Any]:
    """``[words[c] for c in codes]`` without a Python step per element."""
    table = np.empty(len(words), dtype=object)
    table[:] = list(words)
    return table[codes].tolist()


FEW = 16  # distinct values found by comparisons rather than a sort


def few(values: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(distinct values, code of each value) when there are at most FEW distinct ones, as
    a sample of ``values`` shows and the values missing from it confirm (each code is then
    the number of distinct values below it: FEW comparisons, no sort); None otherwise."""
    n = len(values)
    if n <= 4 * FEW:
        return None
    uniq = np.unique(values[:: max(1, n // 64)])
    if len(uniq) > FEW:
        return None
    codes = _below(values, uniq)
    missed = uniq[codes] != values
    if np.count_nonzero(missed) > n // 16:  # not rare: the sample saw a fraction of many values
        return None
    if missed.any():  # rare values the sample missed (an errno among sizes): add them
        uniq = np.union1d(uniq, values[missed])
        if len(uniq) > FEW:
            return None
        codes = _below(values, uniq)
    return uniq, codes


def _below(values: np.ndarray, uniq: np.ndarray) -> np.ndarray:
    """How many of ``uniq`` (sorted, at most FEW) are below each value: counted in bytes,
    which numpy adds 8 times faster than intp."""
    codes = np.zeros(len(values), dtype=np.uint8)
    for u in uniq[:-1]:
        codes += values > u
    return codes


def distinct(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(values, return_inverse=True)``, without its sort when there are few values."""
    found = few(values)
    if found is not None:
        return found
    uniq, inv = np.unique(values, return_inverse=True)
    return uniq, inv.reshape(-1)


def coded(values: np.ndarray, fn: Callable[[Any], Any]) -> tuple[list[Any], np.ndarray]:
    """(table, codes) with ``table[codes[i]] == fn(values[i])``, ``fn`` called once per
    distinct value."""
    if not values.size:
        return [fn(0)], np.zeros(0, dtype=np.intp)
    uniq, inv = distinct(values)
    return [fn(v) for v in uniq.tolist()], inv


def by_value(values: np.ndarray, fn: Callable[[Any], Any]) -> list[Any]:
    """``[fn(v) for v in values]``, calling ``fn`` once per distinct value."""
    if not values.size:
        return []
    table, codes = coded(values, fn)
    return gather(table, codes)


# fmt_duration prints 3 significant digits (or whole units): its text depends on the value
# only through (decade, value // q, which side of q/2 the rest falls). Mapping every value to a
# representative of its class leaves few distinct values to format. Values of 1e11 ns and more
# go through float rounding the classes do not model: they are their own representatives.
_DECADES = np.array([10**k for k in range(3, 12)], dtype=np.uint64)  # 1e3 .. 1e11
_QUANTA = np.array([1, 10, 100, 1000, 10**4, 10**5, 10**6, 10**7, 10**8], dtype=np.uint64)


def durations(ns: np.ndarray) -> list[str]:
    """``[fmt_duration(v) for v in ns]`` for an unsigned ns column."""
    return gather(*duration_codes(ns))


def duration_codes(ns: np.ndarray, fn: Callable[[Any], str] = fmt_duration) -> tuple[list[str], np.ndarray]:
    """``coded(ns, fn)`` for fmt_duration (or a function of its text), few distinct values."""
    return coded(duration_classes(ns), fn)


def duration_classes(ns: np.ndarray) -> np.ndarray:
    """Every value replaced by a representative of its fmt_duration text (see above)."""
    v = ns.astype(np.uint64, copy=False)
    q = _QUANTA[np.searchsorted(_DECADES[:-1], v, side="right")]
    big = v >= _DECADES[-1]
    base = v - v % q
    rest2 = (v % q) * np.uint64(2)
    rep = np.where(rest2 == q, base + q // np.uint64(2), np.where(rest2 < q, base, base + q - np.uint64(1)))
    return np.where((q == 1) | big, v, rep)


def errnames(result: np.ndarray) -> list[str | None]:
    """The errno name of every negative result, None for the others (rows.py's ``error``)."""
    return by_value(result, lambda r: _errno.errorcode.get(-r, str(-r)) if r < 0 else None)


def wall_parts(real: np.ndarray | None, n: int) -> tuple[np.ndarray, ...]:
    """A wall-clock ns column split for formatting: (valid, day, hour, minute, second, ns of
    the second) arrays, ``valid`` False where ``iso_utc`` has no wall time (no clock mapping,
    or a saturated value). Fields of invalid rows are 0."""
    if real is None:
        z = np.zeros(n, dtype=np.int64)
        return np.zeros(n, dtype=bool), z, z, z, z, z
    r = real.astype(np.int64, copy=False)
    valid = (r != I64_MIN) & (r != I64_MAX)
    r = np.where(valid, r, 0)
    sec = r // NS  # floor, as iso_utc's fromtimestamp(ns // 1e9)
    sod = sec % 86_400
    day = sec // 86_400
    return valid, day, sod // 3600, sod // 60 % 60, sod % 60, r % NS


def fixed_digits(v: np.ndarray, width: int) -> np.ndarray:
    """(n x width) zero-padded decimal digits of values known to be in [0, 10**width)."""
    out = np.empty((len(v), width), dtype=np.uint8)
    _digits_into(out, v.astype(np.uint32 if width <= 9 else np.uint64), width, width)
    out += 48
    return out


# -- rows as one byte matrix -------------------------------------------------------------------------
# A chunk's rows are built as an (n x W) byte matrix, one block of columns per field, each value
# padded with NUL bytes; dropping every NUL leaves the rows one after the other. Rows never hold a
# NUL of their own: text and csv escape control characters, JSON writes \u0000.

_U8 = np.uint8
_POW10 = [10**k for k in range(20)]
_DIGITS4 = np.frombuffer(b"".join(b"%04d" % i for i in range(10_000)), dtype=np.uint32)  # "0000".."9999"
_POW10_U64 = np.array(_POW10, dtype=np.uint64)  # searchsorted(side="right") gives the digit count
# a 4-digit group by value, then by value + 10_000 when no digit is left of it: its leading zeros
# as NULs, and a 0 group empty (_GROUP) or "0" when it is a value's last group (_GROUP_LOW)
_GROUP = np.concatenate([_DIGITS4, np.frombuffer(b"".join(
    (b"%d" % i).rjust(4, b"\0") if i else b"\0" * 4 for i in range(10_000)), dtype=np.uint32)])
_GROUP_LOW = np.concatenate([_DIGITS4, np.frombuffer(b"".join(
    (b"%d" % i).rjust(4, b"\0") for i in range(10_000)), dtype=np.uint32)])


def utf8_table(words: Sequence[str]) -> np.ndarray:
    """(len(words) x widest) UTF-8 bytes, NUL-padded."""
    enc = [w.encode("utf-8", "surrogatepass") for w in words]
    width = max((len(b) for b in enc), default=0) or 1
    buf = b"".join(b.ljust(width, b"\0") for b in enc)
    return np.frombuffer(buf, dtype=_U8).reshape(len(enc), width)


def _bytes_table(enc: Sequence[bytes]) -> np.ndarray:
    width = max((len(b) for b in enc), default=0) or 1
    buf = b"".join(b.ljust(width, b"\0") for b in enc)
    return np.frombuffer(buf, dtype=_U8).reshape(len(enc), width)


class Memo:
    """``fn(value)`` as UTF-8 bytes for fields with many distinct values but far fewer than
    events (durations: a few thousand per slice, tens of thousands in all), kept from one
    slice and chunk to the next: a sorted array of the values seen and a byte table of their
    texts, so that a slice's values are found with one searchsorted, ``fn`` called once per
    value ever (the memo starts over beyond ``limit`` values)."""

    def __init__(self, fn: Callable[[Any], str], limit: int = 1 << 17) -> None:
        self.fn = fn
        self.limit = limit
        self.keys = np.zeros(0, dtype=np.uint64)  # sorted
        self.where = np.zeros(0, dtype=np.intp)  # row of keys[i] in table
        self.table = np.zeros((0, 1), dtype=_U8)
        self.lock = threading.Lock()  # slices are built on two threads (rows.slices)

    def _texts(self, values: np.ndarray) -> np.ndarray:
        return _bytes_table([self.fn(v).encode("utf-8", "surrogatepass") for v in values.tolist()])

    def lookup(self, uniq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A byte table and the row in it of each value of ``uniq`` (sorted, distinct)."""
        with self.lock:
            return self._lookup(uniq)

    def _lookup(self, uniq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if len(uniq) > self.limit:  # more than the memo holds: a table of this slice's own
            return self._texts(uniq), np.arange(len(uniq))
        pos = np.searchsorted(self.keys, uniq)
        hit = np.zeros(len(uniq), dtype=bool)
        inside = pos < len(self.keys)
        hit[inside] = self.keys[pos[inside]] == uniq[inside]
        if not hit.all():
            if len(self.keys) + int((~hit).sum()) > self.limit:  # start over
                self.keys = self.keys[:0]
                self.where = self.where[:0]
                self.table = self.table[:0]
                hit[:] = False
            new = uniq[~hit]
            add = self._texts(new)
            w = max(self.table.shape[1], add.shape[1])
            self.table = np.concatenate([np.pad(t, ((0, 0), (0, w - t.shape[1]))) for t in (self.table, add)])
            keys = np.concatenate([self.keys, new.astype(self.keys.dtype)])
            where = np.concatenate([self.where, np.arange(len(self.where), len(keys))])
            order = np.argsort(keys, kind="stable")
            self.keys, self.where = keys[order], where[order]
            pos = np.searchsorted(self.keys, uniq)
        return self.table, self.where[pos]


TILE = 2048  # rows of a matrix assembled at once (see RowMatrix._tiles)
# a matrix's width, its template row (every literal) and each other part as (column, width,
# one w-byte item per row)
Layout = tuple[int, np.ndarray, list[tuple[int, int, np.ndarray]]]


class RowMatrix:
    """Fields appended left to right; ``data()`` gives the rows as bytes and where each one
    ends, ``text()`` the same as a string."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.parts: list[np.ndarray] = []  # (n x w) uint8 each; a literal is broadcast (stride 0)

    def lit(self, s: str) -> None:
        row = np.frombuffer(s.encode(), dtype=_U8)
        self.parts.append(np.broadcast_to(row, (self.n, len(row))))

    def words(self, table: Sequence[str], codes: np.ndarray) -> None:
        """``table[code]`` per row (pad the words beforehand for aligned columns)."""
        self.parts.append(gather_rows(utf8_table(table), codes))

    def coded(self, values: np.ndarray, memo: Memo) -> None:
        """``memo.fn(value)`` per row, the function called once per distinct value ever."""
        if not values.size:
            self.parts.append(np.zeros((0, 1), dtype=_U8))
            return
        uniq, inv = distinct(values)
        table, rows = memo.lookup(uniq)
        self.parts.append(gather_rows(table, rows[inv]))

    def table(self, table: np.ndarray, codes: np.ndarray) -> None:
        """Row ``codes[i]`` of a byte table (utf8_table) per row."""
        self.parts.append(gather_rows(table, codes))

    def per_row(self, values: Sequence[str]) -> None:
        self.parts.append(utf8_table(values))

    def digits(self, v: np.ndarray, width: int) -> None:
        """Zero-padded digits of values in [0, 10**width)."""
        self.parts.append(fixed_digits(v, width))

    def ints(self, v: np.ndarray, width: int = 0) -> None:
        """Decimal integers, right-justified with spaces to ``width`` (longer ones overflow)."""
        self.parts.append(int_matrix(v, width))

    def choose(self, mask: np.ndarray, a: RowMatrix, b: RowMatrix) -> None:
        """Per row, the fields of ``a`` where ``mask``, else those of ``b``."""
        if mask.all():  # (NUL columns that padding would add change nothing)
            self.parts += a.parts
            return
        if not mask.any():
            self.parts += b.parts
            return
        ma, mb = a.matrix(), b.matrix()
        w = max(ma.shape[1], mb.shape[1])
        picked = int(np.count_nonzero(mask))
        if min(picked, self.n - picked) * 8 < self.n:  # few rows of one side (errors): the
            # other side's matrix, then those rows overwritten
            if 2 * picked > self.n:
                most, rest, rows = ma, mb, np.flatnonzero(~mask)
            else:
                most, rest, rows = mb, ma, np.flatnonzero(mask)
            out = most if most.shape[1] == w else np.pad(most, ((0, 0), (0, w - most.shape[1])))
            out[rows, rest.shape[1]:] = 0
            out[rows, :rest.shape[1]] = rest[rows]
            self.parts.append(out)
            return
        if not mb.shape[1] or not ma.shape[1]:  # one side empty: the other where chosen, else NULs
            full, keep = (ma, mask) if ma.shape[1] else (mb, ~mask)
            self.parts.append(full * keep[:, None])
            return
        if ma.shape[1] < w:
            ma = np.pad(ma, ((0, 0), (0, w - ma.shape[1])))
        if mb.shape[1] < w:
            mb = np.pad(mb, ((0, 0), (0, w - mb.shape[1])))
        self.parts.append(np.where(mask[:, None], ma, mb))

    def _layout(self) -> Layout:
        width = sum(p.shape[1] for p in self.parts)
        template = np.zeros(width, dtype=_U8)
        items = []
        a = 0
        for p in self.parts:
            w = p.shape[1]
            if p.strides[0] == 0:  # a literal: one value for every row
                template[a:a + w] = p[0]
            elif w:
                items.append((a, w, np.ascontiguousarray(p).view(f"V{w}").reshape(self.n)))
            a += w
        return width, template, items

    @staticmethod
    def _fill(out: np.ndarray, first: int, layout: Layout) -> None:
        """Rows ``first ..`` of the matrix into ``out``: the template row, then every other part
        copied into its columns as one w-byte item per row (a copy per item, not per byte)."""
        width, template, items = layout
        k = len(out)
        out[...] = template
        for a, w, item in items:
            dst = np.ndarray((k,), dtype=f"V{w}", buffer=out, offset=a, strides=(width,))
            dst[...] = item[first:first + k]

    def matrix(self) -> np.ndarray:
        """The parts side by side in one (n x W) matrix."""
        layout = self._layout()
        out = np.empty((self.n, layout[0]), dtype=_U8)
        if self.n and layout[0]:
            self._fill(out, 0, layout)
        return out

    def _tiles(self) -> Iterator[np.ndarray]:
        """The matrix TILE rows at a time, in one buffer that each tile overwrites. A part
        copied into a whole matrix writes one cache line per row, the matrix far bigger
        than the cache; a tile stays in it while every part is copied in and while its NULs
        are dropped (a third less time for csv and jsonl rows than the whole matrix)."""
        layout = self._layout()
        buf = np.empty((min(self.n, TILE), layout[0]), dtype=_U8)
        for first in range(0, self.n, TILE):
            tile = buf[: min(TILE, self.n - first)]
            if layout[0]:
                self._fill(tile, first, layout)
            yield tile

    def row_bytes(self) -> bytes:
        """The rows as UTF-8 bytes (``data()`` without the row ends, which cost a pass over
        them: exports write the bytes and need nothing else)."""
        return b"".join(t[t != 0].tobytes() for t in self._tiles())

    def data(self) -> tuple[bytes, np.ndarray]:
        """The rows as UTF-8 bytes, and the end offset (in bytes) of every row. Rows end with
        their only newline (text and csv escape control characters, JSON writes \\n): row
        ends are where the newlines are."""
        pieces, ends = [], [np.zeros(0, dtype=np.int64)]
        base = 0
        for t in self._tiles():
            data = t[t != 0]
            e = np.flatnonzero(data == 10) + 1
            if len(e) != len(t):  # pragma: no cover - rows without their newline
                e = np.cumsum(np.count_nonzero(t, axis=1))
            ends.append(e + base)
            base += data.size
            pieces.append(data.tobytes())
        return b"".join(pieces), np.concatenate(ends)

    def text(self) -> tuple[str, np.ndarray]:
        """The rows as one string, and the end offset (in characters) of every row."""
        pieces, chars = [], [np.zeros(0, dtype=np.int64)]
        for t in self._tiles():
            keep = t != 0
            data = t[keep]
            if data.size and data.max() >= 0x80:  # multi-byte characters: count lead bytes only
                chars.append(np.count_nonzero(keep & ((t & 0xC0) != 0x80), axis=1))
            else:
                chars.append(np.count_nonzero(keep, axis=1))
            pieces.append(data.tobytes())
        return b"".join(pieces).decode("utf-8", "surrogatepass"), np.cumsum(np.concatenate(chars))


def gather_rows(table: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """``table[codes]`` for a (k x w) byte table, one w-byte item per row (not w bytes)."""
    k, w = table.shape
    if not w:
        return np.zeros((len(codes), 0), dtype=_U8)
    items = np.ascontiguousarray(table).view(f"V{w}").reshape(k)
    return items.take(codes).view(_U8).reshape(len(codes), w)


def _digits_into(out: np.ndarray, rest: np.ndarray, right: int, count: int) -> np.ndarray:
    """Write the ``count`` lowest decimal digits of ``rest`` as values 0-9 (not yet
    characters) into columns ``right-count .. right-1`` of ``out``; return what is left
    (``rest // 10**count``). No ``%``: numpy's integer remainder is several times slower than
    its division by a constant."""
    ten = rest.dtype.type(10)
    rest = rest.copy()
    q = np.empty_like(rest)
    tmp = np.empty_like(rest)
    for k in range(count):
        np.floor_divide(rest, ten, out=q)
        np.multiply(q, ten, out=tmp)
        np.subtract(rest, tmp, out=tmp)
        out[:, right - 1 - k] = tmp
        rest, q = q, rest
    return rest


def int_matrix(v: np.ndarray, width: int = 0) -> np.ndarray:
    """(n x w) bytes of each integer in decimal, right-justified with spaces to ``width``,
    NUL-padded on the left to the longest."""
    n = len(v)
    if n > 4 * FEW:
        lo, hi = v.min(), v.max()
        if int(hi) - int(lo) < n // 8:  # a narrow range (cpu, fd, a constant): format it, gather
            table = int_matrix(np.arange(int(hi) - int(lo) + 1).astype(v.dtype) + lo, width)
            return gather_rows(table, (v - lo).astype(np.intp))
        found = few(v)
        if found is not None:  # few values far apart (pids, sizes, results): the same
            return gather_rows(int_matrix(found[0], width), found[1])
    if v.dtype.kind == "u":
        neg = None
        mag = v.astype(np.uint64, copy=False)
    else:
        x = v.astype(np.int64, copy=False)
        neg = x < 0
        if neg.any():
            mag = np.where(neg, -(x + 1), x).astype(np.uint64) + neg  # |INT64_MIN| fits
        else:
            neg, mag = None, x.astype(np.uint64)
    top = int(mag.max()) if n else 0
    nd_max = len(str(top))
    small = mag.astype(np.uint32) if top < 2**32 else mag  # 32-bit division is twice as fast
    # digits four at a time from tables of uint32: "0000".."9999" for a group with digits
    # above it, NULs instead of leading zeros for the top group ("0" for a value of 0): no
    # digit count per row and no mask over the matrix
    groups = (nd_max + 3) // 4
    sign = 1 if neg is not None else 0
    wide = (max(4 * groups + sign, width) + 3) // 4
    out32 = np.empty((n, wide), dtype=np.uint32)
    out32[:, : wide - groups] = 0
    rest, g, hi = small, wide, top
    while g > wide - groups:
        if hi >= 2**32:  # 10 digits or more left: 8 of them in 32 bits
            q = rest // np.uint64(10**8)
            low = (rest - q * np.uint64(10**8)).astype(np.uint32)
            a = low // np.uint32(10_000)
            q0 = q == 0
            table = _GROUP_LOW if g == wide else _GROUP
            out32[:, g - 1] = table.take(low - a * np.uint32(10_000) + (q0 & (a == 0)) * np.uint32(10_000))
            out32[:, g - 2] = _GROUP.take(a + q0 * np.uint32(10_000))
            rest, g, hi = q, g - 2, hi // 10**8
            continue
        rest = rest.astype(np.uint32, copy=False)
        a = rest // np.uint32(10_000)
        table = _GROUP_LOW if g == wide else _GROUP
        out32[:, g - 1] = table.take((rest - a * np.uint32(10_000)) + (a == 0) * np.uint32(10_000))
        rest, g, hi = a, g - 1, hi // 10_000
    w = max(nd_max + sign, width)  # the columns needed, at the right (the rest are NULs)
    out = out32.view(_U8).reshape(n, 4 * wide)[:, 4 * wide - w:]
    if neg is not None:  # "-" left of the digits of the (few) negative values
        rows = np.flatnonzero(neg)
        nd = np.searchsorted(_POW10_U64, mag[rows], side="right")
        out[rows, w - 1 - np.maximum(nd, 1)] = ord("-")
    if width:  # NULs of the last ``width`` columns become spaces (every other byte is above 32)
        block = out[:, w - width:]
        np.maximum(block, _U8(32), out=block)
    return out
