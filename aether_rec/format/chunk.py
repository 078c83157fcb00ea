"""In-memory event chunks (numpy columns) and their summaries (what the index holds)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aether_rec.errors import DamagedCaptureError
from aether_rec.format.blocks import checked_int
from aether_rec.format.limits import MAX_MERGE_BYTES, MAX_SUMMARY_PIDS
from aether_rec.schema import COLUMN_BY_NAME, Column


@dataclass
class ChunkInfo:
    """What the index says about one chunk: enough to skip it without reading it."""

    offset: int  # of the CHNK block in the file (-1 for a chunk not stored in a file)
    length: int  # of the whole block
    n: int
    t_first: int  # smallest ts
    t_last: int  # largest ts
    lat_max: int
    layers: int  # bitmask: 1 << layer code
    ops: int  # bitmask: 1 << op code
    pid_min: int
    pid_max: int
    pids: list[int] | None  # sorted, None when more than MAX_SUMMARY_PIDS
    raw: int = 0  # decompressed body size in bytes (0: unknown)
    # since 1.2: the chunk's latency histograms as stored in its index entry (format/summary.py,
    # decoded on use); None: unknown, read the chunk
    hist: bytes | None = None

    def summary(self) -> dict[str, Any]:
        """The summary map stored at the front of a CHNK payload (format/SPEC.md)."""
        return {
            "n": self.n,
            "t0": self.t_first,
            "t1": self.t_last,
            "lat_max": self.lat_max,
            "layers": self.layers,
            "ops": self.ops,
            "pid_min": self.pid_min,
            "pid_max": self.pid_max,
            "pids": self.pids,
        }

    @classmethod
    def from_summary(cls, s: Mapping[str, Any], offset: int, length: int) -> ChunkInfo:
        """From a chunk summary read from a file; malformed fields -> DamagedCaptureError."""
        return cls(
            offset=offset,
            length=length,
            n=checked_int(s.get("n"), "n"),
            t_first=checked_int(s.get("t0"), "t0"),
            t_last=checked_int(s.get("t1"), "t1"),
            lat_max=checked_int(s.get("lat_max", 0), "lat_max"),
            layers=checked_int(s.get("layers", 0), "layers"),
            ops=checked_int(s.get("ops", 0), "ops"),
            pid_min=checked_int(s.get("pid_min", 0), "pid_min"),
            pid_max=checked_int(s.get("pid_max", 0), "pid_max"),
            pids=_pids(s.get("pids")),
            raw=checked_int(s.get("raw", 0), "raw"),
        )

    ROW_FIELDS = ("offset", "length", "n", "t_first", "t_last", "lat_max", "layers", "ops", "pid_min",
                  "pid_max", "pids", "raw")

    def to_row(self) -> list[Any]:
        """Compact index entry (format/SPEC.md, INDX)."""
        return [
            self.offset, self.length, self.n, self.t_first, self.t_last, self.lat_max,
            self.layers, self.ops, self.pid_min, self.pid_max, self.pids, self.raw,
        ] + ([] if self.hist is None else [self.hist])

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> ChunkInfo:
        """From an index entry read from a file; malformed -> DamagedCaptureError."""
        if not isinstance(row, list) or len(row) < 11:
            raise DamagedCaptureError("index entry for a chunk is malformed")
        v = [checked_int(x, "index entry") for x in row[:10]]
        return cls(
            v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9],
            pids=_pids(row[10]),
            raw=checked_int(row[11], "raw") if len(row) > 11 else 0,
            # a 13th element that is not a byte string is treated as absent (SPEC 9.1)
            hist=row[12] if len(row) > 12 and isinstance(row[12], bytes) else None,
        )


def _pids(v: Any) -> list[int] | None:
    if v is None:
        return None
    if not isinstance(v, list) or len(v) > MAX_SUMMARY_PIDS:
        raise DamagedCaptureError("chunk summary field 'pids' is malformed")
    return [checked_int(p, "pids") for p in v]


def _is_str(name: str) -> bool:
    col = COLUMN_BY_NAME.get(name)
    return col is not None and col.is_str


def _py(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def _bitmask(codes: np.ndarray) -> int:
    """Bit c set for each code c < 64 present (layer and op codes are one byte)."""
    mask = 0
    if codes.dtype == np.uint8:
        present = np.flatnonzero(np.bincount(codes, minlength=64))
    else:
        present = distinct(codes)
    for c in present.tolist():
        if 0 <= int(c) < 64:
            mask |= 1 << int(c)
    return mask


@dataclass
class Chunk:
    """A batch of events as numpy columns.

    Integer columns are arrays of the schema dtype. String columns (``comm``, ``path``,
    ``source``, or any column a later version adds with type ``str``) are uint32 code
    arrays indexing ``dicts[name]``. A column the chunk lacks reads as its default.
    """

    n: int
    columns: dict[str, np.ndarray]
    dicts: dict[str, list[str]] = field(default_factory=dict)
    info: ChunkInfo | None = None

    # -- access ---------------------------------------------------------------
    def column(self, name: str) -> np.ndarray:
        """The column ``name`` (codes for string columns), default-filled when absent."""
        arr = self.columns.get(name)
        if arr is not None:
            return arr
        col = COLUMN_BY_NAME.get(name)
        if col is None or col.is_str:
            return np.zeros(self.n, dtype=np.uint32)
        return np.full(self.n, col.default, dtype=col.dtype)

    def dictionary(self, name: str) -> list[str]:
        if name in self.dicts:
            return self.dicts[name]
        return [""]  # absent string column: every code 0 -> ""

    def strings(self, name: str) -> np.ndarray:
        """A string column decoded to an object array."""
        table = np.array(self.dictionary(name) or [""], dtype=object)
        return np.asarray(table[self.column(name)])

    def is_str(self, name: str) -> bool:
        return name in self.dicts

    def arrays(self, names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Columns as numpy arrays, string columns (and absent schema string columns) as
        object arrays of their strings; by default the chunk's columns, or every schema
        column when it has none."""
        names = list(names) if names else list(self.columns) or list(COLUMN_BY_NAME)
        return {k: (self.strings(k) if self.is_str(k) or _is_str(k) else self.column(k)) for k in names}

    def events(self) -> Iterator[dict[str, Any]]:
        """The events as dicts of Python values (slow: for tests and small captures)."""
        names = list(self.columns)
        decoded = {k: (self.strings(k) if self.is_str(k) else self.columns[k]) for k in names}
        for i in range(self.n):
            yield {k: _py(decoded[k][i]) for k in names}

    def take(self, sel: np.ndarray | slice) -> Chunk:
        """A new chunk with the events selected by a boolean mask, index array or slice."""
        cols = {k: v[sel] for k, v in self.columns.items()}
        if isinstance(sel, slice):
            n = len(range(*sel.indices(self.n)))
        else:
            n = int(np.count_nonzero(sel)) if sel.dtype == bool else len(sel)
        return Chunk(n, cols, dict(self.dicts))

    def compute_info(self, offset: int = -1, length: int = 0) -> ChunkInfo:
        if self.n == 0:
            return ChunkInfo(offset, length, 0, 0, 0, 0, 0, 0, 0, 0, [])
        ts = self.column("ts")
        pid = self.column("pid")
        upids = distinct(pid)
        return ChunkInfo(
            offset=offset,
            length=length,
            n=self.n,
            t_first=int(ts.min()),
            t_last=int(ts.max()),
            lat_max=int(self.column("lat").max()),
            layers=_bitmask(self.column("layer")),
            ops=_bitmask(self.column("op")),
            pid_min=int(upids[0]),
            pid_max=int(upids[-1]),
            pids=[int(p) for p in upids] if len(upids) <= MAX_SUMMARY_PIDS else None,
        )

    def sorted_by_ts(self) -> Chunk:
        """This chunk stably sorted by ts (itself when it already is)."""
        return self if self.n < 2 else Chunk.concat([self], by_ts=True)

    # -- construction -----------------------------------------------------------
    @classmethod
    def from_columns(cls, data: Any, str_columns: Sequence[str] = ()) -> Chunk:
        """Build a chunk from a numpy structured array or a mapping of name -> array.

        Fields named like schema columns are kept (unknown names are kept too, so a
        writer can carry columns a later version defines). String columns may be
        given as bytes, str or object arrays; they are dictionary-coded here.
        """
        if isinstance(data, Chunk):
            return data
        if isinstance(data, np.ndarray) and data.dtype.names:
            names = list(data.dtype.names)
            get = data.__getitem__
            n = len(data)
        elif isinstance(data, Mapping):
            names = list(data.keys())
            get = data.__getitem__
            lens = {len(np.asarray(data[k])) for k in names}
            if len(lens) > 1:
                raise ValueError(f"columns of different lengths: {sorted(lens)}")
            n = lens.pop() if lens else 0
        else:
            raise TypeError("events must be a Chunk, a numpy structured array or a dict")
        cols: dict[str, np.ndarray] = {}
        dicts: dict[str, list[str]] = {}
        for name in names:
            arr = np.asarray(get(name))
            col: Column | None = COLUMN_BY_NAME.get(name)
            if (col is not None and col.is_str) or name in str_columns or arr.dtype.kind in "SUO":
                cols[name], dicts[name] = encode_strings(arr)
            elif col is not None:
                cols[name] = arr.astype(col.dtype, copy=False)
            elif arr.dtype.kind in "iub":
                cols[name] = arr
            else:
                raise TypeError(f"column {name!r} has unsupported dtype {arr.dtype}")
        return cls(n, cols, dicts)

    @classmethod
    def concat(cls, chunks: Sequence[Chunk], *, by_ts: bool = False, release: bool = False) -> Chunk:
        """One chunk holding all events of ``chunks`` in order, dictionaries unified;
        ``by_ts``: stably sorted by ts. ``release``: each column is removed from the
        chunks once it is copied (they are left empty), so that a column's memory can go
        before the next one is built: the writer's pending batches are never held twice."""
        chunks = [c for c in chunks if c.n]
        if not chunks:
            return cls(0, {}, {})
        order: np.ndarray | None = None
        if by_ts and any("ts" in c.columns for c in chunks):
            each = [c.column("ts") for c in chunks]
            ts = each[0] if len(each) == 1 else np.concatenate(each)
            if len(ts) > 1 and not bool(np.all(ts[:-1] <= ts[1:])):
                order = np.argsort(ts, kind="stable")
            del ts, each
        if len(chunks) == 1 and order is None:
            one = chunks[0]
            if not release:
                return one
            cols_, one.columns = one.columns, {}
            return cls(one.n, cols_, dict(one.dicts))
        names: list[str] = []
        for c in chunks:
            names.extend(k for k in c.columns if k not in names)
        cols: dict[str, np.ndarray] = {}
        dicts: dict[str, list[str]] = {}
        for name in names:
            if any(c.is_str(name) for c in chunks):
                table: dict[str, int] = {}
                parts = []
                for c in chunks:
                    # A chunk without this string column (or, in a damaged file, with an
                    # integer column of the same name) contributes empty strings.
                    d = c.dictionary(name) if c.is_str(name) else [""]
                    codes = c.columns[name] if c.is_str(name) else np.zeros(c.n, np.uint32)
                    remap = np.fromiter(
                        (table.setdefault(s, len(table)) for s in d), dtype=np.uint32, count=len(d)
                    )
                    parts.append(remap[codes])
                col = np.concatenate(parts)
                dicts[name] = list(table)
            else:
                col = np.concatenate([c.column(name) for c in chunks])
            cols[name] = col if order is None else col[order]
            del col
            if release:
                for c in chunks:
                    c.columns.pop(name, None)
        return cls(sum(c.n for c in chunks), cols, dicts)


