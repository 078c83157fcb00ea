"""Write -> read round trips, the column codings and the writer's limit handling
(SPEC.md sections 6, 11, 15 and 17)."""

from __future__ import annotations

import io
import struct
from pathlib import Path
from typing import Any

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aether_rec
from aether_rec.errors import LimitError
from aether_rec.format import columns as columns_mod
from aether_rec.format import writer as writer_mod
from aether_rec.format.blocks import CHNK, PREAMBLE_SIZE, Block, scan, unpack
from aether_rec.format.chunk import Chunk
from aether_rec.format.codecs import get_codec
from aether_rec.format.columns import U32, read_summary
from aether_rec.format.limits import MAX_STR_LEN
from aether_rec.format.writer import CaptureWriter
from aether_rec.schema import COLUMN_BY_NAME, COLUMNS, KERNEL_EVENT_DTYPE, schema_for_header

# Any Unicode but lone surrogates (not text) and NUL (numpy's str arrays drop trailing NULs).
TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=12)
EXTRA_DTYPES = ["u1", "i1", "u2", "i2", "u4", "i4", "u8", "i8"]


def ints(dtype: np.dtype[Any]) -> st.SearchStrategy[int]:
    info = np.iinfo(dtype)
    lo, hi = int(info.min), int(info.max)
    return st.one_of(st.sampled_from([lo, hi, 0]), st.integers(lo, hi))


def write(batches: list[Any], **kw: Any) -> bytes:
    out = io.BytesIO()
    with CaptureWriter(out, **kw) as w:
        for b in batches:
            w.write_events(b)
    return out.getvalue()


def chunk_blocks(data: bytes) -> list[Block]:
    f = io.BytesIO(data)
    f.seek(PREAMBLE_SIZE)
    return [b for b in scan(f, PREAMBLE_SIZE, True) if isinstance(b, Block) and b.type == CHNK]


def directory(block: Block) -> list[dict[str, Any]]:
    summary, at = read_summary(block.payload)
    raw = get_codec(summary["codec"]).decompress(block.payload[at:], summary["raw"])
    (dlen,) = U32.unpack_from(raw)
    return list(unpack(raw[4 : 4 + dlen], "directory"))


def values(chunk: Chunk, name: str) -> list[Any]:
    return chunk.strings(name).tolist() if chunk.is_str(name) else chunk.column(name).tolist()


# -- hypothesis round trip ----------------------------------------------------------------------
@st.composite
def capture_input(draw: st.DrawFn) -> tuple[list[dict[str, Any]], int, str]:
    names = draw(st.lists(st.sampled_from([c.name for c in COLUMNS]), min_size=1, unique=True))
    extra = draw(st.lists(st.sampled_from(EXTRA_DTYPES), max_size=2, unique=True))
    n_batches = draw(st.integers(1, 4))
    batches = []
    for _ in range(n_batches):
        n = draw(st.integers(0, 40))
        batch: dict[str, Any] = {}
        for name in names:
            col = COLUMN_BY_NAME[name]
            if col.is_str:
                batch[name] = np.array(draw(st.lists(TEXT, min_size=n, max_size=n)), dtype=object)
            else:
                batch[name] = draw(hnp.arrays(col.dtype, n, elements=ints(col.dtype)))
        for dt in extra:
            batch[f"x_{dt}"] = draw(hnp.arrays(np.dtype(dt), n, elements=ints(np.dtype(dt))))
        batches.append(batch)
    return batches, draw(st.integers(1, 25)), draw(st.sampled_from(["zstd", "none"]))


