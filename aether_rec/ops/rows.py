"""Events as rows for people and for other tools: one text line, a JSON object or a CSV row per
event, built a chunk at a time: every field is formatted for the whole chunk at once into a
byte matrix (ops/colfmt.py) and the rows come out as one string (``block``); ``columns`` gives
the same values as Python objects, for exports that build documents (perfetto)."""

from __future__ import annotations

import codecs
import collections
import csv
import errno as _errno
import io
import itertools
import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any, TypeVar, cast

import numpy as np

from aether_rec.format.chunk import Chunk
from aether_rec.ops.colfmt import (
    DAY_NS,
    Memo,
    RowMatrix,
    by_value,
    coded,
    duration_classes,
    errnames,
    gather,
    utf8_table,
    wall_parts,
)
from aether_rec.ops.text import printable
from aether_rec.ops.units import fmt_bytes, fmt_duration, iso_utc
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
# Each field is formatted for the whole chunk at once into a block of a byte matrix (ops/colfmt.py,
# RowMatrix): words through tables built once per distinct value, integers digit by digit. Rows
# whose shape differs (no wall time, a file descriptor or not) choose between two blocks.


_TABLES: dict[tuple[int, str], tuple[object, Any]] = {}


def _cached(owner: object, tag: str, build: Callable[[], Any]) -> Any:
    """``build()`` remembered for ``owner`` (a chunk's dictionary, an enum table) and ``tag``
    (what is built from it): a dictionary is encoded once per chunk, not once per slice.
    The entry holds ``owner`` itself, so an id reused after it is freed never matches."""
    key = (id(owner), tag)
    hit = _TABLES.get(key)
    if hit is not None and hit[0] is owner:
        return hit[1]
    value = build()
    if len(_TABLES) >= 64:
        _TABLES.clear()
    _TABLES[key] = (owner, value)
    return value


def _enum_table(
    chunk: Chunk, name: str, table: dict[int, str], enc: Callable[[str], str], tag: str
) -> tuple[np.ndarray, np.ndarray]:
    codes = chunk.column(name)
    if codes.dtype.itemsize == 1:  # a table of every code: no sort
        words = _cached(table, f"{tag}/{name}",
                        lambda: utf8_table([enc(table.get(i, f"{name}{i}")) for i in range(256)]))
        return words, codes.astype(np.intp)
    words_list, codes = coded(codes, lambda c: enc(table.get(c, f"{name}{c}")))
    return utf8_table(words_list), codes


def _str_words(chunk: Chunk, name: str, enc: Callable[[str], str], tag: str) -> tuple[list[str], np.ndarray]:
    if name not in chunk.dicts or name not in chunk.columns or not chunk.dicts[name]:
        return [enc("")], np.zeros(chunk.n, dtype=np.intp)
    words = chunk.dicts[name]
    return _cached(words, f"{tag}/{name}/{len(words)}", lambda: [enc(w) for w in words]), chunk.columns[name]


def _str_table(chunk: Chunk, name: str, enc: Callable[[str], str], tag: str) -> tuple[np.ndarray, np.ndarray]:
    if name not in chunk.dicts or name not in chunk.columns or not chunk.dicts[name]:
        return utf8_table([enc("")]), np.zeros(chunk.n, dtype=np.intp)
    words = chunk.dicts[name]
    return (_cached(words, f"{tag}/{name}/{len(words)}/utf8", lambda: utf8_table([enc(w) for w in words])),
            chunk.columns[name])


def _source_table(chunk: Chunk, source: str, enc: Callable[[str], str], tag: str
                  ) -> tuple[np.ndarray, np.ndarray]:
    if "source" in chunk.dicts:
        return _str_table(chunk, "source", enc, tag)
    return utf8_table([enc(source)]), np.zeros(chunk.n, dtype=np.intp)


def _wall(chunk: Chunk, to_real: ToReal | None) -> tuple[np.ndarray, ...]:
    ts = chunk.column("ts")
    return wall_parts(to_real(ts) if to_real is not None else None, chunk.n)


