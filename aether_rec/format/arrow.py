"""Captures as Apache Arrow: one RecordBatch per decoded chunk, no Python per event.

The Arrow schema of events (``event_schema``) is every column of schema.py in its own type,
with string columns as dictionary arrays (the chunk's dictionary codes are the indices, so
nothing is re-encoded), plus:

- ``time``: the event's start on the wall clock (``timestamp[ns, UTC]``, through the capture's
  clock mapping; the monotonic ``ts`` when the capture has none);
- ``layer_name``, ``op_name``: the enum codes' names, as dictionary arrays;
- ``source``: where the event came from (a merged capture's ``source`` column, else the
  capture's host name) and ``capture``: the index of the capture among those read together.

pyarrow is optional (``pip install 'aether-rec[arrow]'``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from aether_rec.format.chunk import Chunk
from aether_rec.optional import require
from aether_rec.schema import COLUMN_BY_NAME, COLUMNS, LAYERS, OPS

if TYPE_CHECKING:
    from aether_rec.format.reader import Capture

EXTRA_COLUMNS = ("time", "layer_name", "op_name", "source", "capture")
ToReal = Callable[[np.ndarray], np.ndarray]


def pyarrow() -> Any:
    return require("pyarrow", "arrow", "Arrow access")


def column_names() -> list[str]:
    """Every column of the event schema, in schema order."""
    return ["source", "capture", "time", *(c.name for c in COLUMNS), "layer_name", "op_name"]


def event_schema(columns: Sequence[str] | None = None) -> Any:
    """The Arrow schema of events, limited to ``columns`` (in schema order) when given."""
    pa = pyarrow()
    dict_str = pa.dictionary(pa.int32(), pa.string())
    fields = []
    for name in column_names():
        if columns is not None and name not in columns:
            continue
        if name == "time":
            fields.append(pa.field(name, pa.timestamp("ns", tz="UTC")))
        elif name == "capture":
            fields.append(pa.field(name, pa.int32()))
        elif name in ("source", "layer_name", "op_name") or COLUMN_BY_NAME[name].is_str:
            fields.append(pa.field(name, dict_str))
        else:
            fields.append(pa.field(name, pa.from_numpy_dtype(COLUMN_BY_NAME[name].dtype)))
    return pa.schema(fields)


def check_columns(columns: Sequence[str] | None) -> list[str] | None:
    """``columns`` validated against the schema (ValueError naming the unknown ones)."""
    if columns is None:
        return None
    known = column_names()
    bad = [c for c in columns if c not in known]
    if bad:
        raise ValueError(f"unknown column(s) {', '.join(map(repr, bad))} (columns: {', '.join(known)})")
    return list(columns)


def chunk_columns(columns: Sequence[str] | None) -> list[str] | None:
    """The chunk columns to decode for the Arrow ``columns`` (None: all)."""
    if columns is None:
        return None
    need: list[str] = []
    for name in columns:
        base = {"time": "ts", "layer_name": "layer", "op_name": "op", "capture": None}.get(name, name)
        if base is not None and base not in need:
            need.append(base)
    return need


def _dict_array(pa: Any, codes: np.ndarray, words: list[str]) -> Any:
    return pa.DictionaryArray.from_arrays(pa.array(codes.view(np.int32)), pa.array(words, pa.string()))


def _enum_array(pa: Any, codes: np.ndarray, table: dict[int, str], prefix: str) -> Any:
    # codes are uint8: a 256-entry dictionary indexed by the code itself, no search
    words = [table.get(i, f"{prefix}{i}") for i in range(256)]
    return pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int32)), pa.array(words, pa.string()))


def chunk_to_batch(
    chunk: Chunk,
    schema: Any,
    *,
    source: str = "",
    capture: int = 0,
    to_real: ToReal | None = None,
) -> Any:
    """One RecordBatch of ``schema`` (from event_schema) holding the events of ``chunk``."""
    pa = pyarrow()
    arrays = []
    for name in schema.names:
        if name == "time":
            ts = chunk.column("ts").astype(np.int64)
            real = to_real(ts) if to_real is not None else ts
            arrays.append(pa.array(np.asarray(real, dtype=np.int64), pa.timestamp("ns", tz="UTC")))
        elif name == "capture":
            arrays.append(pa.array(np.full(chunk.n, capture, dtype=np.int32)))
        elif name == "layer_name":
            arrays.append(_enum_array(pa, chunk.column("layer"), LAYERS, "layer"))
        elif name == "op_name":
            arrays.append(_enum_array(pa, chunk.column("op"), OPS, "op"))
        elif name == "source" and "source" not in chunk.dicts:
            arrays.append(_dict_array(pa, np.zeros(chunk.n, np.uint32), [source]))
        elif name in chunk.dicts and name in chunk.columns:
            arrays.append(_dict_array(pa, chunk.columns[name].astype(np.uint32, copy=False),
                                      chunk.dicts[name]))
        elif COLUMN_BY_NAME[name].is_str:
            arrays.append(_dict_array(pa, np.zeros(chunk.n, np.uint32), [""]))
        else:
            arrays.append(pa.array(chunk.column(name)))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def source_name(cap: Capture) -> str:
    h = cap.header
    return str(h.get("hostname") or h.get("capture_id") or cap.name)


def real_clock(cap: Capture) -> ToReal | None:
    """Monotonic -> wall-clock ns for ``cap``, from its clock pairs read once; None without any."""
    pairs = cap.clock_pairs()
    if len(pairs) == 0:
        return None

    def to_real(ts: np.ndarray) -> np.ndarray:
        return np.asarray(cap.mono_to_real(ts), dtype=np.int64)

    cap.clock_pairs = lambda: pairs  # type: ignore[method-assign]  # read once, not per chunk
    return to_real


def capture_batches(
    cap: Capture,
    columns: Sequence[str] | None = None,
    *,
    capture: int = 0,
    **chunk_kw: Any,
) -> Iterator[Any]:
    """RecordBatches of ``cap`` (keyword arguments as for ``Capture.chunks``)."""
    cols = check_columns(columns)
    schema = event_schema(cols)
    to_real = real_clock(cap)
    src = source_name(cap)
    for chunk in cap.chunks(columns=chunk_columns(cols), **chunk_kw):
        yield chunk_to_batch(chunk, schema, source=src, capture=capture, to_real=to_real)


def capture_reader(cap: Capture, columns: Sequence[str] | None = None, **chunk_kw: Any) -> Any:
    """A ``pyarrow.RecordBatchReader`` over ``cap``, one batch per chunk, in time order."""
    pa = pyarrow()
    cols = check_columns(columns)
    return pa.RecordBatchReader.from_batches(event_schema(cols), capture_batches(cap, cols, **chunk_kw))
