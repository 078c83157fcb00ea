"""Preamble, block framing, checksum, trailer and the scanner (SPEC.md sections 3, 4, 10, 14)."""

from __future__ import annotations

import binascii
import io
import struct
import zlib

import msgpack
import pytest

from aether_rec.errors import DamagedCaptureError, LimitError, NotACaptureError, VersionError
from aether_rec.format import blocks
from aether_rec.format.blocks import (
    CHNK,
    LOSS,
    MAGIC,
    META,
    TRAILER_SIZE,
    Block,
    Damage,
    check_preamble,
    frame,
    pack,
    parse_trailer,
    preamble,
    read_block,
    scan,
    trailer,
    unpack,
)
from aether_rec.format.limits import MAX_STR_LEN


# -- preamble ---------------------------------------------------------------------------
def test_preamble_bytes() -> None:
    assert preamble() == MAGIC + bytes.fromhex("0100 0200 00000000")  # 1.2
    assert preamble(0) == MAGIC + bytes.fromhex("0100 0000 00000000")
    assert preamble(3) == MAGIC + bytes.fromhex("0100 0300 00000000")
    assert len(preamble()) == 16


def test_check_preamble_accepts_any_minor_and_ignores_flags() -> None:
    assert check_preamble(preamble()) == (1, 2) and check_preamble(preamble(0)) == (1, 0)
    assert check_preamble(MAGIC + struct.pack("<HHI", 1, 9, 0xFFFFFFFF)) == (1, 9)


@pytest.mark.parametrize("data", [b"", b"\x89AI", b"PK\x03\x04" + bytes(12),
                                  b"\x89AIO\r\n\x1a\x0b" + bytes(8)])
def test_bad_magic(data: bytes) -> None:
    with pytest.raises(NotACaptureError, match=r"^not an \.aio capture \(bad magic\)$"):
        check_preamble(data)


def test_preamble_cut_after_magic() -> None:
    with pytest.raises(DamagedCaptureError, match="truncated inside its 16-byte preamble"):
        check_preamble(MAGIC + b"\x01\x00")


def test_newer_major_is_refused_naming_both_versions() -> None:
    with pytest.raises(VersionError) as ei:
        check_preamble(MAGIC + struct.pack("<HHI", 2, 3, 0))
    assert "2.3" in str(ei.value) and "(1.2)" in str(ei.value)


def test_major_zero_is_not_a_capture() -> None:
    with pytest.raises(NotACaptureError):
        check_preamble(MAGIC + struct.pack("<HHI", 0, 0, 0))


# -- framing and checksum -------------------------------------------------------------------
def test_crc_variant_is_iso_hdlc() -> None:
    # The CRC-32 check value of "123456789" identifies the variant (CRC-32/ISO-HDLC).
    assert zlib.crc32(b"123456789") == 0xCBF43926
    assert binascii.crc32(b"123456789") == 0xCBF43926


def test_frame_layout() -> None:
    payload = b"hello, block"
    blk = frame(b"TEST", payload)
    assert len(blk) == len(payload) + 16
    btype, length = struct.unpack_from("<4sI", blk)
    assert (btype, length) == (b"TEST", len(payload))
    assert blk[8 : 8 + length] == payload
    crc, total = struct.unpack_from("<II", blk, 8 + length)
    assert crc == zlib.crc32(b"TEST" + struct.pack("<I", len(payload)) + payload)
    assert total == len(blk)


def test_empty_payload_block() -> None:
    blk = frame(b"ZERO", b"")
    assert len(blk) == 16
    got = read_block(io.BytesIO(blk), 0)
    assert got == Block(0, b"ZERO", b"")


def test_frame_refuses_payload_over_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(blocks, "MAX_BLOCK_PAYLOAD", 10)
    frame(b"TEST", bytes(10))
    with pytest.raises(LimitError):
        frame(b"TEST", bytes(11))


def _read(data: bytes) -> Block:
    return read_block(io.BytesIO(data), 0)