def distinct(arr: np.ndarray, few: int = 16) -> np.ndarray:
    """``np.unique(arr)``, cheaply when the values are few (``_sampled``)."""
    found = _sampled(arr, few)
    return np.unique(arr) if found is None else found


def few_distinct(arr: np.ndarray, few: int = 16) -> np.ndarray | None:
    """``np.unique(arr)`` when it has at most ``few`` values, else None."""
    found = _sampled(arr, few)
    if found is not None:
        return found
    u = np.unique(arr)
    return u if len(u) <= few else None


def _sampled(arr: np.ndarray, few: int) -> np.ndarray | None:
    """The distinct values of ``arr`` when those of a sample are at most ``few`` and cover
    the whole array, else None. A recorded column usually holds few distinct values (pids,
    devices, (pid, fd) keys): one comparison per value and element then replaces a hash or
    sort of every element."""
    n = len(arr)
    if n <= 4096:
        return None
    cand = np.unique(arr[:: n // 1024])
    if len(cand) > few:
        return None
    covered = arr == cand[0]
    for c in cand[1:]:
        covered |= arr == c
    return cand if covered.all() else None


def _encode_short_bytes(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(first index of each distinct value, inverse) for a bytes array of at most 16
    bytes per item. Equal neighbours are one run (recorded columns come in runs: a
    thread's events share its comm); one 64-bit hash per run is sorted instead of the
    strings, and every run's value is then checked against its representative, so a
    collision only costs the slow path (None)."""
    n = len(arr)
    padded = np.zeros(n, "S16")
    padded[:] = arr
    halves = padded.view("<u8").reshape(n, 2)
    lo, hi = halves[:, 0], halves[:, 1]
    starts = np.flatnonzero((lo[1:] != lo[:-1]) | (hi[1:] != hi[:-1])) + 1
    starts = np.concatenate((np.zeros(min(n, 1), np.intp), starts))
    heads = halves[starts]
    key = heads[:, 0] * np.uint64(0x9E3779B97F4A7C15) ^ heads[:, 1]
    _, first, inv = np.unique(key, return_index=True, return_inverse=True)
    inv = inv.reshape(-1)
    if not np.array_equal(heads[first][inv], heads):
        return None
    if len(starts) == n:
        return first, inv
    return starts[first], np.repeat(inv, np.diff(np.append(starts, n)))


def encode_strings(arr: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Dictionary-code a bytes/str/object array: (uint32 codes, strings)."""
    fast = _encode_short_bytes(arr) if arr.dtype.kind == "S" and arr.dtype.itemsize <= 16 else None
    if fast is not None:
        first, inv = fast
        words = [bytes(b).decode("utf-8", "replace") for b in arr[first].tolist()]
    elif arr.dtype.kind == "S":
        uniq, inv = np.unique(arr, return_inverse=True)
        words = [u.decode("utf-8", "replace") for u in uniq.tolist()]
    else:
        uniq, inv = np.unique(arr.astype(str), return_inverse=True)
        words = [str(u) for u in uniq.tolist()]
    # Different byte strings may decode to the same text: merge them.
    table: dict[str, int] = {}
    remap = np.fromiter((table.setdefault(w, len(table)) for w in words), np.uint32, len(words))
    return remap[inv.reshape(-1)].astype(np.uint32), list(table)


def in_time_order(infos: Sequence[ChunkInfo], decode: Callable[[ChunkInfo], Chunk | None],
                  warn: Callable[..., None]) -> Iterator[Chunk]:
    """Events in global ts order from the chunks of ``infos`` (sorted by (t_first, offset);
    ``decode`` gives one, or None when it cannot), even where chunks overlap in time (an
    I/O that started early and completed late): a chunk's events after the next chunk's
    start wait for it. Each chunk is decoded only once the previous ones are given out."""
    pending: Chunk | None = None
    merge_warned = False
    for i, info in enumerate(infos):
        watermark = infos[i + 1].t_first if i + 1 < len(infos) else None
        chunk = decode(info)
        if chunk is None:
            continue
        if pending is not None and _nbytes(pending) + _nbytes(chunk) > MAX_MERGE_BYTES:
            # Bounded memory before exact order: a capture whose chunks overlap in time by
            # more than this (hostile, or an I/O stuck for very long) comes out in order only
            # piecewise from here.
            if not merge_warned:
                merge_warned = True
                warn(f"chunks overlap in time by more than {MAX_MERGE_BYTES >> 20} MB of "
                     f"events; from offset {info.offset} events are in time order "
                     "only piecewise", hard=False)
            yield pending
            pending = None
        if pending is None and (watermark is None or info.t_last < watermark):
            yield chunk
            continue
        merged = chunk if pending is None else Chunk.concat([pending, chunk], by_ts=True)
        if watermark is None:
            pending = None
            yield merged
            continue
        cut = int(merged.column("ts").searchsorted(watermark, side="left"))
        if cut:
            yield merged.take(slice(0, cut))
        pending = merged.take(slice(cut, merged.n)) if cut < merged.n else None
    if pending is not None and pending.n:
        yield pending


def _nbytes(chunk: Chunk) -> int:
    return sum(a.nbytes for a in chunk.columns.values())