def expected_chunks(batches: list[dict[str, Any]], chunk_events: int) -> list[dict[str, list[Any]]]:
    """What the writer stores: the event stream cut every chunk_events events, each
    piece stably sorted by ts."""
    names = list(batches[0])
    whole = {k: np.concatenate([b[k] for b in batches]) for k in names}
    total = len(whole[names[0]])
    out = []
    for start in range(0, total, chunk_events):
        piece = {k: v[start : start + chunk_events] for k, v in whole.items()}
        if "ts" in piece:
            order = np.argsort(piece["ts"], kind="stable")
            piece = {k: v[order] for k, v in piece.items()}
        out.append({k: v.tolist() for k, v in piece.items()})
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(capture_input())
def test_round_trip(inp: tuple[list[dict[str, Any]], int, str]) -> None:
    batches, chunk_events, codec = inp
    data = write(batches, chunk_events=chunk_events, codec=codec)
    expect = expected_chunks(batches, chunk_events)
    with aether_rec.open(io.BytesIO(data), strict=True) as cap:
        assert cap.warnings == [] and cap.has_index
        got = list(cap.chunks(ordered=False))
        assert [c.n for c in got] == [len(next(iter(e.values()))) for e in expect]
        for chunk, exp in zip(got, expect):
            assert set(chunk.columns) == set(exp)
            for name, vals in exp.items():
                assert values(chunk, name) == vals, name
                if name.startswith("x_"):
                    assert chunk.columns[name].dtype == np.dtype(name[2:])
                elif not COLUMN_BY_NAME[name].is_str:
                    assert chunk.columns[name].dtype == COLUMN_BY_NAME[name].dtype
        # Global order: same events, sorted by ts.
        ordered = list(cap.chunks())
        names = list(batches[0])
        rows = sorted(tuple(map(repr, r)) for e in expect for r in zip(*[e[k] for k in names]))
        got_rows = sorted(tuple(map(repr, r)) for c in ordered for r in zip(*[values(c, k) for k in names]))
        assert got_rows == rows
        ts = np.concatenate([c.column("ts") for c in ordered]) if ordered else np.array([])
        assert bool(np.all(ts[:-1] <= ts[1:]))


def test_every_schema_column_round_trips_its_extremes() -> None:
    batch: dict[str, Any] = {}
    for c in COLUMNS:
        if c.is_str:
            batch[c.name] = np.array(["", "é", "x" * MAX_STR_LEN, "日本語"], dtype=object)
        else:
            info = np.iinfo(c.dtype)
            batch[c.name] = np.array([info.min, info.max, 0, info.max], dtype=c.dtype)
    batch["ts"] = np.array([0, 1, 2**64 - 2, 2**64 - 1], np.uint64)
    data = write([batch])
    with aether_rec.open(io.BytesIO(data), strict=True) as cap:
        got = cap.to_numpy()
    for c in COLUMNS:
        assert got[c.name].tolist() == batch[c.name].tolist(), c.name


# -- the codings, byte by byte ----------------------------------------------------------------------
def test_integer_coding_widths_and_bases() -> None:
    batch = {
        "ts": np.array([1000, 1000, 1003, 1300], np.uint64),  # deltas 0 0 3 297 -> w 2
        "pid": np.full(4, 77, np.uint32),  # constant -> w 0, no bytes
        "fd": np.array([-1, 3, 200, -1], np.int32),  # signed: base = min = -1, stored 0..201 -> w 1
        "offset": np.array([-(2**63), 2**63 - 1, 0, 0], np.int64),  # full range -> w 8
        "bytes": np.array([4096, 4096 + 65535, 4096, 4096], np.uint64),  # span 65535 -> w 2
        "lat": np.array([0, 2**32, 0, 0], np.uint64),  # span 2**32 -> w 8
    }
    (blk,) = chunk_blocks(write([batch], codec="none"))
    d = {e["name"]: e for e in directory(blk)}
    assert d["ts"] == {"name": "ts", "type": "<u8", "enc": "delta", "first": 1000, "base": 0, "w": 2,
                       "size": 6}
    assert d["pid"] == {"name": "pid", "type": "<u4", "enc": "for", "base": 77, "w": 0, "size": 0}
    assert d["fd"]["base"] == 2**64 - 1 and d["fd"]["w"] == 1 and d["fd"]["size"] == 4
    assert d["offset"]["base"] == 2**63 and d["offset"]["w"] == 8
    assert d["bytes"]["base"] == 4096 and d["bytes"]["w"] == 2
    assert d["lat"]["w"] == 8
    # The stored fd bytes are value - base (mod 2**64) as u8: 0, 4, 201, 0.
    summary, at = read_summary(blk.payload)
    body = blk.payload[at:]
    (dlen,) = U32.unpack_from(body)
    pos = 4 + dlen
    for e in directory(blk):
        if e["name"] == "fd":
            assert body[pos : pos + 4] == bytes([0, 4, 201, 0])
        if e["name"] == "ts":
            assert struct.unpack_from("<3H", body, pos) == (0, 3, 297)
        pos += e["size"]
    assert pos == len(body) == summary["raw"]


