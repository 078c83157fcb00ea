"""The per-event row formatting that ops/rows.py had before it formatted whole columns: the
slow, obviously-right reference the fast path is compared with (tests/test_rows_fast.py)."""

from __future__ import annotations

import csv
import io
import json

from aether_rec.format.chunk import Chunk
from aether_rec.ops.rows import CSV_FIELDS, ToReal, columns
from aether_rec.ops.units import fmt_bytes, fmt_duration, iso_utc
from aether_rec.schema import FLAGS


def _flag_names(v: int) -> str:
    return ",".join(name for bit, name in FLAGS.items() if v & bit)


def _time_text(real: int | None, ts: int) -> str:
    s = iso_utc(real)
    if s is None:
        return f"{ts / 1e9:17.6f}"
    return s[11:26]


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
        out.append(line + "\n")
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
        out.append(dumps(rec) + "\n")
    return out


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


def lines(fmt: str, chunk: Chunk, to_real: ToReal | None, source: str = "") -> list[str]:
    if fmt == "csv":
        return csv_lines(chunk, to_real, source)
    if fmt == "jsonl":
        return json_lines(chunk, to_real, source)
    return text_lines(chunk, to_real, source, with_source="source" in chunk.dicts)
