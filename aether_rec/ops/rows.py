"""Events as rows for people and for other tools: one text line, a JSON object or a CSV row per
event, built a chunk at a time: every column is converted once per chunk (ops/colfmt.py), then
each row is one C-level ``%`` format of those values (``columns`` gives the same values as
Python objects, for exports that build documents)."""

from __future__ import annotations

import csv
import errno as _errno
import io
import json
import operator
from collections.abc import Callable
from typing import Any

import numpy as np

from aether_rec.format.chunk import Chunk
from aether_rec.ops.colfmt import by_value, dates, durations, errnames, gather, sizes, wall_parts
from aether_rec.ops.text import printable
from aether_rec.schema import COLUMN_BY_NAME, COLUMNS, ENUMS, FLAGS, LAYER_CODE, LAYERS, OPS, dev_name

# The row fields, in this order, then every other column of schema.COLUMNS (a column added
# there appears in replay and export rows without a change here).
FIXED_FIELDS = (
    "time",
    "ts",
    "source",
    "comm",
    "pid",
    "tid",
    "cpu",
    "layer",
    "op",
    "fd",
    "path",
    "dev",
    "offset",
    "bytes",
    "result",
    "error",
    "lat",
    "queue",
    "cgroup",
    "flags",
)
CSV_FIELDS = FIXED_FIELDS + tuple(c.name for c in COLUMNS if c.name not in FIXED_FIELDS)

ToReal = Callable[[np.ndarray], np.ndarray]
BLOCK = LAYER_CODE["block"]


def _names(table: dict[int, str], codes: np.ndarray, prefix: str) -> list[str]:
    return by_value(codes, lambda c: table.get(c, f"{prefix}{c}"))


def _strs(chunk: Chunk, name: str, safe: bool = False) -> list[str]:
    """A string column as a list; ``safe``: control characters escaped (text, csv)."""
    if name not in chunk.dicts or name not in chunk.columns:
        return [""] * chunk.n
    d = [printable(s) for s in chunk.dicts[name]] if safe else chunk.dicts[name]
    return gather(d, chunk.columns[name])


def _flag_names(v: int) -> str:
    return ",".join(name for bit, name in FLAGS.items() if v & bit)


def columns(
    chunk: Chunk, to_real: ToReal | None, source: str = "", safe: bool = False
) -> dict[str, list[Any]]:
    """Python lists of display-ready values for every row field; ``safe`` escapes control
    characters in strings (for text and csv; json escapes them itself)."""
    ts = chunk.column("ts")
    real = to_real(ts) if to_real is not None else None
    dev = chunk.column("dev")
    devs = {int(d): (dev_name(int(d)) if d else None) for d in np.unique(dev)}
    result = chunk.column("result")
    if "source" in chunk.dicts:
        src = _strs(chunk, "source", safe)
    else:
        src = [printable(source) if safe else source] * chunk.n
    return {
        "time_ns": real.tolist() if real is not None else [None] * chunk.n,
        "ts": ts.tolist(),
        "source": src,
        "comm": _strs(chunk, "comm", safe),
        "pid": chunk.column("pid").tolist(),
        "tid": chunk.column("tid").tolist(),
        "cpu": chunk.column("cpu").tolist(),
        "layer": _names(LAYERS, chunk.column("layer"), "layer"),
        "op": _names(OPS, chunk.column("op"), "op"),
        "fd": chunk.column("fd").tolist(),
        "path": _strs(chunk, "path", safe),
        "dev": [devs[d] for d in dev.tolist()],
        "offset": chunk.column("offset").tolist(),
        "bytes": chunk.column("bytes").tolist(),
        "result": result.tolist(),
        "error": errnames(result),
        "lat": chunk.column("lat").tolist(),
        "queue": chunk.column("queue").tolist(),
        "cgroup": chunk.column("cgroup").tolist(),
        "flags": chunk.column("flags").tolist(),
        **{c.name: (_strs(chunk, c.name, safe) if c.is_str
                    else _names(ENUMS[c.name], chunk.column(c.name), c.name) if c.name in ENUMS
                    else chunk.column(c.name).tolist())
           for c in COLUMNS if c.name not in FIXED_FIELDS},
    }


TEXT_HEADER = (
    f"{'TIME(UTC)':<15} {'COMM':<16} {'PID/TID':>13} {'LAYER':<7} {'OP':<9} "
    f"{'LAT':>8} {'BYTES':>9} {'OFFSET':>12} {'RESULT':>8}  FILE/DEVICE"
)

