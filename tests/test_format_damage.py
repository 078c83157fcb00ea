"""Damaged and hostile captures: truncation at every offset, bad checksums, resynchronisation,
CRC-valid garbage, and the limits (SPEC.md sections 14, 17 and 18). A reader may only ever
raise the CaptureError family, must never hang, and keeps what is intact."""

from __future__ import annotations

import contextlib
import io
import signal
import struct
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aether_rec
from aether_rec.errors import CaptureError, DamagedCaptureError, NotACaptureError
from aether_rec.format import columns as columns_mod
from aether_rec.format.blocks import (
    CHNK,
    HEAD,
    INDX,
    LOSS,
    META,
    PREAMBLE_SIZE,
    Block,
    frame,
    pack,
    preamble,
    scan,
    trailer,
)
from aether_rec.format.limits import MAX_CHUNK_EVENTS, MAX_CHUNK_RAW, MAX_COLUMNS, MAX_STR_LEN
from aether_rec.ops.info import capture_info

VECTORS = Path(__file__).resolve().parent.parent / "format" / "vectors"
SEVERAL = (VECTORS / "002-several-chunks.aio").read_bytes()


class Hang(Exception):
    pass


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Fail (raise Hang) if the block runs longer than ``seconds``."""

    def on_alarm(signum: int, frame: Any) -> None:
        raise Hang(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def blocks_of(data: bytes) -> list[Block]:
    f = io.BytesIO(data)
    f.seek(PREAMBLE_SIZE)
    return [b for b in scan(f, PREAMBLE_SIZE, True) if isinstance(b, Block)]


def read_all(data: bytes, strict: bool = False) -> tuple[dict[str, np.ndarray], Any]:
    """Everything a tool would read from a capture; returns (events, capture)."""
    with aether_rec.open(io.BytesIO(data), strict=strict) as cap:
        events = cap.to_numpy()
        cap.losses()
        for table in ("procs", "fds", "devices", "clock"):
            cap.meta(table)
        cap.clock_pairs()
        capture_info(cap, verify=True)
        list(cap.chunks(ordered=False))
        return events, cap


# -- truncation at every offset -----------------------------------------------------------------
@pytest.mark.parametrize("vector", ["002-several-chunks", "001-minimal"])
def test_truncation_at_every_offset(vector: str) -> None:
    data = (VECTORS / f"{vector}.aio").read_bytes()
    blks = blocks_of(data)
    head_end = blks[0].offset + blks[0].length
    ends = {b.offset + b.length for b in blks}
    full_ts = read_all(data)[0]["ts"].tolist()
    for cut in range(len(data) + 1):
        part = data[:cut]
        try:
            with deadline(5):
                events, cap = read_all(part)
        except CaptureError as exc:
            msg = str(exc)
            if cut < 8:
                assert isinstance(exc, NotACaptureError) and "bad magic" in msg
            elif cut < PREAMBLE_SIZE:
                assert isinstance(exc, DamagedCaptureError) and "preamble" in msg
            else:
                assert cut < head_end and isinstance(exc, DamagedCaptureError) and "header" in msg
            continue
        assert cut >= head_end, cut
        complete = [b for b in blks if b.offset + b.length <= cut]
        n = sum(_n(b) for b in complete if b.type == CHNK)
        assert events["ts"].tolist() == full_ts[:n], cut  # a prefix, in order
        assert cap.lost == sum(_lost(b) for b in complete if b.type == LOSS)
        assert cap.has_index == (cut == len(data))
        at_boundary = cut in ends or cut == head_end
        if at_boundary:
            assert cap.warnings == [], (cut, cap.warnings)
        else:
            (warning,) = cap.warnings
            assert "cut short" in warning or "stray bytes" in warning
            with pytest.raises(DamagedCaptureError):
                read_all(part, strict=True)


def _n(b: Block) -> int:
    return int(columns_mod.read_summary(b.payload)[0]["n"])


def _lost(b: Block) -> int:
    from aether_rec.format.blocks import unpack

    return int(unpack(b.payload, "loss")["count"])


# -- bad checksums ------------------------------------------------------------------------------------
def _flip(data: bytes, at: int) -> bytes:
    bad = bytearray(data)
    bad[at] ^= 0x10
    return bytes(bad)


@pytest.mark.parametrize("indexed", [True, False])
def test_bad_checksum_chunk_is_skipped_with_a_warning(indexed: bool) -> None:
    data = SEVERAL if indexed else SEVERAL[:-32]
    c2 = [b for b in blocks_of(SEVERAL) if b.type == CHNK][1]
    bad = _flip(data, c2.offset + 20)
    events, cap = read_all(bad)
    assert cap.has_index == indexed
    assert len(events["ts"]) == 6
    assert any("bad checksum in CHNK block" in w and str(c2.offset) in w for w in cap.warnings)
    with pytest.raises(DamagedCaptureError, match="bad checksum"):
        read_all(bad, strict=True)
    with aether_rec.open(io.BytesIO(bad)) as cap2:
        problems = cap2.verify()
    assert any(p.startswith(f"offset {c2.offset}:") and "bad checksum" in p for p in problems)


def test_bad_checksum_in_loss_and_meta_blocks() -> None:
    blks = blocks_of(SEVERAL)
    loss = next(b for b in blks if b.type == LOSS)
    procs = next(b for b in blks if b.type == META)
    bad = _flip(_flip(SEVERAL[:-32], loss.offset + 9), procs.offset + 9)
    events, cap = read_all(bad)
    assert len(events["ts"]) == 10 and cap.lost == 0 and cap.meta("procs") == []
    assert len([w for w in cap.warnings if "bad checksum" in w]) == 2
    assert [r["name"] for r in cap.meta("devices")] == ["vda", "nvme0n1"]


def test_bad_checksum_in_header_refuses_the_file() -> None:
    with pytest.raises(DamagedCaptureError, match="header block damaged"):
        read_all(_flip(SEVERAL, PREAMBLE_SIZE + 30))


def test_trailer_pointing_outside_the_file_is_damage() -> None:
    idx = next(b for b in blocks_of(SEVERAL) if b.type == INDX)
    for target in (len(SEVERAL) + 100, 3):
        bad = SEVERAL[:-32] + trailer(target)
        events, cap = read_all(bad)
        assert not cap.has_index and len(events["ts"]) == 10
        assert any("trailer points outside" in w for w in cap.warnings)
        with pytest.raises(DamagedCaptureError, match="trailer points outside"):
            read_all(bad, strict=True)
    # Pointing at a block that is not an index.
    meta = next(b for b in blocks_of(SEVERAL) if b.type == META)
    events, cap = read_all(SEVERAL[:-32] + trailer(meta.offset))
    assert len(events["ts"]) == 10 and any("does not point at an index" in w for w in cap.warnings)
    # The real index offset works, of course.
    events, cap = read_all(SEVERAL[:-32] + trailer(idx.offset))
    assert cap.has_index and cap.warnings == []


# -- CRC-valid garbage ----------------------------------------------------------------------------------
BASE_BLOCKS = blocks_of(SEVERAL)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    which=st.integers(0, len(BASE_BLOCKS) - 1),
    edits=st.lists(st.tuples(st.sampled_from(["set", "insert", "delete"]), st.integers(0, 10**6),
                             st.integers(0, 255)), min_size=1, max_size=6),
    keep_trailer=st.booleans(),
    strict=st.booleans(),
)
def test_crc_valid_mutations_raise_only_capture_errors(which: int, edits: list[tuple[str, int, int]],
                                                       keep_trailer: bool, strict: bool) -> None:
    blk = BASE_BLOCKS[which]
    p = bytearray(blk.payload)
    for op, at, value in edits:
        i = at % (len(p) + 1)
        if op == "set" and i < len(p):
            p[i] = value
        elif op == "insert":
            p[i:i] = bytes([value])
        elif p:
            del p[min(i, len(p) - 1)]
    data = SEVERAL[: blk.offset] + frame(blk.type, bytes(p)) + SEVERAL[blk.offset + blk.length :]
    if not keep_trailer:
        data = data[:-32]
    try:
        with deadline(5):
            read_all(data, strict=strict)
    except CaptureError:
        pass


# -- hostile chunks (valid CRC, malicious content) -----------------------------------------------------------
def capture_with_chunk(summary: dict[str, Any], directory: Any, data: bytes = b"",
                       codec: str = "none", body: bytes | None = None,
                       stored: bytes | None = None) -> bytes:
    """A capture (no index) whose one chunk has the given summary fields, directory and
    column data (or whole body, or stored body bytes)."""
    if body is None:
        d = pack(directory) if not isinstance(directory, bytes) else directory
        body = struct.pack("<I", len(d)) + d + data
    s = {"n": 0, "t0": 0, "t1": 0, "codec": codec, "raw": len(body)}
    s.update(summary)
    if stored is None:
        stored = zstandard.ZstdCompressor().compress(body) if codec == "zstd" else body
    sb = pack(s)
    payload = struct.pack("<I", len(sb)) + sb + stored
    return preamble() + frame(HEAD, pack({"format_version": "1.0"})) + frame(CHNK, payload)


def only_warning(data: bytes) -> str:
    with deadline(5):
        events, cap = read_all(data)
    assert len(events["ts"]) == 0
    assert len(set(cap.warnings)) == 1, cap.warnings  # (read_all reads each chunk more than once)
    with pytest.raises(DamagedCaptureError):
        read_all(data, strict=True)
    return cap.warnings[0]


def col(name: str, typ: str = "<u8", w: int = 0, size: int = 0, **kw: Any) -> dict[str, Any]:
    return {"name": name, "type": typ, "enc": "for", "base": 0, "w": w, "size": size, **kw}


def test_zero_width_columns_cannot_make_the_reader_allocate_gigabytes() -> None:
    n = MAX_CHUNK_EVENTS
    data = capture_with_chunk({"n": n}, [col(f"c{i}") for i in range(MAX_COLUMNS)])
    tracemalloc.start()
    try:
        msg = only_warning(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "limit" in msg and peak < 64 << 20


def test_chunk_within_the_decoded_limit_still_reads() -> None:
    data = capture_with_chunk({"n": 1000}, [col("ts"), col("extra", "<u1")])
    events, cap = read_all(data)
    assert cap.warnings == []
    assert events["ts"].tolist() == [0] * 1000 and events["extra"].tolist() == [0] * 1000


@pytest.mark.parametrize("summary,directory,data,expect", [
    ({"n": 2}, [col("ts"), col("ts")], b"", "appears twice"),
    ({"n": 2}, [col("pid", "<u8")], b"", "the schema says '<u4'"),
    ({"n": 2}, [col("ts", w=8, size=16)], b"", "runs past"),
    ({"n": 2}, [col("ts", w=3, size=6)], bytes(6), "bad encoding"),
    ({"n": 2}, [col("ts", "<u8", enc="zigzag")], b"", "bad encoding"),
    ({"n": 2}, [col("ts", w=1, size=1)], bytes(2), "wrong size"),
    ({"n": 2}, [{"name": "comm", "type": "str", "enc": "dict", "w": 1, "size": 2, "dict": ["a"]}],
     bytes([0, 1]), "outside its dictionary"),
    ({"n": 2}, [{"name": "comm", "type": "str", "enc": "dict", "w": 0, "size": 0, "dict": []}],
     b"", "outside its dictionary"),
    ({"n": 1}, [{"name": "comm", "type": "str", "enc": "dict", "w": 0, "size": 0,
                 "dict": ["x" * (MAX_STR_LEN + 1)]}], b"", "malformed"),
    ({"n": 1}, [{"name": "comm", "type": "str", "enc": "dict", "w": 0, "size": 0, "dict": [5]}],
     b"", "malformed"),
    ({"n": 1}, [col(f"c{i}") for i in range(MAX_COLUMNS + 1)], b"", "not a list of columns"),
    ({"n": 1}, {"not": "a list"}, b"", "not a list of columns"),
    ({"n": 1}, [["ts"]], b"", "entry is malformed"),
    ({"n": MAX_CHUNK_EVENTS + 1}, [], b"", "limit"),
    ({"raw": MAX_CHUNK_RAW + 1}, None, b"", "limit"),
    ({"n": -1}, [], b"", "missing or invalid"),
    ({"t0": "soon"}, [], b"", "missing or invalid"),
    ({"codec": "lz5"}, [], b"", "'lz5'"),
    ({"codec": 7}, [], b"", "codec is not a name"),
])
def test_malformed_chunk_is_skipped_with_a_reason(summary: dict[str, Any], directory: Any, data: bytes,
                                                 expect: str) -> None:
    if directory is None:  # the summary's raw size is what is wrong, not the body
        blob = capture_with_chunk(summary, b"", body=bytes(5))
    else:
        blob = capture_with_chunk(summary, directory, data)
    assert expect in only_warning(blob)


def test_decompression_is_bounded_by_the_declared_size() -> None:
    body = bytes(4) + bytes(10_000)
    # The frame's content size must equal the summary's raw size ...
    lying = capture_with_chunk({"raw": 100}, b"", codec="zstd", body=body)
    assert "disagrees" in only_warning(lying)
    # ... and a frame that does not declare its size is refused, not decompressed.
    unsized = zstandard.ZstdCompressor(write_content_size=False).compress(body)
    assert "disagrees" in only_warning(capture_with_chunk({}, b"", codec="zstd", body=body, stored=unsized))
    # Not a zstd frame at all.
    assert "not a zstd frame" in only_warning(capture_with_chunk({}, b"", codec="zstd", body=body,
                                                                 stored=b"XXXX" + bytes(20)))
    # A "none" body must be exactly the declared size.
    assert "wrong size" in only_warning(capture_with_chunk({"raw": 3}, b"", body=body))


def test_dictionary_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(columns_mod, "MAX_DICT_ENTRIES", 3)
    d = [{"name": "comm", "type": "str", "enc": "dict", "w": 1, "size": 1, "dict": list("abcd")}]
    assert "exceeds 3" in only_warning(capture_with_chunk({"n": 1}, d, bytes(1)))


def test_header_must_be_a_map_and_decodable() -> None:
    for payload in (pack([1, 2]), b"\xc1", pack({"a": "x"})[:-1]):
        with pytest.raises(DamagedCaptureError, match="header"):
            read_all(preamble() + frame(HEAD, payload))
    with pytest.raises(DamagedCaptureError, match="not a header"):
        read_all(preamble() + frame(LOSS, pack({})))
    with pytest.raises(DamagedCaptureError, match="no header"):
        read_all(preamble())


def test_index_that_lies_about_a_chunk_is_caught_when_reading_it() -> None:
    blks = blocks_of(SEVERAL)
    c1 = next(b for b in blks if b.type == CHNK)
    idx = {"chunks": [[c1.offset, c1.length, 99, 0, 0, 0, 0, 0, 0, 0, None, 0]], "losses": [], "meta": []}
    off = next(b for b in blks if b.type == INDX).offset
    data = SEVERAL[:off] + frame(INDX, pack(idx)) + trailer(off)
    events, cap = read_all(data)
    assert cap.has_index and cap.n_events == 99  # what the index claims ...
    assert len(events["ts"]) == 0  # ... but the chunk does not agree and is skipped
    assert any("disagrees with the index" in w for w in cap.warnings)


@pytest.mark.parametrize("rows", [
    [[-5, 10, 1, 0, 0, 0, 0, 0, 0, 0, None, 0]],  # before the first block
    [[10**9, 10, 1, 0, 0, 0, 0, 0, 0, 0, None, 0]],  # after the end
    [[2000, 10**6, 1, 0, 0, 0, 0, 0, 0, 0, None, 0]],  # runs into the index
    [["x"] * 12],
    [[1, 2]],
    "not a list",
])
def test_unusable_index_falls_back_to_scanning(rows: Any) -> None:
    off = next(b for b in blocks_of(SEVERAL) if b.type == INDX).offset
    data = SEVERAL[:off] + frame(INDX, pack({"chunks": rows, "losses": [], "meta": []})) + trailer(off)
    events, cap = read_all(data)
    assert not cap.has_index and len(events["ts"]) == 10
    assert any("index" in w for w in cap.warnings)
    with pytest.raises(DamagedCaptureError):
        read_all(data, strict=True)
