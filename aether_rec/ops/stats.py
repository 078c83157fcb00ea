"""``stats``: summarise one or more captures in one streaming pass.

Everything is accumulated chunk by chunk in mergeable histograms (see histogram.py), so memory
stays flat whatever the capture size: a few KiB per (layer, op), per ``--by`` group and per open
``--interval`` bucket, plus the ``--top`` candidates. The result is a JSON-able document (the
versioned schema in docs/stats-json.md); the terminal view is rendered from that document, so both
always agree.
"""

from __future__ import annotations

import errno as _errno
import heapq
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aether_rec.errors import UsageError
from aether_rec.format.chunk import Chunk, ChunkInfo
from aether_rec.format.clock import ClockMap
from aether_rec.format.columns import Body
from aether_rec.format.partial import ORIGIN, ChunkSkipped, RawChunk, decode_stored, rows_of
from aether_rec.format.reader import Capture
from aether_rec.ops.expr import ALIASES, FIELDS, MATCH_ALL, Filter, field_values, string_codes
from aether_rec.ops.expr.fields import end_times
from aether_rec.ops.histogram import (
    DEFAULT_PRECISION,
    PERCENTILES,
    GroupedHistograms,
    Histogram,
    bucket_index,
    dense_groups,
    group_slices,
    group_sums,
    relative_error,
)
from aether_rec.ops.pipeline import parallel_map
from aether_rec.ops.units import iso_utc
from aether_rec.ops.window import Selection, source_name
from aether_rec.schema import (
    ENUMS,
    FLAGS,
    LAYER_CODE,
    OP_CODE,
    STORAGE_FD_KINDS,
    dev_name,
    enum_name,
    layer_name,
    op_name,
)

SCHEMA_NAME = "aether-rec/stats"
SCHEMA_VERSION = 1

BLOCK = LAYER_CODE["block"]
SYSCALL = LAYER_CODE["syscall"]
EAGAIN = _errno.EAGAIN  # == EWOULDBLOCK on Linux
PAGE = 4096
READ_OPS = np.array([OP_CODE[o] for o in ("read", "pread", "readv", "preadv", "preadv2")], dtype=np.uint8)
STORAGE_CODES = np.array(sorted(STORAGE_FD_KINDS), dtype=np.uint8)
F_QUEUED = next(bit for bit, name in FLAGS.items() if name == "queued")
MAX_INTERVAL_ROWS = 100_000
# --by: every group is tracked exactly (so that --max-groups keeps the largest), up to this
# many; beyond it new groups are lumped into (other) and the document warns.
MAX_TRACKED_GROUPS = 100_000
NO_LIMIT = 1 << 62  # a group limit no count reaches (the distributed pass tracks and keeps all)
BASE_COLUMNS = ("ts", "lat", "layer", "op", "bytes", "result", "queue", "flags")


@dataclass
class StatsOptions:
    by: Sequence[str] = ()
    interval_ns: int | None = None
    top: int = 10
    where: Filter = MATCH_ALL
    max_groups: int = 1000
    precision: int = DEFAULT_PRECISION
    filter_text: str | None = None  # how to show the selection (default: the expression's text)
    all_fds: bool = False  # False: storage I/O only (files, block devices), the rest counted apart


def grouping(by: Sequence[str]) -> list[str]:
    """The --by columns checked, with ``layer`` added before ``op``: the same op at two
    layers is two things (a read syscall and the block reads it caused), so grouped rows
    keep layers apart, as the per-layer table does."""
    cols = check_by(by)
    if "op" in cols and "layer" not in cols:
        cols.insert(cols.index("op"), "layer")
    return cols


def check_by(by: Sequence[str]) -> list[str]:
    """Validate ``--by`` column names (aliases resolved)."""
    out = []
    for raw in by:
        name = ALIASES.get(raw.strip().lower(), raw.strip().lower())
        if not name:
            continue
        if name not in FIELDS or name in ("ts", "end"):
            ok = ", ".join(sorted(n for n in FIELDS if n not in ("ts", "end")))
            raise UsageError(f"--by: unknown column {raw.strip()!r} (columns: {ok})")
        if name not in out:
            out.append(name)
    return out


# -- per-input bookkeeping ----------------------------------------------------------------------


@dataclass
class _Input:
    index: int
    cap: Capture
    infos: list[ChunkInfo]
    has_clock: bool
    source: str
    clock: ClockMap  # read once, before any helper thread reads chunks

    def to_real(self, mono: np.ndarray) -> np.ndarray:
        """Wall-clock ns through the capture's ClockMap (no file access: safe while a helper
        thread reads chunks)."""
        return self.clock.to_real(mono)