# -- whole-column row formatting -------------------------------------------------------------------
# Each row is one ``%`` format (a C call per row, no Python frame per event) of values prepared
# a column at a time (ops/colfmt.py). A row whose shape differs (no wall time, a file descriptor
# or not) gets another format string with the same arguments; ``%.0s`` consumes the ones it does
# not show.


def _apply(fmts: list[str], codes: np.ndarray, args: list[list[Any]]) -> list[str]:
    if len(np.unique(codes)) <= 1:
        fmt = fmts[int(codes[0])] if codes.size else fmts[0]
        return list(map(fmt.__mod__, zip(*args)))
    return list(map(operator.mod, gather(fmts, codes), zip(*args)))


def _enum_words(chunk: Chunk, name: str, table: dict[int, str], enc: Callable[[str], str]) -> list[str]:
    codes = chunk.column(name)
    if codes.dtype.itemsize == 1:  # a table of every code: no sort
        return gather([enc(table.get(i, f"{name}{i}")) for i in range(256)], codes.astype(np.intp))
    return by_value(codes, lambda c: enc(table.get(c, f"{name}{c}")))


def _str_words(chunk: Chunk, name: str, enc: Callable[[str], str]) -> list[str]:
    if name not in chunk.dicts or name not in chunk.columns:
        return [enc("")] * chunk.n
    return gather([enc(w) for w in chunk.dicts[name]], chunk.columns[name])


def _source_words(chunk: Chunk, source: str, enc: Callable[[str], str]) -> list[str]:
    if "source" in chunk.dicts:
        return _str_words(chunk, "source", enc)
    return [enc(source)] * chunk.n


def _wall(chunk: Chunk, to_real: ToReal | None) -> tuple[np.ndarray, ...]:
    ts = chunk.column("ts")
    return wall_parts(to_real(ts) if to_real is not None else None, chunk.n)


_TEXT_TIME = ("%02d:%02d:%02d.%06d%.0s", "%.0s%.0s%.0s%.0s%17.6f")
_TEXT_WHERE = ("%.0s%s", "fd %d %s", "fd %d%.0s")