def test_string_dictionary_coding() -> None:
    batch = {"ts": np.arange(5, dtype=np.uint64), "comm": np.array(["b", "a", "b", "b", "c"], object)}
    (blk,) = chunk_blocks(write([batch], codec="none"))
    e = next(e for e in directory(blk) if e["name"] == "comm")
    assert e["type"] == "str" and e["enc"] == "dict" and e["w"] == 1 and e["size"] == 5
    assert sorted(e["dict"]) == ["a", "b", "c"]


def test_single_valued_string_column_takes_no_bytes() -> None:
    batch = {"ts": np.arange(3, dtype=np.uint64), "comm": np.array(["same"] * 3, object)}
    (blk,) = chunk_blocks(write([batch]))
    e = next(e for e in directory(blk) if e["name"] == "comm")
    assert e["w"] == 0 and e["size"] == 0 and e["dict"] == ["same"]


def test_extra_integer_columns_keep_their_type_including_one_byte_and_bool() -> None:
    n = 4
    batch = {
        "ts": np.arange(n, dtype=np.uint64),
        "x_u1": np.array([0, 255, 1, 2], np.uint8),
        "x_i1": np.array([-128, 127, 0, -1], np.int8),
        "x_b": np.array([True, False, True, True]),
        "x_be": np.array([1, 2, 3, 70000], ">u4"),
    }
    data = write([batch])
    types = {e["name"]: e["type"] for e in directory(chunk_blocks(data)[0])}
    assert (types["x_u1"], types["x_i1"], types["x_b"], types["x_be"]) == ("<u1", "<i1", "<u1", "<u4")
    with aether_rec.open(io.BytesIO(data)) as cap:
        got = cap.to_numpy()
    assert got["x_u1"].tolist() == [0, 255, 1, 2]
    assert got["x_i1"].tolist() == [-128, 127, 0, -1]
    assert got["x_b"].tolist() == [1, 0, 1, 1]
    assert got["x_be"].tolist() == [1, 2, 3, 70000]


def test_kernel_struct_batches_strip_comm_padding() -> None:
    ev = np.zeros(3, KERNEL_EVENT_DTYPE)
    ev["ts"] = [30, 10, 20]
    ev["comm"] = [b"postgres", b"kworker/0:1", b"a"]
    ev["pid"] = [1, 2, 3]
    with aether_rec.open(io.BytesIO(write([ev]))) as cap:
        got = cap.to_numpy(["ts", "comm", "pid", "path"])
    assert got["ts"].tolist() == [10, 20, 30]
    assert got["comm"].tolist() == ["kworker/0:1", "a", "postgres"]
    assert got["pid"].tolist() == [2, 3, 1]
    assert got["path"].tolist() == ["", "", ""]  # absent string column: ""


def test_missing_columns_read_as_schema_defaults() -> None:
    with aether_rec.open(io.BytesIO(write([{"ts": np.array([5, 6], np.uint64)}]))) as cap:
        got = cap.to_numpy([c.name for c in COLUMNS])
    for c in COLUMNS:
        assert got[c.name].tolist() == ([c.default] * 2 if c.name != "ts" else [5, 6]), c.name