def interleave(inputs: Sequence[_Input], to_real: bool) -> Iterator[tuple[_Input, RawChunk, float]]:
    """Stored chunks of several captures (read, not decoded), interleaved by time; each comes
    with a watermark (real ns when ``to_real``, else monotonic) below which no event is still
    to come."""
    heap: list[tuple[float, int]] = []
    iters: dict[int, Iterator[RawChunk]] = {}
    suffix: dict[int, np.ndarray] = {}
    pos: dict[int, dict[int, int]] = {}
    for inp in inputs:
        if not inp.infos:
            continue
        firsts_u = np.array([i.t_first for i in inp.infos], dtype=np.uint64)  # u64: 2**63 and more too
        if to_real:
            firsts = inp.to_real(firsts_u)
        else:
            firsts = np.minimum(firsts_u, np.uint64(2**63 - 1)).astype(np.int64)
        suffix[inp.index] = np.append(np.minimum.accumulate(firsts[::-1])[::-1], np.iinfo(np.int64).max)
        offsets = {info.offset: k for k, info in enumerate(inp.infos)}
        pos[inp.index] = offsets
        iters[inp.index] = inp.cap.raw_chunks(inp.infos)
        heapq.heappush(heap, (float(suffix[inp.index][0]), inp.index))
    by_index = {inp.index: inp for inp in inputs}
    remaining = {k: float(s[0]) for k, s in suffix.items()}
    while heap:
        _, k = heapq.heappop(heap)
        chunk = next(iters[k], None)
        if chunk is None:
            remaining.pop(k, None)
            continue
        info = chunk.info
        at = pos[k].get(info.offset, 0) if info is not None else 0
        nxt = float(suffix[k][at + 1])
        if nxt >= float(np.iinfo(np.int64).max):
            remaining.pop(k, None)
        else:
            remaining[k] = nxt
        heapq.heappush(heap, (nxt, k))
        watermark = min(remaining.values()) if remaining else float("inf")
        yield by_index[k], chunk, watermark


# -- the accumulator ----------------------------------------------------------------------------


@dataclass
class _Group:
    key: tuple[Any, ...]
    hist: Histogram
    events: int = 0
    bytes: int = 0
    errors: int = 0


@dataclass
class _Acc:
    opts: StatsOptions
    layer_op: GroupedHistograms
    lo_bytes: dict[int, int] = field(default_factory=dict)
    lo_errors: dict[int, int] = field(default_factory=dict)
    errnos: dict[int, int] = field(default_factory=dict)
    queue: Histogram = field(default_factory=Histogram)
    service: Histogram = field(default_factory=Histogram)
    block_events: int = 0
    events: int = 0
    bytes: int = 0
    first_ts: int | None = None  # real (or mono) ns
    last_end: int | None = None
    # --by
    group_ids: dict[tuple[Any, ...], int] = field(default_factory=dict)
    groups: dict[int, _Group] = field(default_factory=dict)
    untracked: bool = False
    # --interval
    intervals: GroupedHistograms | None = None
    iv_bytes: dict[int, int] = field(default_factory=dict)
    iv_errors: dict[int, int] = field(default_factory=dict)
    iv_next: int = 0
    iv_origin: int = 0
    iv_last: int = -1
    iv_rows: list[dict[str, Any]] = field(default_factory=list)
    # --top: heap of (lat, -ts, seq) candidates; rows[seq] = (input, one-event chunk)
    top: list[tuple[int, int, int]] = field(default_factory=list)
    top_rows: dict[int, tuple[_Input, Chunk]] = field(default_factory=dict)
    top_seq: int = 0
    # I/O on pipes, sockets, terminals... left out without --all-fds: fdkind -> events
    not_storage: dict[int, int] = field(default_factory=dict)
    # reads: pages read and pages the reads had to add to the page cache
    read_pages: int = 0
    missed_pages: int = 0
    would_block: int = 0  # EAGAIN results: not errors (non-blocking I/O that had to wait)
    body: Body | None = None  # of the chunk being added, when it was decoded in part


def _top_update(acc: _Acc, inp: _Input, chunk: Chunk, lat: np.ndarray) -> None:
    n_top = acc.opts.top
    if n_top <= 0 or lat.size == 0:
        return
    if len(acc.top) >= n_top and int(lat.max()) <= acc.top[0][0]:
        return
    if lat.size > n_top:
        cand = np.argpartition(lat, lat.size - n_top)[lat.size - n_top :]
    else:
        cand = np.arange(lat.size)
    ts = chunk.column("ts")
    kept: list[tuple[int, int]] = []
    for c in cand.tolist():
        item = (int(lat[c]), -int(ts[c]), acc.top_seq)
        if len(acc.top) < n_top:
            heapq.heappush(acc.top, item)
        elif item > acc.top[0]:
            heapq.heapreplace(acc.top, item)
        else:
            continue
        kept.append((acc.top_seq, c))
        acc.top_seq += 1
    if kept:
        picked = np.array([c for _, c in kept], dtype=np.int64)
        if ORIGIN in chunk.columns and acc.body is not None:
            # a chunk decoded in part: the other columns of these rows, from its body
            rows = rows_of(chunk, acc.body, picked)
        else:
            rows = chunk.take(picked)
        for k, (seq, _) in enumerate(kept):
            acc.top_rows[seq] = (inp, rows.take(slice(k, k + 1)))
    live = {t[2] for t in acc.top}
    for seq in [q for q in acc.top_rows if q not in live]:
        del acc.top_rows[seq]


