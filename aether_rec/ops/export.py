"""``export``: captures to formats other tools read.

- ``jsonl``, ``csv``: one row per event (the fields of rows.py), streamed chunk by chunk.
- ``perfetto``: Chrome trace-event JSON that opens in ui.perfetto.dev: a track per process and
  thread, a complete slice (``ph: X``) per syscall/VFS I/O, an async slice (``ph: b/e``) per
  block request (they overlap, so they get async tracks of the issuing process), and an instant
  event per loss record. Timestamps are microseconds from the first event (ns precision kept in
  the decimals); the wall-clock start is in ``otherData``. JSON traces are loaded whole by the
  viewer, so the export refuses more than ``max_events`` slices unless ``sample`` is given, in
  which case it keeps every k-th event and says so.
- ``parquet``: through pyarrow (optional: ``pip install 'aether-rec[parquet]'``), one row group per
  chunk, string columns dictionary-encoded, plus ``time`` (UTC timestamp) and layer/op names, so
  DuckDB, Spark or Trino can query captures of a whole fleet.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any, BinaryIO

import numpy as np

from aether_rec.errors import AetherError, UsageError
from aether_rec.format.chunk import Chunk
from aether_rec.format.reader import Capture
from aether_rec.ops import feed
from aether_rec.ops.pipeline import BackgroundWriter, prefetch
from aether_rec.ops.rows import byte_sink, columns, header_line, slice_bytes
from aether_rec.ops.units import fmt_count, iso_utc
from aether_rec.ops.window import Selection
from aether_rec.schema import COLUMNS, LAYER_CODE, LAYERS, OPS

EXPORT_FORMATS = ("jsonl", "csv", "perfetto", "parquet")
DEFAULT_MAX_EVENTS = 1_000_000  # ~250 MB of JSON: about what the Perfetto UI loads comfortably
BLOCK = LAYER_CODE["block"]


class MissingDependencyError(AetherError):
    """An optional package a feature needs is not installed."""


@dataclass
class ExportReport:
    events: int = 0
    slices: int = 0
    instants: int = 0
    sampled_every: int = 1
    matched: int = 0
    warnings: list[str] = field(default_factory=list)


def _to_real(cap: Capture) -> Callable[[np.ndarray], np.ndarray] | None:
    clock = cap.clock_map()
    return clock.to_real if clock else None


def export_rows(cap: Capture, out: IO[str], sel: Selection, fmt: str) -> ExportReport:
    """jsonl or csv rows."""
    return export_feed_rows(feed.single(cap, sel), out, fmt)


def export_feed_rows(source: feed.Feed, out: IO[str], fmt: str) -> ExportReport:
    """jsonl or csv rows of a feed (one capture, or several merged)."""
    rep = ExportReport()
    to_real = source.clock.to_real if source.clock else None
    src = source.source
    head = header_line(fmt)
    write = byte_sink(out)
    if head and fmt == "csv":
        write(head.encode())
    # the next chunk is read and decoded on a helper thread while this one's rows are built:
    # else both row threads wait for each chunk's decoding, a sixth of their time
    for chunk in prefetch(source.chunks(), depth=1):
        for data in slice_bytes(fmt, chunk, to_real, src):
            write(data)
        rep.events += chunk.n
    out.flush()
    return rep


# -- perfetto -------------------------------------------------------------------------------------


def count_matches(cap: Capture, sel: Selection) -> int:
    """Exact number of selected events (index only when the selection is a window or nothing)."""
    infos = [i for i in cap.chunk_infos() if i.n and sel.can_match(i)]
    if all(sel.must_match(i) for i in infos):
        return sum(i.n for i in infos)
    return sum(c.n for c in sel.chunks(cap))


def _us(ns: int) -> float:
    return round(ns / 1000.0, 3)


def export_perfetto(
    cap: Capture,
    out: IO[str],
    sel: Selection,
    *,
    max_events: int = DEFAULT_MAX_EVENTS,
    sample: bool = False,
) -> ExportReport:
    rep = ExportReport()
    upper = sum(i.n for i in cap.chunk_infos() if i.n and sel.can_match(i))
    # count exactly (a decoding pass) only when the index alone cannot rule out the cap
    matched = upper if upper <= max_events else count_matches(cap, sel)
    rep.matched = matched
    every = 1
    if matched > max_events:
        if not sample:
            raise UsageError(
                f"{fmt_count(matched)} events are more than a Chrome/Perfetto JSON trace handles well "
                f"(--max-events {fmt_count(max_events)}): narrow the selection (an expression, --since/"
                "--until, --min-latency), raise --max-events, or add --sample to keep every k-th event"
            )
        every = math.ceil(matched / max_events)
        rep.warnings.append(f"sampled: kept every {every}th of {fmt_count(matched)} events")
    rep.sampled_every = every
    infos = [i for i in cap.chunk_infos() if i.n]
    t0 = min((i.t_first for i in infos), default=0)
    to_real = _to_real(cap)
    start_real = int(to_real(np.array([t0], dtype=np.int64))[0]) if to_real is not None else None
    enc = json.JSONEncoder(separators=(",", ":")).encode
    out.write('{"traceEvents":[\n')
    first = True

    def emit(ev: dict[str, Any]) -> None:
        nonlocal first
        out.write(("" if first else ",\n") + enc(ev))
        first = False

    procs: dict[int, str] = {}
    threads: dict[tuple[int, int], str] = {}
    seq = 0  # global event index, for sampling
    async_id = 0
    for chunk in sel.chunks(cap):
        if every > 1:
            keep = (np.arange(seq, seq + chunk.n) % every) == 0
            seq += chunk.n
            if not keep.any():
                continue
            chunk = chunk.take(keep)
        c = columns(chunk, None)
        for i in range(chunk.n):
            pid, tid, comm = c["pid"][i], c["tid"][i], c["comm"][i]
            if pid not in procs or (pid == tid and procs[pid] != comm):
                procs[pid] = comm
            threads.setdefault((pid, tid), comm)
            args: dict[str, Any] = {"bytes": c["bytes"][i], "result": c["result"][i]}
            if c["error"][i]:
                args["error"] = c["error"][i]
            if c["path"][i]:
                args["path"] = c["path"][i]
            if c["fd"][i] >= 0:
                args["fd"] = c["fd"][i]
            if c["offset"][i] >= 0:
                args["offset"] = c["offset"][i]
            if c["dev"][i]:
                args["dev"] = c["dev"][i]
            if c["queue"][i]:
                args["queue_us"] = _us(c["queue"][i])
            ts = _us(c["ts"][i] - t0)
            name = c["op"][i]
            if c["layer"][i] == LAYERS[BLOCK]:
                async_id += 1
                base = {"name": name, "cat": "block", "id": async_id, "pid": pid, "tid": tid}
                emit({**base, "ph": "b", "ts": ts, "args": args})
                emit({**base, "ph": "e", "ts": _us(c["ts"][i] + c["lat"][i] - t0)})
            else:
                emit(
                    {
                        "name": name,
                        "cat": c["layer"][i],
                        "ph": "X",
                        "ts": ts,
                        "dur": _us(c["lat"][i]),
                        "pid": pid,
                        "tid": tid,
                        "args": args,
                    }
                )
            rep.slices += 1
        rep.events += chunk.n
    for loss in cap.losses():
        if not sel.keeps_loss(loss):
            continue
        emit(
            {
                "name": f"lost {loss.count} events",
                "cat": "loss",
                "ph": "i",
                "s": "g",
                "ts": _us(max(loss.t_first - t0, 0)),
                "pid": 0,
                "tid": 0,
                "args": {
                    "cpu": loss.cpu,
                    "count": loss.count,
                    "kind": loss.kind,
                    "until_us": _us(max(loss.t_last - t0, 0)),
                },
            }
        )
        rep.instants += 1
    for pid, comm in sorted(procs.items()):
        emit({"name": "process_name", "ph": "M", "pid": pid, "tid": 0, "args": {"name": f"{comm} ({pid})"}})
    for (pid, tid), comm in sorted(threads.items()):
        emit({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid, "args": {"name": f"{comm} ({tid})"}})
    h = cap.header
    other = {
        "tool": "aether-rec",
        "capture_id": h.get("capture_id"),
        "hostname": h.get("hostname"),
        "kernel": h.get("kernel"),
        "start": iso_utc(start_real) if start_real is not None else None,
        "start_ts_ns": t0,
        "filter": sel.text,
        "sampled_every": every,
        "events_selected": matched if every > 1 else rep.events,
        "synthetic": bool(h.get("synthetic", False)),
    }
    out.write('\n],"displayTimeUnit":"ns","otherData":' + enc(other) + "}\n")
    out.flush()
    return rep


# -- parquet --------------------------------------------------------------------------------------


def _pyarrow() -> Any:
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise MissingDependencyError(
            "parquet export needs pyarrow, which is not installed: pip install 'aether-rec[parquet]' "
            "(or pip install pyarrow)"
        ) from None
    import pyarrow as pa

    return pa


def _arrow_schema(pa: Any, with_source: bool) -> Any:
    # Every column is declared non-nullable (no event has a missing value: absent columns
    # read as their defaults): Parquet REQUIRED columns carry no definition levels, which the
    # writer would otherwise compute and encode for every value (a quarter of its time).
    dict_str = pa.dictionary(pa.int32(), pa.string())
    fields = [pa.field("time", pa.timestamp("ns", tz="UTC"), nullable=False)]
    for col in COLUMNS:
        typ = dict_str if col.is_str else pa.from_numpy_dtype(col.dtype)
        fields.append(pa.field(col.name, typ, nullable=False))
    fields.append(pa.field("layer_name", dict_str, nullable=False))
    fields.append(pa.field("op_name", dict_str, nullable=False))
    if with_source:
        fields.append(pa.field("source", dict_str, nullable=False))
    return pa.schema(fields)


# Arrays are built from numpy buffers, not with pa.array: that one imports pandas (0.6 s) to
# check whether its argument is a pandas object. Integer columns are handed over without a copy.


def _np_array(pa: Any, arr: np.ndarray, typ: Any) -> Any:
    arr = np.ascontiguousarray(arr)
    return pa.Array.from_buffers(typ, len(arr), [None, pa.py_buffer(arr)])


def _str_array(pa: Any, words: list[str]) -> Any:
    data = [w.encode() for w in words]
    offsets = np.zeros(len(data) + 1, dtype=np.int64)
    np.cumsum([len(b) for b in data], out=offsets[1:])
    typ = pa.string() if offsets[-1] < 2**31 else pa.large_string()
    off = offsets.astype(np.int32) if typ == pa.string() else offsets
    return pa.Array.from_buffers(typ, len(data), [None, pa.py_buffer(off), pa.py_buffer(b"".join(data))])


def _dict_array(pa: Any, codes: np.ndarray, words: list[str]) -> Any:
    """A DictionaryArray of the chunk's codes and dictionary as they are: uint32 codes below
    2**31 (dictionaries are far smaller, format/limits.py) are the int32 indices bit for bit."""
    if codes.dtype == np.uint32 or codes.dtype == np.int32:
        idx = codes.view(np.int32)
    else:
        idx = codes.astype(np.int32)
    return pa.DictionaryArray.from_arrays(_np_array(pa, idx, pa.int32()), _str_array(pa, words))


def _enum_array(pa: Any, codes: np.ndarray, table: dict[int, str], prefix: str) -> Any:
    """Names of uint8 enum codes as a DictionaryArray of the codes present (no sort: a
    256-entry count and a lookup table)."""
    present = np.flatnonzero(np.bincount(codes, minlength=256))
    lut = np.zeros(max(256, int(present[-1]) + 1) if present.size else 256, dtype=np.int32)
    lut[present] = np.arange(present.size, dtype=np.int32)
    words = [table.get(int(u), f"{prefix}{int(u)}") for u in present.tolist()]
    return pa.DictionaryArray.from_arrays(_np_array(pa, lut[codes], pa.int32()), _str_array(pa, words))


PARQUET_COMPRESSIONS = ("lz4", "zstd", "snappy", "none")
DEFAULT_PARQUET_COMPRESSION = "lz4"
STATISTICS_COLUMNS = ("time", "ts")


def _writer_options(pa: Any, schema: Any, compression: str) -> dict[str, Any]:
    """Settings chosen for writing speed (pyarrow writes a file on one thread):

    - dictionary encoding only where the data is a dictionary already (strings, names): the
      chunk's dictionary becomes the row group's dictionary page as it is; trying it on every
      integer column made writing 2.6x slower and the file 20 % larger;
    - min/max statistics only for ``time`` and ``ts``, what a query engine prunes row groups
      by (a capture's row groups are in time order); on every column they cost about 30 % of
      the writer's time;
    - LZ4 (read by DuckDB, Spark, Trino and pyarrow) by default: about 2x the
      size of zstd's file for a third of zstd's cost; ``zstd`` for smaller files, ``none``
      for the fastest (6x the size)."""
    if compression not in PARQUET_COMPRESSIONS:
        raise UsageError(f"parquet compression {compression!r}: one of {', '.join(PARQUET_COMPRESSIONS)}")
    dicts = [f.name for f in schema if pa.types.is_dictionary(f.type)]
    stats = [c for c in STATISTICS_COLUMNS if c in schema.names]
    return {"compression": compression, "use_dictionary": dicts, "write_statistics": stats}


def _chunk_arrays(pa: Any, chunk: Chunk, to_real: Callable[[np.ndarray], np.ndarray] | None,
                  with_source: bool) -> list[Any]:
    arrays = [_time_array(pa, chunk, to_real)]
    for col in COLUMNS:
        if col.is_str:
            if col.name in chunk.dicts and col.name in chunk.columns:
                arrays.append(_dict_array(pa, chunk.columns[col.name], chunk.dicts[col.name]))
            else:
                arrays.append(_dict_array(pa, np.zeros(chunk.n, np.int32), [""]))
        else:
            arrays.append(_np_array(pa, chunk.column(col.name), pa.from_numpy_dtype(col.dtype)))
    arrays.append(_enum_array(pa, chunk.column("layer"), LAYERS, "layer"))
    arrays.append(_enum_array(pa, chunk.column("op"), OPS, "op"))
    if with_source:
        if "source" in chunk.dicts:
            arrays.append(_dict_array(pa, chunk.columns["source"], chunk.dicts["source"]))
        else:
            arrays.append(_dict_array(pa, np.zeros(chunk.n, np.int32), [""]))
    return arrays


def export_parquet(
    cap: Capture, out: str | BinaryIO, sel: Selection, *, compression: str = DEFAULT_PARQUET_COMPRESSION
) -> ExportReport:
    """One row group per chunk, written as the chunks stream: a helper thread writes row
    group k (pyarrow releases the GIL) while this one decodes chunk k+1 and builds its arrays,
    at most two row groups queued (memory stays flat)."""
    pa = _pyarrow()
    import pyarrow.parquet as pq

    rep = ExportReport()
    to_real = _to_real(cap)
    meta = {
        b"aether_rec": json.dumps(
            {
                "capture_id": cap.header.get("capture_id"),
                "hostname": cap.header.get("hostname"),
                "filter": sel.text,
                "synthetic": bool(cap.header.get("synthetic", False)),
            }
        ).encode()
    }
    writer: list[Any] = []  # the ParquetWriter, once the first chunk says whether there is a source
    with_source = False
    schema = None
    _writer_options(pa, _arrow_schema(pa, False), compression)  # a bad name fails before any I/O

    def opener(schema: Any) -> Callable[[], None]:
        def op() -> None:
            writer.append(pq.ParquetWriter(out, schema, **_writer_options(pa, schema, compression)))
        return op

    def writing(table: Any) -> Callable[[], None]:
        return lambda: writer[0].write_table(table)

    bg = BackgroundWriter(depth=2)
    try:
        for chunk in sel.chunks(cap):
            if schema is None:
                with_source = "source" in chunk.dicts
                schema = _arrow_schema(pa, with_source).with_metadata(meta)
                bg.submit(opener(schema))
            table = pa.Table.from_arrays(_chunk_arrays(pa, chunk, to_real, with_source), schema=schema)
            bg.submit(writing(table))
            rep.events += chunk.n
        if schema is None:  # no events: still a valid, empty file
            bg.submit(opener(_arrow_schema(pa, False).with_metadata(meta)))
        bg.close()
    except BaseException:
        # the output is thrown away; the row group being written finishes first (closing a
        # writer under a write is not safe)
        bg.abandon(wait=None)
        raise
    finally:
        if writer:
            writer[0].close()
    return rep


def _time_array(pa: Any, chunk: Chunk, to_real: Callable[[np.ndarray], np.ndarray] | None) -> Any:
    ts = chunk.column("ts")
    real = to_real(ts) if to_real is not None else np.minimum(ts, np.uint64(2**63 - 1)).astype(np.int64)
    return _np_array(pa, real.astype(np.int64, copy=False), pa.timestamp("ns", tz="UTC"))