# -- dictionaries stay small (regression: they used to grow with every cut) ---------------------
def test_carried_over_dictionaries_do_not_grow() -> None:
    batches = [{"ts": np.arange(70, dtype=np.uint64) + 100 * i,
                "path": np.array([f"/p/{i}/{j}" for j in range(70)], object)} for i in range(30)]
    data = write(batches, chunk_events=100)
    for blk in chunk_blocks(data):
        e = next(e for e in directory(blk) if e["name"] == "path")
        assert len(e["dict"]) <= 100
    with aether_rec.open(io.BytesIO(data)) as cap:
        paths = cap.to_numpy(["path"])["path"].tolist()
    assert paths == [f"/p/{i}/{j}" for i in range(30) for j in range(70)]


def test_sliced_chunks_store_only_the_strings_they_use() -> None:
    c = Chunk.from_columns({"ts": np.arange(4, dtype=np.uint64), "comm": np.array(list("abcd"), object)})
    out = io.BytesIO()
    with CaptureWriter(out) as w:
        w.write_chunk(c.take(slice(2, 4)))
    (blk,) = chunk_blocks(out.getvalue())
    assert next(e for e in directory(blk) if e["name"] == "comm")["dict"] == ["c", "d"]


# -- the writer never writes what readers refuse ---------------------------------------------------
def test_chunk_over_the_raw_limit_is_split(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(columns_mod, "MAX_CHUNK_RAW", 2000)
    ts = np.arange(1000, dtype=np.uint64) * 1000
    data = write([{"ts": ts, "lat": ts * 7919 % 100003}], chunk_events=1000, codec="none")
    blks = chunk_blocks(data)
    assert len(blks) > 1
    assert all(read_summary(b.payload)[0]["raw"] <= 2000 for b in blks)
    with aether_rec.open(io.BytesIO(data), strict=True) as cap:
        assert cap.to_numpy(["ts"])["ts"].tolist() == ts.tolist()


def test_chunk_over_the_decoded_limit_is_split(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(columns_mod, "MAX_CHUNK_DECODED", 8 * 100)
    data = write([{"ts": np.arange(1000, dtype=np.uint64)}], chunk_events=1000)
    assert all(read_summary(b.payload)[0]["n"] <= 100 for b in chunk_blocks(data))
    with aether_rec.open(io.BytesIO(data), strict=True) as cap:
        assert cap.n_events == 1000 and cap.to_numpy(["ts"])["ts"].tolist() == list(range(1000))


def test_dictionary_over_the_limit_is_split(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(columns_mod, "MAX_DICT_ENTRIES", 10)
    names = np.array([f"/f{i}" for i in range(64)], object)
    data = write([{"ts": np.arange(64, dtype=np.uint64), "path": names}], chunk_events=64)
    for blk in chunk_blocks(data):
        assert len(next(e for e in directory(blk) if e["name"] == "path")["dict"]) <= 10
    with aether_rec.open(io.BytesIO(data), strict=True) as cap:
        assert cap.to_numpy(["path"])["path"].tolist() == names.tolist()


def test_overlong_event_string_is_refused() -> None:
    with pytest.raises(LimitError, match="longer than"):
        write([{"ts": np.zeros(1, np.uint64), "path": np.array(["x" * (MAX_STR_LEN + 1)], object)}])


def test_header_beyond_limits_is_refused_before_writing(tmp_path: Path) -> None:
    out = io.BytesIO()
    with pytest.raises(LimitError, match="header"):
        CaptureWriter(out, {"note": "x" * 20000})
    assert out.getvalue() == b""
    with pytest.raises(LimitError, match="header"):
        CaptureWriter(tmp_path / "a.aio", {"note": "x" * 20000})
    assert not (tmp_path / "a.aio").exists()  # not even created


def test_metadata_strings_are_clipped_and_big_tables_split(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.BytesIO()
    with CaptureWriter(out) as w:
        w.write_meta("procs", [{"pid": 1, "cmdline": "java " + "x" * 20000}])
        monkeypatch.setattr(writer_mod, "frame", _small_frame)
        w.write_meta("fds", [{"pid": 1, "fd": i, "path": f"/f/{i}" * 10} for i in range(40)])
        monkeypatch.undo()
    with aether_rec.open(io.BytesIO(out.getvalue()), strict=True) as cap:
        (proc,) = cap.meta("procs")
        assert len(proc["cmdline"]) == MAX_STR_LEN and proc["cmdline"].startswith("java x")
        assert [r["fd"] for r in cap.meta("fds")] == list(range(40))
        assert sum(1 for m in cap._metas or [] if m.table == "fds") > 1


def _small_frame(btype: bytes, payload: bytes) -> bytes:
    from aether_rec.format.blocks import frame

    if len(payload) > 500:
        raise LimitError("test limit")
    return frame(btype, payload)


def test_index_that_cannot_fit_is_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writer_mod, "MAX_INDEX_ENTRIES", 2)
    out = io.BytesIO()
    w = CaptureWriter(out, chunk_events=2)
    w.write_events({"ts": np.arange(9, dtype=np.uint64)})
    w.close()
    assert not w.indexed
    with aether_rec.open(io.BytesIO(out.getvalue()), strict=True) as cap:
        assert not cap.has_index and cap.warnings == []
        assert cap.to_numpy(["ts"])["ts"].tolist() == list(range(9))


def test_header_carries_provenance_codec_and_schema() -> None:
    with aether_rec.open(io.BytesIO(write([], codec="none"))) as cap:
        h = cap.header
    for key in ("format_version", "capture_id", "created_ns", "created", "tool", "tool_version",
                "hostname", "kernel", "arch", "ncpu", "clock", "synthetic"):
        assert key in h, key
    assert h["format_version"] == "1.2" and h["codec"] == "none" and h["columns"] == schema_for_header()
    assert len(h["capture_id"]) == 32 and h["created"].endswith("Z")
    assert isinstance(h["clock"][0][0], int) and isinstance(h["clock"][0][1], int)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_decode_rows_equals_rows_of_the_whole_chunk(seed: int) -> None:
    """columns.decode_rows (what stats uses for its --top rows of chunks decoded in part):
    the same values, types and dictionaries as decoding every column and taking the rows."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from ops_common import random_chunk

    from aether_rec.format.partial import ORIGIN, decode_rows, decode_stored, rows_of

    rng = np.random.default_rng(seed)
    chunk = random_chunk(rng, 3000).sorted_by_ts()
    chunk.columns["flags"] = np.zeros(chunk.n, np.uint32)  # width 0
    codec = get_codec("zstd")
    payload, info = columns_mod.encode_chunk(chunk, codec)
    whole = columns_mod.decode_chunk(payload, info, {})
    body = columns_mod.open_body(payload, {})
    rows = np.concatenate([[0, chunk.n - 1], rng.integers(0, chunk.n, 40)])
    got = decode_rows(body, rows)
    want = whole.take(rows)
    assert got.n == len(rows) and sorted(got.columns) == sorted(want.columns)
    for name, arr in want.columns.items():
        assert got.columns[name].dtype == arr.dtype, name
        if name in want.dicts:
            assert got.strings(name).tolist() == want.strings(name).tolist(), name
        else:
            assert got.columns[name].tolist() == arr.tolist(), name
    assert decode_rows(body, np.zeros(0, np.int64)).n == 0
    with pytest.raises(ValueError):
        decode_rows(body, np.array([chunk.n]))
    # rows_of: a chunk decoded in part, then selected (its rows move), gives the same rows
    part, body = decode_stored(payload, info, ["ts", "lat", "comm"], {})
    part.columns[ORIGIN] = np.arange(part.n, dtype=np.uint32)
    keep = np.flatnonzero(rng.random(part.n) < 0.5)
    sub = part.take(keep)
    picked = rng.integers(0, sub.n, 30)
    got = rows_of(sub, body, picked)
    want = whole.take(keep[picked])
    assert sorted(got.columns) == sorted(want.columns)
    for name, arr in want.columns.items():
        if name in want.dicts:
            assert got.strings(name).tolist() == want.strings(name).tolist(), name
        else:
            assert got.columns[name].tolist() == arr.tolist(), name