def _group_key_arrays(chunk: Chunk, by: Sequence[str], inp: _Input) -> tuple[np.ndarray, list[list[Any]]]:
    """Dense per-chunk group ids and, per column, the value each local id stands for."""
    combined = np.zeros(chunk.n, dtype=np.int64)
    tables: list[list[Any]] = []
    radix = 1
    for name in by:
        if FIELDS[name].kind == "str":
            if name == "source" and "source" not in chunk.columns:
                codes, d = np.zeros(chunk.n, dtype=np.uint32), [inp.source]
            else:
                codes, d = string_codes(chunk, name)
            # dictionary codes may repeat a string; collapse them
            uniq: dict[str, int] = {}
            remap = np.fromiter((uniq.setdefault(s, len(uniq)) for s in d), dtype=np.int64, count=len(d))
            local = remap[codes] if len(d) else np.zeros(chunk.n, dtype=np.int64)
            values: list[Any] = list(uniq)
        else:
            col = field_values(chunk, name)
            dense = dense_groups(col)
            if dense is not None:  # small non-negative codes (layer, op, cpu...): no sort
                ukeys, ids = dense
                local = ids if ids is not None else np.zeros(chunk.n, dtype=np.intp)
            else:
                ukeys, order, edges = group_slices(col)
                if order is None:
                    local = np.zeros(chunk.n, dtype=np.int64)
                else:
                    local = np.empty(chunk.n, dtype=np.int64)
                    local[order] = np.repeat(np.arange(ukeys.size), np.diff(edges))
            values = ukeys.tolist()
        combined = combined * max(len(values), 1) + local if radix > 1 else local
        radix *= max(len(values), 1)
        tables.append(values)
    return combined, tables


def _group_slot(acc: _Acc, gkey: tuple[Any, ...], limit: int | None = None) -> _Group:
    """The group of ``gkey``, given a slot if fewer than ``limit`` groups (MAX_TRACKED_GROUPS
    by default) have one, else the (other) group."""
    slot = acc.group_ids.get(gkey)
    if slot is None:
        if len(acc.group_ids) >= (MAX_TRACKED_GROUPS if limit is None else limit):
            slot = -1  # beyond what is tracked exactly: lumped (said in the warnings)
            acc.untracked = True
        else:
            slot = len(acc.group_ids)
            acc.group_ids[gkey] = slot
    grp = acc.groups.get(slot)
    if grp is None:
        grp = acc.groups[slot] = _Group(gkey if slot >= 0 else ("(other)",), Histogram(acc.opts.precision))
    return grp


def new_acc(opts: StatsOptions, iv_origin: int = 0, iv_last: int = -1) -> _Acc:
    """An empty accumulator (with its --interval grid when ``opts`` asks for one)."""
    acc = _Acc(opts, GroupedHistograms(opts.precision))
    acc.queue = Histogram(opts.precision)
    acc.service = Histogram(opts.precision)
    if opts.interval_ns:
        acc.intervals = GroupedHistograms(opts.precision)
        acc.iv_origin, acc.iv_last = iv_origin, iv_last
    return acc


def _add_counts(into: dict[int, int], other: dict[int, int]) -> None:
    for k, v in other.items():
        into[k] = into.get(k, 0) + v


def merge_acc(into: _Acc, part: _Acc, track_all: bool = False) -> None:
    """Add the accumulator ``part`` (without its --top rows) into ``into``. Groups new to
    ``into`` take slots in ``part``'s order, up to MAX_TRACKED_GROUPS unless ``track_all``:
    merging the accumulators of consecutive chunks in order gives the accumulator of
    adding those chunks one after the other."""
    for k, h in part.layer_op.groups.items():
        into.layer_op._get(k).merge(h)
    _add_counts(into.lo_bytes, part.lo_bytes)
    _add_counts(into.lo_errors, part.lo_errors)
    _add_counts(into.errnos, part.errnos)
    into.queue.merge(part.queue)
    into.service.merge(part.service)
    into.block_events += part.block_events
    _add_counts(into.not_storage, part.not_storage)
    into.read_pages += part.read_pages
    into.missed_pages += part.missed_pages
    into.would_block += part.would_block
    into.events += part.events
    into.bytes += part.bytes
    into.untracked |= part.untracked
    for name, pick in (("first_ts", min), ("last_end", max)):
        a, b = getattr(into, name), getattr(part, name)
        if b is not None:
            setattr(into, name, b if a is None else pick(a, b))
    for slot, grp in part.groups.items():
        if slot < 0:  # the part's own lumped groups stay lumped
            g = into.groups.get(-1)
            if g is None:
                g = into.groups[-1] = _Group(("(other)",), Histogram(into.opts.precision))
        else:
            g = _group_slot(into, grp.key, NO_LIMIT if track_all else MAX_TRACKED_GROUPS)
        g.hist.merge(grp.hist)
        g.events += grp.events
        g.bytes += grp.bytes
        g.errors += grp.errors
    if part.intervals is not None and into.intervals is not None:
        for b, h in part.intervals.groups.items():
            into.intervals._get(b).merge(h)
        _add_counts(into.iv_bytes, part.iv_bytes)
        _add_counts(into.iv_errors, part.iv_errors)