def test_read_block_detects_each_kind_of_damage(monkeypatch: pytest.MonkeyPatch) -> None:
    good = frame(META, b"x" * 20)
    assert _read(good).payload == b"x" * 20
    with pytest.raises(EOFError):
        _read(b"")
    flipped = bytearray(good)
    flipped[10] ^= 1
    with pytest.raises(Damage) as ei:
        _read(bytes(flipped))
    assert "bad checksum in META block" in ei.value.reason and not ei.value.truncated
    bad_total = good[:-4] + struct.pack("<I", 99)
    with pytest.raises(Damage, match="length fields disagree"):
        _read(bad_total)
    with pytest.raises(Damage) as ei:
        _read(good[:-1])
    assert ei.value.truncated and "cut short" in ei.value.reason
    with pytest.raises(Damage) as ei:
        _read(good[:5])
    assert ei.value.truncated and "stray bytes" in ei.value.reason
    monkeypatch.setattr(blocks, "MAX_BLOCK_PAYLOAD", 19)
    with pytest.raises(Damage) as ei:
        _read(good)
    assert "exceeds limit" in ei.value.reason and not ei.value.truncated


def test_type_field_is_covered_by_checksum() -> None:
    blk = bytearray(frame(LOSS, b"abc"))
    blk[0:4] = b"LOSX"
    with pytest.raises(Damage, match="bad checksum"):
        _read(bytes(blk))


# -- trailer ------------------------------------------------------------------------------------
def test_trailer_layout_and_parse() -> None:
    t = trailer(0x1122334455)
    assert len(t) == TRAILER_SIZE == 32
    assert t[:8] == b"TRLR" + struct.pack("<I", 16)
    assert t[8:24] == struct.pack("<Q", 0x1122334455) + b"AIOINDEX"
    assert struct.unpack_from("<I", t, 28)[0] == 32
    assert parse_trailer(t) == 0x1122334455


def test_parse_trailer_rejects_lookalikes() -> None:
    t = trailer(1234)
    assert parse_trailer(t[1:]) is None
    bad = bytearray(t)
    bad[12] ^= 1  # inside the offset: checksum fails
    assert parse_trailer(bytes(bad)) is None
    wrong_magic = frame(b"TRLR", struct.pack("<Q8s", 1234, b"AIOINDEZ"))
    assert parse_trailer(wrong_magic) is None
    assert parse_trailer(frame(b"TRLX", struct.pack("<Q8s", 1234, b"AIOINDEX"))) is None


# -- scanning and resynchronisation ---------------------------------------------------------------
def _scan(data: bytes) -> list[Block | Damage]:
    return list(scan(io.BytesIO(data), 0, seekable=True))


def test_scan_resyncs_after_bad_checksum() -> None:
    a, b, c = frame(CHNK, b"A" * 30), frame(LOSS, b"B" * 30), frame(META, b"C" * 30)
    bad = bytearray(a + b + c)
    bad[len(a) + 12] ^= 0xFF
    items = _scan(bytes(bad))
    assert isinstance(items[0], Block) and items[0].payload == b"A" * 30
    assert isinstance(items[1], Damage) and items[1].offset == len(a) and not items[1].truncated
    assert isinstance(items[2], Block) and items[2].offset == len(a) + len(b)
    assert len(items) == 3


def test_scan_resyncs_after_length_field_pointing_past_the_end() -> None:
    a, b, c = frame(CHNK, b"A" * 30), frame(CHNK, b"B" * 30), frame(LOSS, b"C" * 30)
    bad = bytearray(a + b + c)
    struct.pack_into("<I", bad, len(a) + 4, 1_000_000)
    items = _scan(bytes(bad))
    assert [type(i).__name__ for i in items] == ["Block", "Damage", "Block"]
    dmg = items[1]
    assert isinstance(dmg, Damage) and not dmg.truncated and "damaged length field" in dmg.reason
    assert isinstance(items[2], Block) and items[2].payload == b"C" * 30


def test_scan_stops_at_a_truly_truncated_tail() -> None:
    a, b = frame(CHNK, b"A" * 30), frame(CHNK, b"B" * 30)
    items = _scan(a + b[:-7])
    assert len(items) == 2 and isinstance(items[1], Damage) and items[1].truncated