def text_lines(
    chunk: Chunk, to_real: ToReal | None, source: str = "", with_source: bool = False
) -> list[str]:
    """Text rows (see TEXT_HEADER), newline included."""
    n = chunk.n
    if not n:
        return []
    valid, _day, hh, mm, ss, sub = _wall(chunk, to_real)
    tsf = (chunk.column("ts").astype(np.float64) / 1e9).tolist() if not valid.all() else [0] * n
    pid = chunk.column("pid").astype(np.uint64)
    tid = chunk.column("tid").astype(np.uint64)
    pidtid = by_value((pid << np.uint64(32)) | tid, lambda k: f"{k >> 32}/{k & 0xFFFFFFFF}")
    offset = chunk.column("offset")
    off = offset.astype(object)
    off[offset < 0] = "-"
    result = chunk.column("result")
    res = result.astype(object)
    neg = result < 0
    if neg.any():
        res[neg] = np.array(errnames(result[neg]), dtype=object)
    # FILE/DEVICE: the path, else "dev M:m"; "fd N " before it for non-block rows with an fd
    fd = chunk.column("fd")
    dev = chunk.column("dev")
    words = [printable(w) for w in chunk.dicts.get("path", [])] if "path" in chunk.columns else []
    codes = chunk.columns["path"] if words else np.zeros(n, dtype=np.intp)
    words = words or [""]
    path = np.asarray(gather(words, codes), dtype=object)
    path_r = np.asarray(gather([w.rstrip() for w in words], codes), dtype=object)  # "fd N path".rstrip()
    empty = np.array([w == "" for w in words], dtype=bool)[codes]
    empty_r = np.array([w.rstrip() == "" for w in words], dtype=bool)[codes]
    devw = np.asarray(by_value(dev, lambda d: f"dev {dev_name(d)}" if d else ""), dtype=object)
    prefix = (fd >= 0) & (chunk.column("layer") != BLOCK)
    body = np.where(empty, devw, np.where(prefix, path_r, path))
    wcat = np.where(prefix, np.where(np.where(empty, dev == 0, empty_r), 2, 1), 0)
    code = np.where(valid, 0, 3) + wcat
    tail = " %-16.16s %13s %-7s %-9s %8s %9s %12s %8s  "
    head = "%-12s " if with_source else ""
    fmts = [head + t + tail + w + "\n" for t in _TEXT_TIME for w in _TEXT_WHERE]
    args = [
        hh.tolist(),
        mm.tolist(),
        ss.tolist(),
        (sub // 1000).tolist(),
        tsf,
        _str_words(chunk, "comm", printable),
        pidtid,
        _enum_words(chunk, "layer", LAYERS, str),
        _enum_words(chunk, "op", OPS, str),
        durations(chunk.column("lat")),
        sizes(chunk.column("bytes")),
        off.tolist(),
        res.tolist(),
        fd.tolist(),
        body.tolist(),
    ]
    if with_source:
        args.insert(0, _source_words(chunk, source, printable))
    return _apply(fmts, code, args)


_JSON = json.JSONEncoder(separators=(",", ":")).encode


def _csv_str(s: str) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow([s, ""])
    return buf.getvalue()[:-2]


def _field_values(
    chunk: Chunk, source: str, enc: Callable[[str], str], safe: bool, null: str
) -> tuple[list[str], list[list[Any]]]:
    """Per field of CSV_FIELDS[1:]: its ``%`` conversion and its values (strings encoded)."""
    esc = (lambda s: enc(printable(s))) if safe else enc
    convs: list[str] = []
    vals: list[list[Any]] = []
    for name in CSV_FIELDS[1:]:
        col = COLUMN_BY_NAME.get(name)
        if name == "source":
            v = _source_words(chunk, source, esc)
        elif name == "error":
            result = chunk.column("result")
            v = by_value(result, lambda r: enc(_errno.errorcode.get(-r, str(-r))) if r < 0 else null)
        elif name == "dev":
            v = by_value(chunk.column("dev"), lambda d: enc(dev_name(d)) if d else null)
        elif name in ENUMS:
            v = _enum_words(chunk, name, ENUMS[name], enc)
        elif col is not None and col.is_str:
            v = _str_words(chunk, name, esc)
        else:
            convs.append("%d")
            vals.append(chunk.column(name).tolist())
            continue
        convs.append("%s")
        vals.append(v)
    return convs, vals


def json_lines(chunk: Chunk, to_real: ToReal | None, source: str = "") -> list[str]:
    """JSON objects (time, every field of CSV_FIELDS, flag_names), newline included."""
    if not chunk.n:
        return []
    valid, day, hh, mm, ss, sub = _wall(chunk, to_real)
    convs, vals = _field_values(chunk, source, _JSON, False, "null")
    body = "".join(f",{_JSON(k)}:{c}" for k, c in zip(CSV_FIELDS[1:], convs))
    flag_names = by_value(chunk.column("flags"), lambda v: _JSON(_flag_names(v)))
    times = ('"%s%02d:%02d:%02d.%09dZ"', "null%.0s%.0s%.0s%.0s%.0s")
    fmts = ['{"time":' + t + body + ',"flag_names":%s}\n' for t in times]
    dates_ = dates(day) if valid.any() else [""] * chunk.n
    args = [dates_, hh.tolist(), mm.tolist(), ss.tolist(), sub.tolist(), *vals, flag_names]
    return _apply(fmts, np.where(valid, 0, 1), args)


def csv_header() -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(CSV_FIELDS)
    return buf.getvalue()


def csv_lines(chunk: Chunk, to_real: ToReal | None, source: str = "") -> list[str]:
    """CSV rows of CSV_FIELDS (control characters in strings escaped), newline included."""
    if not chunk.n:
        return []
    valid, day, hh, mm, ss, sub = _wall(chunk, to_real)
    convs, vals = _field_values(chunk, source, _csv_str, True, "")
    body = "".join("," + c for c in convs)
    times = ("%s%02d:%02d:%02d.%09dZ", "%.0s%.0s%.0s%.0s%.0s")
    fmts = [t + body + "\n" for t in times]
    dates_ = dates(day) if valid.any() else [""] * chunk.n
    args = [dates_, hh.tolist(), mm.tolist(), ss.tolist(), sub.tolist(), *vals]
    return _apply(fmts, np.where(valid, 0, 1), args)


FORMATS = ("text", "jsonl", "csv")


def lines(fmt: str, chunk: Chunk, to_real: ToReal | None, source: str = "") -> list[str]:
    """One line per event of ``chunk`` in ``fmt`` (text, jsonl, csv), newline included."""
    if fmt == "csv":
        return csv_lines(chunk, to_real, source)
    if fmt == "jsonl":
        return json_lines(chunk, to_real, source)
    if fmt == "text":
        return text_lines(chunk, to_real, source, with_source="source" in chunk.dicts)
    raise ValueError(f"unknown row format {fmt!r}")


def header_line(fmt: str) -> str | None:
    if fmt == "csv":
        return csv_header()
    if fmt == "text":
        return TEXT_HEADER + "\n"
    return None