def _add_by(acc: _Acc, chunk: Chunk, inp: _Input, idx: np.ndarray, lat: np.ndarray, nbytes: np.ndarray,
            err: np.ndarray, n_err: int) -> None:
    """The --by groups of a chunk: by dense ids and bincounts when the combined key is small
    (as for the (layer, op) table), else by sorting."""
    opts = acc.opts
    gids, tables = _group_key_arrays(chunk, opts.by, inp)
    dense = dense_groups(gids)
    if dense is not None:
        ug, ids = dense
        part = GroupedHistograms(opts.precision)
        part.add_dense(np.arange(ug.size), ids, idx, lat)
        if ids is None:
            sums = [int(nbytes.sum(dtype=np.uint64))]
            errs = [n_err]
        else:
            sums = group_sums(ids, nbytes, int(ug.size))
            errs = np.bincount(ids[err], minlength=ug.size).tolist() if n_err else [0] * ug.size
        for g, gid in enumerate(ug.tolist()):
            grp = _group_slot(acc, _decode_key(int(gid), tables))
            h = part.groups[g]
            grp.hist.merge(h)
            grp.events += h.total
            grp.bytes += sums[g]
            grp.errors += int(errs[g])
        return
    ugs, gorder, gedges = group_slices(gids)
    gsel = gorder if gorder is not None else np.arange(chunk.n)
    for g, gid in enumerate(ugs.tolist()):
        sel = gsel[gedges[g] : gedges[g + 1]]
        grp = _group_slot(acc, _decode_key(int(gid), tables))
        grp.hist.add_indexed(idx[sel], lat[sel])
        grp.events += int(sel.size)
        grp.bytes += int(nbytes[sel].sum(dtype=np.uint64))
        grp.errors += int(np.count_nonzero(err[sel]))


def _decode_key(gid: int, tables: list[list[Any]]) -> tuple[Any, ...]:
    out = []
    for values in reversed(tables):
        k = max(len(values), 1)
        out.append(values[gid % k] if values else None)
        gid //= k
    return tuple(reversed(out))