def test_scan_of_a_stream_stops_at_first_damage() -> None:
    a, b = frame(CHNK, b"A" * 30), frame(CHNK, b"B" * 30)
    bad = bytearray(a + b + a)
    bad[len(a) + 9] ^= 1
    items = list(scan(io.BytesIO(bytes(bad)), 0, seekable=False))
    assert [type(i).__name__ for i in items] == ["Block", "Damage"]


def test_scan_skips_unknown_block_types_by_length() -> None:
    items = _scan(frame(CHNK, b"1") + frame(b"ZZZZ", b"future" * 10) + frame(LOSS, b"2"))
    assert [i.type for i in items if isinstance(i, Block)] == [CHNK, b"ZZZZ", LOSS]


# -- msgpack documents --------------------------------------------------------------------------------
def test_pack_refuses_documents_readers_would_refuse() -> None:
    pack({"s": "x" * (MAX_STR_LEN * 4)})
    with pytest.raises(LimitError):
        pack({"s": "x" * (MAX_STR_LEN * 4 + 1)})
    with pytest.raises(LimitError):
        pack({str(i): i for i in range(5000)})


def test_pack_replaces_lone_surrogates() -> None:
    doc = unpack(pack({"path": "/srv/caf\udce9.txt", "k\ud800": ["\udcff"]}), "t")
    assert doc == {"path": "/srv/caf\ufffd.txt", "k\ufffd": ["\ufffd"]}


@pytest.mark.parametrize("raw", [
    b"\xc1",  # never-used byte
    msgpack.packb({"a": 1}) + b"\x00",  # trailing data
    msgpack.packb(msgpack.ExtType(1, b"xx")),  # ext types are refused
    b"\x91" * 5000 + b"\xc0",  # nesting deeper than the unpacker's stack
    b"\xdd\xff\xff\xff\xff",  # a 4-billion-element array header
    b"\xa3\xff\xfe\xfd",  # invalid UTF-8 string
])
def test_unpack_turns_bad_msgpack_into_damage(raw: bytes) -> None:
    with pytest.raises(DamagedCaptureError, match="undecodable metadata"):
        unpack(raw, "test document")


@pytest.mark.parametrize("v", [1.0, 0.0, float("inf"), True, False, "1", None, [1], 2**64, -(2**63) - 1])
def test_checked_int_refuses_everything_but_64_bit_integers(v: object) -> None:
    from aether_rec.errors import DamagedCaptureError
    from aether_rec.format.blocks import checked_int

    with pytest.raises(DamagedCaptureError, match="not an integer"):
        checked_int(v, "field")


@pytest.mark.parametrize("v", [0, 1, 2**64 - 1, -(2**63), 2**63])
def test_checked_int_keeps_every_64_bit_integer(v: int) -> None:
    from aether_rec.format.blocks import checked_int

    assert checked_int(v, "field") == v and type(checked_int(v, "field")) is int


def test_a_float_in_a_summary_or_index_entry_is_damage() -> None:
    from aether_rec.errors import DamagedCaptureError
    from aether_rec.format.chunk import ChunkInfo
    from aether_rec.format.records import Loss

    good = {"n": 1, "t0": 5, "t1": 6, "raw": 10}
    assert ChunkInfo.from_summary(good, 0, 0).t_first == 5
    for key in ("n", "t0", "t1", "raw", "lat_max", "pid_min"):
        with pytest.raises(DamagedCaptureError):
            ChunkInfo.from_summary({**good, key: 5.0}, 0, 0)
    with pytest.raises(DamagedCaptureError):
        ChunkInfo.from_row([0, 10, 1, 5.0, 6, 0, 0, 0, 0, 0, None])
    with pytest.raises(DamagedCaptureError):
        Loss.from_doc({"cpu": 0, "count": 1.5, "t0": 1, "t1": 2})
    with pytest.raises(DamagedCaptureError):
        Loss.from_row([0, 0, 1, 1.0, 2, "ringbuf"])
