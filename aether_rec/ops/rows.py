"""Events as rows for people and for other tools: one text line, a JSON object or a CSV row per
event, built a chunk at a time (columns are converted once per chunk, then zipped)."""

from __future__ import annotations

import csv
import errno as _errno
import io
import json
from collections.abc import Callable
from typing import Any

import numpy as np

from aether_rec.format.chunk import Chunk
from aether_rec.ops.text import printable
from aether_rec.ops.units import fmt_bytes, fmt_duration, iso_utc
from aether_rec.schema import COLUMNS, ENUMS, FLAGS, LAYERS, OPS, dev_name

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


def _names(table: dict[int, str], codes: np.ndarray, prefix: str) -> list[str]:
    lut = {int(c): table.get(int(c), f"{prefix}{int(c)}") for c in np.unique(codes)}
    return [lut[c] for c in codes.tolist()]


def _strs(chunk: Chunk, name: str, safe: bool = False) -> list[str]:
    """A string column as a list; ``safe``: control characters escaped (text, csv)."""
    if name not in chunk.dicts or name not in chunk.columns:
        return [""] * chunk.n
    d = [printable(s) for s in chunk.dicts[name]] if safe else chunk.dicts[name]
    return [d[c] for c in chunk.columns[name].tolist()]


def _errnames(result: list[int]) -> list[str | None]:
    return [(_errno.errorcode.get(-r, str(-r)) if r < 0 else None) for r in result]


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
    result = chunk.column("result").tolist()
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
        "result": result,
        "error": _errnames(result),
        "lat": chunk.column("lat").tolist(),
        "queue": chunk.column("queue").tolist(),
        "cgroup": chunk.column("cgroup").tolist(),
        "flags": chunk.column("flags").tolist(),
        **{c.name: (_strs(chunk, c.name, safe) if c.is_str
                    else _names(ENUMS[c.name], chunk.column(c.name), c.name) if c.name in ENUMS
                    else chunk.column(c.name).tolist())
           for c in COLUMNS if c.name not in FIXED_FIELDS},
    }


def _time_text(real: int | None, ts: int) -> str:
    s = iso_utc(real)
    if s is None:  # no clock mapping, or no wall time for this ts: seconds of monotonic time
        return f"{ts / 1e9:17.6f}"
    return s[11:26]  # HH:MM:SS.ffffff (UTC)


TEXT_HEADER = (
    f"{'TIME(UTC)':<15} {'COMM':<16} {'PID/TID':>13} {'LAYER':<7} {'OP':<9} "
    f"{'LAT':>8} {'BYTES':>9} {'OFFSET':>12} {'RESULT':>8}  FILE/DEVICE"
)


def text_lines(
    chunk: Chunk, to_real: ToReal | None, source: str = "", with_source: bool = False
) -> list[str]:
    c = columns(chunk, to_real, source, safe=True)
    out = []
    for i in range(chunk.n):
        where = c["path"][i] or (f"dev {c['dev'][i]}" if c["dev"][i] else "")
        if c["fd"][i] >= 0 and c["layer"][i] != "block":
            where = f"fd {c['fd'][i]} {where}".rstrip()
        res = c["error"][i] or str(c["result"][i])
        off = str(c["offset"][i]) if c["offset"][i] >= 0 else "-"
        line = (
            f"{_time_text(c['time_ns'][i], c['ts'][i]):<15} {c['comm'][i][:16]:<16} "
            f"{str(c['pid'][i]) + '/' + str(c['tid'][i]):>13} {c['layer'][i]:<7} {c['op'][i]:<9} "
            f"{fmt_duration(c['lat'][i]):>8} {fmt_bytes(c['bytes'][i]):>9} {off:>12} {res:>8}  {where}"
        )
        if with_source:
            line = f"{c['source'][i]:<12} {line}"
        out.append(line)
    return out


def json_lines(chunk: Chunk, to_real: ToReal | None, source: str = "") -> list[str]:
    c = columns(chunk, to_real, source)
    out = []
    dumps = json.JSONEncoder(separators=(",", ":")).encode
    for i in range(chunk.n):
        rec = {
            "time": iso_utc(c["time_ns"][i]) if c["time_ns"][i] is not None else None,
            **{k: c[k][i] for k in CSV_FIELDS[1:]},
            "flag_names": _flag_names(c["flags"][i]),
        }
        out.append(dumps(rec))
    return out


def csv_header() -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(CSV_FIELDS)
    return buf.getvalue()


def csv_lines(chunk: Chunk, to_real: ToReal | None, source: str = "") -> list[str]:
    c = columns(chunk, to_real, source, safe=True)
    times = [iso_utc(t) if t is not None else "" for t in c["time_ns"]]
    cols = [times] + [["" if v is None else v for v in c[k]] for k in CSV_FIELDS[1:]]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    out = []
    for row in zip(*cols):
        buf.seek(0)
        buf.truncate()
        w.writerow(row)
        out.append(buf.getvalue())
    return out


FORMATS = ("text", "jsonl", "csv")


def lines(fmt: str, chunk: Chunk, to_real: ToReal | None, source: str = "") -> list[str]:
    """One line per event of ``chunk`` in ``fmt`` (text, jsonl, csv), newline included."""
    if fmt == "csv":
        return csv_lines(chunk, to_real, source)
    if fmt == "jsonl":
        return [line + "\n" for line in json_lines(chunk, to_real, source)]
    if fmt == "text":
        with_source = "source" in chunk.dicts
        return [line + "\n" for line in text_lines(chunk, to_real, source, with_source=with_source)]
    raise ValueError(f"unknown row format {fmt!r}")


def header_line(fmt: str) -> str | None:
    if fmt == "csv":
        return csv_header()
    if fmt == "text":
        return TEXT_HEADER + "\n"
    return None