def _process(
    acc: _Acc,
    inp: _Input,
    chunk: Chunk,
    real_ts: np.ndarray | None,
    use_real: bool,
) -> None:
    opts = acc.opts
    n = chunk.n
    lat = chunk.column("lat")
    idx = bucket_index(lat, opts.precision)
    layer = chunk.column("layer")
    op = chunk.column("op")
    key = (layer.astype(np.uint16) << np.uint16(8)) | op
    # (layer, op) as dense ids: one bincount per chunk fills every group's histogram
    dense = dense_groups(key)
    assert dense is not None  # uint16 keys
    ukeys, ids = dense
    acc.layer_op.add_dense(ukeys, ids, idx, lat)
    nbytes = chunk.column("bytes")
    if ids is None:
        part_bytes = [int(nbytes.sum(dtype=np.uint64))]
    else:
        part_bytes = group_sums(ids, nbytes, int(ukeys.size))
    for k, s in zip(ukeys.tolist(), part_bytes):
        acc.lo_bytes[k] = acc.lo_bytes.get(k, 0) + s
    acc.events += n
    result = chunk.column("result")
    err = result < 0
    would_block = result == -EAGAIN  # non-blocking I/O with nothing to do: not an error
    if would_block.any():
        acc.would_block += int(np.count_nonzero(would_block))
        err &= ~would_block
    n_err = int(np.count_nonzero(err))
    if "pages_missed" in chunk.columns:
        reads = np.isin(op, READ_OPS) & (layer == SYSCALL) & (result > 0)
        if reads.any():
            acc.read_pages += int(((result[reads] + PAGE - 1) // PAGE).sum())
            acc.missed_pages += int(chunk.column("pages_missed")[reads].sum(dtype=np.uint64))
    if n_err:
        e = (-result[err]).astype(np.int64)
        for code, c in zip(*np.unique(e, return_counts=True)):
            acc.errnos[int(code)] = acc.errnos.get(int(code), 0) + int(c)
    if n_err:
        for k, c in zip(*np.unique(key[err], return_counts=True)):
            acc.lo_errors[int(k)] = acc.lo_errors.get(int(k), 0) + int(c)
    # block layer: queue vs service
    is_blk = (ukeys >> 8) == BLOCK
    if is_blk.any():
        blk: Any = slice(None) if is_blk.all() else np.flatnonzero(layer == BLOCK)  # gathers, not 3 masks
        qb, lb = chunk.column("queue")[blk], lat[blk]
        acc.block_events += int(qb.size)
        queued = ((chunk.column("flags")[blk] & F_QUEUED) != 0) | (qb > 0)
        if queued.all():
            acc.queue.add(qb)
        elif queued.any():
            acc.queue.add(qb[queued])
        acc.service.add(lb - np.minimum(qb, lb))
    # span
    ts = chunk.column("ts")
    first = ts[0]  # events of a chunk are in ts order
    last_end = end_times(ts, lat).max()
    if use_real:
        first_r = int(inp.to_real(np.array([first]))[0])
        last_r = int(inp.to_real(np.array([last_end]))[0])
    else:
        first_r, last_r = int(first), int(last_end)
    acc.first_ts = first_r if acc.first_ts is None else min(acc.first_ts, first_r)
    acc.last_end = last_r if acc.last_end is None else max(acc.last_end, last_r)
    # --by
    # (groups by layer and op only are made from the (layer, op) table at the end)
    if opts.by and not set(opts.by) <= {"layer", "op"}:
        _add_by(acc, chunk, inp, idx, lat, nbytes, err, n_err)
    # --interval
    if opts.interval_ns and acc.intervals is not None and real_ts is not None:
        b = (real_ts - acc.iv_origin) // opts.interval_ns
        ivg = group_slices(b)
        acc.intervals.add_grouped(ivg, idx, lat)
        bk, border, bedges = ivg
        if border is None:
            k0 = int(bk[0])
            acc.iv_bytes[k0] = acc.iv_bytes.get(k0, 0) + int(nbytes.sum(dtype=np.uint64))
            acc.iv_errors[k0] = acc.iv_errors.get(k0, 0) + n_err
        else:
            bsum = np.add.reduceat(nbytes[border], bedges[:-1], dtype=np.uint64)
            esum = np.add.reduceat(err[border].astype(np.int64), bedges[:-1])
            for k0, s, e0 in zip(bk.tolist(), bsum.tolist(), esum.tolist()):
                acc.iv_bytes[k0] = acc.iv_bytes.get(k0, 0) + int(s)
                acc.iv_errors[k0] = acc.iv_errors.get(k0, 0) + int(e0)


def _finish_intervals(acc: _Acc, upto: float) -> None:
    """Emit every interval row that ends at or before ``upto`` (real ns)."""
    assert acc.intervals is not None and acc.opts.interval_ns
    iv = acc.opts.interval_ns
    origin, last = acc.iv_origin, acc.iv_last
    while acc.iv_next <= last and origin + (acc.iv_next + 1) * iv <= upto:
        b = acc.iv_next
        h = acc.intervals.groups.pop(b, None) or Histogram(acc.opts.precision)
        nbytes = acc.iv_bytes.pop(b, 0)
        row = {
            "start": iso_utc(origin + b * iv),
            "start_ns": origin + b * iv,
            "events": h.total,
            "bytes": nbytes,
            "errors": acc.iv_errors.pop(b, 0),
            "iops": h.total / (iv / 1e9),
            "bytes_per_s": nbytes / (iv / 1e9),
            "latency": h.summary(),
        }
        acc.iv_rows.append(row)
        acc.iv_next += 1


# -- the entry point ----------------------------------------------------------------------------


# what a helper thread hands back: input, counted events (or a warning), body, watermark, figures
_Decoded = tuple[_Input, "Chunk | str | None", "Body | None", float, "_Acc | None"]


def compute(
    caps: Sequence[Capture],
    opts: StatsOptions | None = None,
    per_input: Sequence[Selection] | None = None,
) -> dict[str, Any]:
    """Summarise ``caps`` together; returns the ``stats --json`` document. ``per_input`` gives
    each capture its own selection (a time window is relative to each capture), else
    ``opts.where`` applies to all."""
    opts = opts or StatsOptions()
    opts.by = grouping(opts.by)
    if per_input is not None and len(per_input) != len(caps):
        raise ValueError("per_input needs one selection per capture")
    selections = list(per_input) if per_input is not None else [
        Selection(opts.where, source=source_name(cap)) for cap in caps]
    inputs: list[_Input] = []
    for k, cap in enumerate(caps):
        infos = [i for i in cap.chunk_infos() if i.n and selections[k].can_match(i)]
        clock = cap.clock_map()
        inputs.append(_Input(k, cap, infos, bool(clock), source_name(cap), clock))
    use_real = all(inp.has_clock for inp in inputs)
    origin, last_b = 0, -1
    if opts.interval_ns:
        if opts.interval_ns <= 0:
            raise UsageError("--interval must be positive")
        firsts = [int(inp.to_real(np.array([inp.infos[0].t_first]))[0]) for inp in inputs if inp.infos]
        lasts = [
            int(inp.to_real(np.array([max(i.t_last for i in inp.infos)]))[0]) for inp in inputs if inp.infos
        ]
        origin = (min(firsts) // opts.interval_ns) * opts.interval_ns if firsts else 0
        last_b = (max(lasts) - origin) // opts.interval_ns if lasts else -1
        if last_b + 1 > MAX_INTERVAL_ROWS:
            raise UsageError(
                f"--interval gives {last_b + 1:,} rows over this capture (at most "
                f"{MAX_INTERVAL_ROWS:,}): use a coarser interval"
            )
    acc = new_acc(opts, origin, last_b)
    # Two threads decode chunks (only the columns the figures need; a --top row's other
    # columns are decoded from its chunk's body, for that row only) and count each into an
    # accumulator of its own; this one merges them in file order and keeps the --top rows.
    # zstd and numpy release the GIL. An expression may name any column: then every column
    # is decoded.
    columns = _needed_columns(opts, selections)
    local = threading.local()

    def decode(item: tuple[_Input, RawChunk, float]) -> _Decoded:
        """A chunk decoded, selected and counted into its own accumulator (a helper thread)."""
        inp, raw, watermark = item
        codecs = getattr(local, "codecs", None)
        if codecs is None:
            codecs = local.codecs = {}
        try:
            chunk, body = decode_stored(raw.payload, raw.info, columns, codecs)
        except ChunkSkipped as skip:
            return inp, skip.message, None, watermark, None  # warned below, in file order
        if columns is not None:
            chunk.columns[ORIGIN] = np.arange(chunk.n, dtype=np.uint32)  # rows survive selections
        kept = selections[inp.index].apply(chunk)
        if kept is None:
            return inp, None, None, watermark, None
        part = new_acc(opts, acc.iv_origin, acc.iv_last)
        counted = add_figures(part, inp, kept, use_real)
        return inp, counted, body if columns is not None else None, watermark, part

    stored = interleave(inputs, to_real=bool(opts.interval_ns))
    for inp, chunk, body, watermark, part in parallel_map(decode, stored):
        if isinstance(chunk, str):
            inp.cap.warn(chunk)
        elif part is not None:  # merged in file order: the document is that of one pass
            merge_acc(acc, part)
            if chunk is not None:
                acc.body = body
                _top_update(acc, inp, chunk, chunk.column("lat"))
                acc.body = None
        if opts.interval_ns:
            _finish_intervals(acc, watermark)
    if opts.interval_ns:
        _finish_intervals(acc, float("inf"))
    return _document(acc, inputs, use_real)


def add_chunk(acc: _Acc, inp: _Input, chunk: Chunk, use_real: bool) -> None:
    """The selected events of a chunk into the accumulator (storage I/O only unless
    opts.all_fds), in one step: the distributed workers' pass. compute() runs add_figures on
    its helper threads and the --top update on its own."""
    counted = add_figures(acc, inp, chunk, use_real)
    if counted is not None:
        _top_update(acc, inp, counted, counted.column("lat"))


def add_figures(acc: _Acc, inp: _Input, chunk: Chunk, use_real: bool) -> Chunk | None:
    """``add_chunk`` but for the --top candidates: needs nothing of ``acc`` but its options, so
    it may fill a chunk's own accumulator on a helper thread (merged with ``merge_acc``).
    Returns the events counted (the candidates for --top), None when there are none."""
    if not acc.opts.all_fds:
        chunk = _storage_only(acc, chunk)
    if not chunk.n:
        return None
    real_ts = inp.to_real(chunk.column("ts")) if acc.opts.interval_ns else None
    _process(acc, inp, chunk, real_ts, use_real)
    return chunk


def _storage_only(acc: _Acc, chunk: Chunk) -> Chunk:
    """The storage I/O of a chunk (schema.STORAGE_FD_KINDS); the rest is counted by kind."""
    if "fdkind" not in chunk.columns:
        return chunk  # a 1.0 capture: every fd is of unknown kind
    kinds = chunk.column("fdkind")
    storage = np.isin(kinds, STORAGE_CODES)
    if storage.all():
        return chunk
    for k, c in zip(*np.unique(kinds[~storage], return_counts=True)):
        acc.not_storage[int(k)] = acc.not_storage.get(int(k), 0) + int(c)
    return chunk.take(storage)


def _needed_columns(opts: StatsOptions, selections: Sequence[Selection]) -> list[str] | None:
    """The columns stats reads (None: all, when a selection has an expression)."""
    if not all(sel.filter.is_trivial for sel in selections):
        return None
    names = set(BASE_COLUMNS) | {"pages_missed", "fdkind"} | _base_columns(opts.by)
    return sorted(names)


def _base_columns(names: Any) -> set[str]:
    out: set[str] = set()
    for n in names:
        if n == "service":
            out |= {"lat", "queue"}
        elif n == "errno":
            out.add("result")
        elif n == "end":
            out |= {"ts", "lat"}
        else:
            out.add(n)
    return out


# -- the document -------------------------------------------------------------------------------


def _rate(x: float, seconds: float | None) -> float | None:
    return x / seconds if seconds else None


def _display(name: str, v: Any) -> Any:
    if name in ENUMS:
        return enum_name(name, v)
    if name == "dev":
        return dev_name(v)
    if name == "errno":
        return _errno.errorcode.get(int(v), str(v)) if v else "ok"
    return v


def _str_at(chunk: Chunk, name: str, i: int, default: str = "") -> str:
    d = chunk.dicts.get(name)
    if d is None or name not in chunk.columns:
        return default
    return str(d[int(chunk.columns[name][i])])


def _event_record(inp: _Input, chunk: Chunk, i: int, use_real: bool) -> dict[str, Any]:
    ts = int(chunk.column("ts")[i])
    real = int(inp.to_real(np.array([ts]))[0]) if use_real else None
    result = int(chunk.column("result")[i])
    dev = int(chunk.column("dev")[i])
    return {
        "time": iso_utc(real) if real is not None else None,
        "time_ns": real,
        "ts": ts,
        "source": _str_at(chunk, "source", i, inp.source),
        "comm": _str_at(chunk, "comm", i),
        "pid": int(chunk.column("pid")[i]),
        "tid": int(chunk.column("tid")[i]),
        "layer": layer_name(int(chunk.column("layer")[i])),
        "op": op_name(int(chunk.column("op")[i])),
        "lat": int(chunk.column("lat")[i]),
        "queue": int(chunk.column("queue")[i]),
        "bytes": int(chunk.column("bytes")[i]),
        "offset": int(chunk.column("offset")[i]),
        "fd": int(chunk.column("fd")[i]),
        "dev": dev_name(dev) if dev else None,
        "path": _str_at(chunk, "path", i),
        "result": result,
        "error": _errno.errorcode.get(-result, str(-result)) if result < 0 else None,
    }


def _fetch_top(acc: _Acc, use_real: bool) -> list[dict[str, Any]]:
    out = []
    for _lat, _nts, seq in sorted(acc.top, reverse=True):
        inp, row = acc.top_rows[seq]
        out.append(_event_record(inp, row, 0, use_real))
    return out


def _losses(inputs: Sequence[_Input], use_real: bool) -> dict[str, Any]:
    records = []
    by_cpu: dict[str, int] = {}
    total = 0
    for inp in inputs:
        for loss in inp.cap.losses():
            total += loss.count
            by_cpu[str(loss.cpu)] = by_cpu.get(str(loss.cpu), 0) + loss.count
            if use_real:
                r = inp.to_real(np.array([loss.t_first, loss.t_last]))
                first, last = iso_utc(int(r[0])), iso_utc(int(r[1]))
            else:
                first = last = None
            records.append(
                {
                    "input": inp.index,
                    "cpu": loss.cpu,
                    "count": loss.count,
                    "kind": loss.kind,
                    "t_first": loss.t_first,
                    "t_last": loss.t_last,
                    "first": first,
                    "last": last,
                }
            )
    return {"total": total, "by_cpu": by_cpu, "records": records}


def _layer_op_groups(acc: _Acc) -> None:
    """The --by groups when they group by layer and op only: sums of the (layer, op) table,
    in the order its rows first appeared (the order adding each chunk's groups would give)."""
    for k, h in acc.layer_op.groups.items():
        grp = _group_slot(acc, tuple(k >> 8 if name == "layer" else k & 0xFF for name in acc.opts.by))
        grp.hist.merge(h)
        grp.events += h.total
        grp.bytes += acc.lo_bytes.get(k, 0)
        grp.errors += acc.lo_errors.get(k, 0)


def _document(acc: _Acc, inputs: Sequence[_Input], use_real: bool) -> dict[str, Any]:
    opts = acc.opts
    if opts.by and set(opts.by) <= {"layer", "op"} and not acc.groups:
        _layer_op_groups(acc)
    span_s = None
    if acc.first_ts is not None and acc.last_end is not None and acc.last_end > acc.first_ts:
        span_s = (acc.last_end - acc.first_ts) / 1e9
    all_hist = Histogram(opts.precision)
    per_layer: dict[str, Histogram] = {}
    rows = []
    total_bytes = 0
    total_errors = 0
    for k in sorted(acc.layer_op.groups):
        h = acc.layer_op.groups[k]
        all_hist.merge(h)
        lname = layer_name(k >> 8)
        per_layer.setdefault(lname, Histogram(opts.precision)).merge(h)
        nbytes = acc.lo_bytes.get(k, 0)
        nerr = acc.lo_errors.get(k, 0)
        total_bytes += nbytes
        total_errors += nerr
        rows.append(
            {
                "layer": lname,
                "op": op_name(k & 0xFF),
                "events": h.total,
                "bytes": nbytes,
                "errors": nerr,
                "iops": _rate(h.total, span_s),
                "bytes_per_s": _rate(nbytes, span_s),
                "latency": h.summary(),
            }
        )
    doc: dict[str, Any] = {
        "schema": SCHEMA_NAME,
        "schema_version": SCHEMA_VERSION,
        "tool_version": _tool_version(),
        "inputs": [
            {
                "path": inp.cap.name,
                "capture_id": inp.cap.header.get("capture_id"),
                "hostname": inp.cap.header.get("hostname"),
                "kernel": inp.cap.header.get("kernel"),
                "format_version": inp.cap.header.get("format_version"),
                "synthetic": bool(inp.cap.header.get("synthetic", False)),
                "filter": inp.cap.header.get("filter"),
                "events_in_file": sum(i.n for i in inp.cap.chunk_infos()),
                "warnings": list(inp.cap.warnings),
            }
            for inp in inputs
        ],
        "filter": opts.filter_text or (None if opts.where.is_trivial else opts.where.text),
        "clock": "realtime" if use_real else "monotonic",
        "span": {
            "start": iso_utc(acc.first_ts) if use_real else None,
            "end": iso_utc(acc.last_end) if use_real else None,
            "start_ns": acc.first_ts,
            "end_ns": acc.last_end,
            "seconds": span_s,
        },
        "events": acc.events,
        "bytes": total_bytes,
        "errors": total_errors,
        "iops": _rate(acc.events, span_s),
        "bytes_per_s": _rate(total_bytes, span_s),
        "relative_error": relative_error(opts.precision),
        "latency": all_hist.summary(),
        "by_layer_op": rows,
        "by_layer": [
            {"layer": name, "latency": h.summary(), "histogram": h.to_dict()} for name, h in per_layer.items()
        ],
        "errnos": [
            {"errno": code, "name": _errno.errorcode.get(code, str(code)), "count": c}
            for code, c in sorted(acc.errnos.items(), key=lambda kv: (-kv[1], kv[0]))
        ],
        "block": (
            {
                "events": acc.block_events,
                "queued_events": acc.queue.total,
                "queue": acc.queue.summary(),
                "service": acc.service.summary(),
            }
            if acc.block_events
            else None
        ),
        "top": _fetch_top(acc, use_real),
        "not_storage": None if opts.all_fds else {
            "events": sum(acc.not_storage.values()),
            "by_kind": {enum_name("fdkind", k): c for k, c in sorted(acc.not_storage.items())},
        },
        "would_block": acc.would_block,
        "page_cache": {
            "read_pages": acc.read_pages,
            "missed_pages": acc.missed_pages,
            "hit_ratio": max(0.0, 1 - acc.missed_pages / acc.read_pages) if acc.read_pages else None,
        } if acc.read_pages else None,
        "losses": _losses(inputs, use_real),
        "groups": None,
        "intervals": None,
        "warnings": [w for inp in inputs for w in inp.cap.warnings] + (
            [f"more than {MAX_TRACKED_GROUPS:,} groups: the groups seen after that were lumped into (other)"]
            if acc.untracked else []),
    }
    if opts.by:
        grows = []
        ranked = _largest_groups(acc)
        for grp in ranked:
            if grp.key == ("(other)",):
                key: dict[str, Any] = {name: "(other)" for name in opts.by}
            else:
                key = {name: _display(name, v) for name, v in zip(opts.by, grp.key)}
            grows.append(
                {
                    "key": key,
                    "events": grp.events,
                    "bytes": grp.bytes,
                    "errors": grp.errors,
                    "iops": _rate(grp.events, span_s),
                    "bytes_per_s": _rate(grp.bytes, span_s),
                    "latency": grp.hist.summary(),
                }
            )
        doc["groups"] = {
            "by": list(opts.by),
            "max_groups": opts.max_groups,
            "lumped_events": sum(g.events for g in ranked if g.key == ("(other)",)),
            "rows": grows,
        }
    if opts.interval_ns:
        doc["intervals"] = {"interval_ns": opts.interval_ns, "rows": acc.iv_rows}
    return doc


def _largest_groups(acc: _Acc) -> list[_Group]:
    """The ``max_groups`` largest groups by events (ties by key), then one (other) group
    holding every other event, so that the rows add up to the total."""
    ranked = sorted((g for g in acc.groups.values() if g.key != ("(other)",)),
                    key=lambda g: (-g.events, str(g.key)))
    keep, rest = ranked[: acc.opts.max_groups], ranked[acc.opts.max_groups :]
    lumped = [g for g in acc.groups.values() if g.key == ("(other)",)] + rest
    if lumped:
        other = _Group(("(other)",), Histogram(acc.opts.precision))
        for g in lumped:
            other.hist.merge(g.hist)
            other.events += g.events
            other.bytes += g.bytes
            other.errors += g.errors
        keep.append(other)
    return keep


def _tool_version() -> str:
    from aether_rec import __version__

    return __version__


PERCENTILE_KEYS = tuple(f"p{q:g}".replace(".", "_") for q in PERCENTILES)