def _clock_block(m: RowMatrix, hh: np.ndarray, mm: np.ndarray, ss: np.ndarray, sub: np.ndarray,
                 sub_width: int) -> None:
    m.digits(hh, 2)
    m.lit(":")
    m.digits(mm, 2)
    m.lit(":")
    m.digits(ss, 2)
    m.lit(".")
    m.digits(sub, sub_width)


_LAT_TEXT = Memo(lambda v: fmt_duration(v).rjust(8))


def text_matrix(chunk: Chunk, to_real: ToReal | None, source: str = "", with_source: bool = False
                ) -> RowMatrix:
    """Text rows (see TEXT_HEADER) of ``chunk``."""
    n = chunk.n
    m = RowMatrix(n)
    if with_source:
        m.table(*_source_table(chunk, source, lambda s: printable(s).ljust(12) + " ", "text"))
    valid, _day, hh, mm, ss, sub = _wall(chunk, to_real)
    clock = RowMatrix(n)
    _clock_block(clock, hh, mm, ss, sub // 1000, 6)
    mono = RowMatrix(n)
    if not valid.all():
        secs = chunk.column("ts").astype(np.float64) / 1e9
        mono.per_row(list(map("{:17.6f}".format, np.where(valid, 0.0, secs).tolist())))
    m.choose(valid, clock, mono)
    m.lit(" ")
    m.table(*_str_table(chunk, "comm", lambda s: printable(s)[:16].ljust(16), "text"))
    m.lit(" ")
    pid = chunk.column("pid").astype(np.uint64)
    tid = chunk.column("tid").astype(np.uint64)
    m.words(*coded((pid << np.uint64(32)) | tid, lambda k: f"{k >> 32}/{k & 0xFFFFFFFF}".rjust(13)))
    m.lit(" ")
    m.table(*_enum_table(chunk, "layer", LAYERS, lambda s: s.ljust(7), "text"))
    m.lit(" ")
    m.table(*_enum_table(chunk, "op", OPS, lambda s: s.ljust(9), "text"))
    m.lit(" ")
    m.coded(duration_classes(chunk.column("lat")), _LAT_TEXT)
    m.lit(" ")
    m.words(*coded(chunk.column("bytes"), lambda v: fmt_bytes(v).rjust(9)))
    m.lit(" ")
    offset = chunk.column("offset")
    m.choose(offset >= 0, _ints(n, offset, 12), _lit(n, "-".rjust(12)))
    m.lit(" ")
    result = chunk.column("result")
    neg = result < 0
    errs = RowMatrix(n)
    errs.words(*coded(np.where(neg, result, -1), lambda r: _errno.errorcode.get(-r, str(-r)).rjust(8)))
    m.choose(~neg, _ints(n, result, 8), errs)
    m.lit("  ")
    # FILE/DEVICE: the path, else "dev M:m"; "fd N " before it for non-block rows with an fd,
    # and then the whole of it right-stripped
    fd = chunk.column("fd")
    dev = chunk.column("dev")
    words, codes = _str_words(chunk, "path", printable, "text")
    empty = np.array([w == "" for w in words], dtype=bool)[codes]
    empty_r = np.array([w.rstrip() == "" for w in words], dtype=bool)[codes]
    prefix = (fd >= 0) & (chunk.column("layer") != BLOCK)
    fdm = RowMatrix(n)
    fdm.lit("fd ")
    fdm.ints(fd)
    m.choose(prefix, fdm, RowMatrix(n))
    m.choose(prefix & ~np.where(empty, dev == 0, empty_r), _lit(n, " "), RowMatrix(n))
    devm = RowMatrix(n)
    devm.words(*coded(dev, lambda d: f"dev {dev_name(d)}" if d else ""))
    pathm = RowMatrix(n)
    pathm.words(words, codes)
    stripped = [w.rstrip() for w in words]
    if stripped == words:  # no path ends in spaces (the usual case): nothing to choose
        filem = pathm
    else:
        pathr = RowMatrix(n)
        pathr.words(stripped, codes)
        filem = RowMatrix(n)
        filem.choose(prefix, pathr, pathm)
    m.choose(empty, devm, filem)
    m.lit("\n")
    return m


def _lit(n: int, s: str) -> RowMatrix:
    r = RowMatrix(n)
    r.lit(s)
    return r


def _ints(n: int, v: np.ndarray, width: int = 0) -> RowMatrix:
    r = RowMatrix(n)
    r.ints(v, width)
    return r


_JSON = json.JSONEncoder(separators=(",", ":")).encode


def _csv_str(s: str) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow([s, ""])
    return buf.getvalue()[:-2]


def _fields(m: RowMatrix, chunk: Chunk, source: str, enc: Callable[[str], str], safe: bool, null: str,
            keys: Callable[[str], str], tag: str) -> None:
    """Every field of CSV_FIELDS[1:], each after ``keys(name)`` (``tag`` names ``enc``)."""
    esc = (lambda s: enc(printable(s))) if safe else enc
    for name in CSV_FIELDS[1:]:
        m.lit(keys(name))
        col = COLUMN_BY_NAME.get(name)
        if name == "source":
            m.table(*_source_table(chunk, source, esc, tag))
        elif name == "error":
            m.words(*coded(chunk.column("result"),
                           lambda r: enc(_errno.errorcode.get(-r, str(-r))) if r < 0 else null))
        elif name == "dev":
            m.words(*coded(chunk.column("dev"), lambda d: enc(dev_name(d)) if d else null))
        elif name in ENUMS:
            m.table(*_enum_table(chunk, name, ENUMS[name], enc, tag))
        elif col is not None and col.is_str:
            m.table(*_str_table(chunk, name, esc, tag))
        else:
            m.ints(chunk.column(name))


def _iso_block(chunk: Chunk, to_real: ToReal | None, quote: str, null: str) -> tuple[np.ndarray, RowMatrix]:
    n = chunk.n
    valid, day, hh, mm, ss, sub = _wall(chunk, to_real)
    iso = RowMatrix(n)
    iso.lit(quote)
    iso.words(*coded(day, lambda d: (iso_utc(d * DAY_NS) or "?")[:11]))
    _clock_block(iso, hh, mm, ss, sub, 9)
    iso.lit("Z" + quote)
    out = RowMatrix(n)
    out.choose(valid, iso, _lit(n, null))
    return valid, out


def json_matrix(chunk: Chunk, to_real: ToReal | None, source: str = "") -> RowMatrix:
    """JSON objects (time, every field of CSV_FIELDS, flag_names), one per line."""
    m = RowMatrix(chunk.n)
    m.lit('{"time":')
    m.parts += _iso_block(chunk, to_real, '"', "null")[1].parts
    _fields(m, chunk, source, _JSON, False, "null", lambda k: f",{_JSON(k)}:", "json")
    m.lit(',"flag_names":')
    m.words(*coded(chunk.column("flags"), lambda v: _JSON(_flag_names(v))))
    m.lit("}\n")
    return m


def csv_matrix(chunk: Chunk, to_real: ToReal | None, source: str = "") -> RowMatrix:
    """CSV rows of CSV_FIELDS (control characters in strings escaped)."""
    m = RowMatrix(chunk.n)
    m.parts += _iso_block(chunk, to_real, "", "")[1].parts
    _fields(m, chunk, source, _csv_str, True, "", lambda k: ",", "csv")
    m.lit("\n")
    return m


def csv_header() -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(CSV_FIELDS)
    return buf.getvalue()


FORMATS = ("text", "jsonl", "csv")


# Rows built at once: bounds the byte matrices (up to ~0.5 KiB a row, jsonl). Bigger slices
# make fewer numpy calls per row: 32768 against 16384 made replay text about 8 % faster and
# jsonl's peak about 60 MB higher (bench_offline.py, 2026-12-03); a recorded chunk (65536
# events) is still two slices, one per thread.
SLICE = 32768


def _matrix(fmt: str, part: Chunk, to_real: ToReal | None, source: str, with_source: bool) -> RowMatrix:
    if fmt == "csv":
        return csv_matrix(part, to_real, source)
    if fmt == "jsonl":
        return json_matrix(part, to_real, source)
    return text_matrix(part, to_real, source, with_source=with_source)


WORKERS = 2  # threads building a chunk's slices: numpy lets go of the GIL for most of the work


def slices(fmt: str, chunk: Chunk, to_real: ToReal | None, source: str = ""
           ) -> Iterator[tuple[bytes, np.ndarray]]:
    """The rows of ``chunk`` in ``fmt`` as UTF-8 bytes, SLICE rows at a time: each slice's
    bytes and the offset where each of its rows ends (a chunk's rows are never one big string:
    memory stays that of a few slices, whatever the chunk's size). The slices of a chunk are
    built on WORKERS threads, at most WORKERS + 1 ahead of the one being written."""
    return _built(fmt, chunk, to_real, source, RowMatrix.data)


def slice_bytes(fmt: str, chunk: Chunk, to_real: ToReal | None, source: str = "") -> Iterator[bytes]:
    """``slices`` without the row ends: the bytes of each slice, for writers that never cut
    between rows (export, a replay without loss markers in the chunk)."""
    return _built(fmt, chunk, to_real, source, RowMatrix.row_bytes)


T = TypeVar("T")


def _built(fmt: str, chunk: Chunk, to_real: ToReal | None, source: str, out: Callable[[RowMatrix], T]
           ) -> Iterator[T]:
    if fmt not in FORMATS:
        raise ValueError(f"unknown row format {fmt!r}")
    with_source = "source" in chunk.dicts
    step = SLICE

    def build(a: int) -> T:
        part = chunk.take(slice(a, a + step)) if chunk.n > step else chunk
        return out(_matrix(fmt, part, to_real, source, with_source))

    starts = iter(range(0, chunk.n, step))
    if WORKERS < 2 or chunk.n <= step:
        yield from map(build, starts)
        return
    with ThreadPoolExecutor(WORKERS, thread_name_prefix="aether-rows") as pool:
        pending = collections.deque(pool.submit(build, a) for a in itertools.islice(starts, WORKERS + 1))
        while pending:
            done = pending.popleft().result()
            nxt = next(starts, None)
            if nxt is not None:
                pending.append(pool.submit(build, nxt))
            yield done


def block(fmt: str, chunk: Chunk, to_real: ToReal | None, source: str = "") -> tuple[str, np.ndarray]:
    """The rows of ``chunk`` in ``fmt`` (text, jsonl, csv) as one string, newlines included,
    and the offset where each row ends (``text[ends[i-1]:ends[i]]`` is row ``i``)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown row format {fmt!r}")
    texts: list[str] = []
    ends: list[np.ndarray] = [np.zeros(0, dtype=np.int64)]
    base = 0
    with_source = "source" in chunk.dicts
    for a in range(0, chunk.n, SLICE):
        part = chunk.take(slice(a, a + SLICE)) if chunk.n > SLICE else chunk
        text, e = _matrix(fmt, part, to_real, source, with_source).text()
        texts.append(text)
        ends.append(e + base)
        base += len(text)
    return "".join(texts), np.concatenate(ends)


def byte_sink(out: IO[str]) -> Callable[[bytes], Any]:
    """Where rows built as UTF-8 bytes go: the binary buffer under ``out`` when ``out``
    encodes UTF-8 (the same bytes, without a str and an encoding step per chunk), else
    ``out`` itself. Everything written after this goes through the sink (``out`` is flushed
    first so that nothing it holds comes later)."""
    buffer = getattr(out, "buffer", None)
    encoding = getattr(out, "encoding", None)
    if buffer is not None and encoding and codecs.lookup(encoding).name == "utf-8":
        out.flush()
        return cast(Callable[[bytes], Any], buffer.write)
    return lambda b: out.write(b.decode("utf-8", "surrogatepass"))


def lines(fmt: str, chunk: Chunk, to_real: ToReal | None, source: str = "") -> list[str]:
    """One line per event of ``chunk`` in ``fmt`` (text, jsonl, csv), newline included."""
    text, ends = block(fmt, chunk, to_real, source)
    starts = [0, *ends[:-1].tolist()]
    return [text[a:b] for a, b in zip(starts, ends.tolist())]


def header_line(fmt: str) -> str | None:
    if fmt == "csv":
        return csv_header()
    if fmt == "text":
        return TEXT_HEADER + "\n"
    return None
