"""Block framing: the file preamble and the type/length/payload/CRC/length blocks.

    preamble  magic(8) major(u16) minor(u16) flags(u32)
    block     type(4) length(u32) payload(length) crc32(u32) total(u32)

``crc32`` is CRC-32/ISO-HDLC (zlib.crc32) over type, length and payload; ``total`` is
``length + 16`` so a reader can walk backwards. All integers little-endian.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import msgpack

from aether_rec.errors import DamagedCaptureError, LimitError, NotACaptureError, VersionError
from aether_rec.format.limits import (
    MAX_BLOCK_PAYLOAD,
    MSGPACK_LIMITS,
    RESYNC_READ_FACTOR,
    msgpack_limits,
)

MAGIC = b"\x89AIO\r\n\x1a\n"
VERSION_MAJOR = 1
VERSION_MINOR = 2  # 1.1: the link, pages_missed and fdkind columns; 1.2: histograms, SUMM (SPEC 22)
PREAMBLE = struct.Struct("<8sHHI")
PREAMBLE_SIZE = PREAMBLE.size  # 16

HEAD = b"HEAD"
CHNK = b"CHNK"
LOSS = b"LOSS"
META = b"META"
INDX = b"INDX"
TRLR = b"TRLR"
SUMM = b"SUMM"  # since 1.2: the capture summary, just before INDX
KNOWN_TYPES = (HEAD, CHNK, LOSS, META, INDX, TRLR, SUMM)

BLOCK_HEAD = struct.Struct("<4sI")
BLOCK_TAIL = struct.Struct("<II")
BLOCK_OVERHEAD = BLOCK_HEAD.size + BLOCK_TAIL.size  # 16

TRAILER_MAGIC = b"AIOINDEX"
TRAILER_PAYLOAD = struct.Struct("<Q8s")
TRAILER_SIZE = BLOCK_OVERHEAD + TRAILER_PAYLOAD.size  # 32


def preamble(minor: int = VERSION_MINOR) -> bytes:
    return PREAMBLE.pack(MAGIC, VERSION_MAJOR, minor, 0)


def check_preamble(data: bytes) -> tuple[int, int]:
    """Validate the first 16 bytes; return (major, minor)."""
    if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
        raise NotACaptureError("not an .aio capture (bad magic)")
    if len(data) < PREAMBLE_SIZE:
        raise DamagedCaptureError("capture truncated inside its 16-byte preamble")
    _, major, minor, _flags = PREAMBLE.unpack(data[:PREAMBLE_SIZE])
    if major > VERSION_MAJOR:
        raise VersionError(
            f"capture format version {major}.{minor} is newer than this reader "
            f"({VERSION_MAJOR}.{VERSION_MINOR}); upgrade aether-rec to read it"
        )
    if major < 1:
        raise NotACaptureError(f"not an .aio capture (format major version {major})")
    return major, minor


def frame(btype: bytes, payload: bytes) -> bytes:
    """One complete block."""
    if len(payload) > MAX_BLOCK_PAYLOAD:
        raise LimitError(f"block payload of {len(payload)} bytes exceeds {MAX_BLOCK_PAYLOAD}")
    head = BLOCK_HEAD.pack(btype, len(payload))
    crc = zlib.crc32(payload, zlib.crc32(head))
    return head + payload + BLOCK_TAIL.pack(crc, len(payload) + BLOCK_OVERHEAD)


def trailer(index_offset: int) -> bytes:
    return frame(TRLR, TRAILER_PAYLOAD.pack(index_offset, TRAILER_MAGIC))


def parse_trailer(data: bytes) -> int | None:
    """Index offset from the file's last TRAILER_SIZE bytes, or None if they are no trailer."""
    if len(data) != TRAILER_SIZE:
        return None
    btype, length = BLOCK_HEAD.unpack_from(data)
    if btype != TRLR or length != TRAILER_PAYLOAD.size:
        return None
    payload = data[BLOCK_HEAD.size : BLOCK_HEAD.size + length]
    crc, total = BLOCK_TAIL.unpack_from(data, BLOCK_HEAD.size + length)
    if total != TRAILER_SIZE or crc != zlib.crc32(payload, zlib.crc32(data[: BLOCK_HEAD.size])):
        return None
    offset, magic = TRAILER_PAYLOAD.unpack(payload)
    return int(offset) if magic == TRAILER_MAGIC else None


def pack(obj: Any, what: str = "metadata") -> bytes:
    """msgpack ``obj``; refuse (LimitError) a document readers would refuse to decode."""
    try:
        data = bytes(msgpack.packb(obj, use_bin_type=True))
    except UnicodeEncodeError:
        # A str from os.readlink/os.fsdecode carries undecodable bytes as lone
        # surrogates, which UTF-8 cannot hold: store U+FFFD for them instead.
        data = bytes(msgpack.packb(_utf8_clean(obj), use_bin_type=True))
    try:
        msgpack.unpackb(data, raw=False, strict_map_key=False, **MSGPACK_LIMITS)
    except (ValueError, msgpack.UnpackException) as exc:
        raise LimitError(f"{what} exceeds the limits every reader enforces ({exc})") from None
    return data


def _utf8_clean(obj: Any) -> Any:
    if isinstance(obj, str):
        try:
            return obj.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        except UnicodeEncodeError:
            return "".join("\ufffd" if 0xD800 <= ord(c) < 0xE000 else c for c in obj)
    if isinstance(obj, dict):
        return {_utf8_clean(k): _utf8_clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_utf8_clean(v) for v in obj]
    return obj


def unpack(data: bytes, what: str) -> Any:
    """Decode a msgpack document from a capture, with limits; damage -> DamagedCaptureError."""
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False, **msgpack_limits(len(data)))
    except (ValueError, msgpack.UnpackException, TypeError) as exc:
        reason = str(exc) or ("nested too deeply" if isinstance(exc, msgpack.StackError)
                              else type(exc).__name__)
        raise DamagedCaptureError(f"{what}: undecodable metadata ({reason})") from None


def checked_int(v: Any, what: str) -> int:
    """An integer field read from a file: a msgpack int in the 64-bit range and nothing
    else (no float, string or bool), so that later arithmetic cannot fail."""
    if type(v) is not int or not -(1 << 63) <= v < (1 << 64):
        raise DamagedCaptureError(f"field {what!r} is not an integer")
    return v


@dataclass
class Block:
    offset: int  # of the block's first byte in the file
    type: bytes
    payload: bytes

    @property
    def length(self) -> int:
        return len(self.payload) + BLOCK_OVERHEAD


class Damage(Exception):
    """Internal: the scanner hit damage at ``offset`` (not raised to users)."""

    def __init__(self, offset: int, reason: str, truncated: bool) -> None:
        super().__init__(reason)
        self.offset = offset
        self.reason = reason
        self.truncated = truncated


def read_block(f: BinaryIO, offset: int) -> Block:
    """Read and verify one block at the current position of ``f`` (which is ``offset``).

    Returns the block, raises Damage on truncation, bad length or bad checksum, and
    EOFError at a clean end of file.
    """
    head = _read_exact(f, BLOCK_HEAD.size)
    if not head:
        raise EOFError
    if len(head) < BLOCK_HEAD.size:
        raise Damage(offset, f"{len(head)} stray bytes at the end", truncated=True)
    btype, length = BLOCK_HEAD.unpack(head)
    if length > MAX_BLOCK_PAYLOAD:
        raise Damage(offset, f"declared block length {length} exceeds limit", truncated=False)
    rest = _read_exact(f, length + BLOCK_TAIL.size)
    if len(rest) < length + BLOCK_TAIL.size:
        raise Damage(
            offset, f"last block cut short ({len(rest) + len(head)} of "
            f"{length + BLOCK_OVERHEAD} bytes)", truncated=True,
        )
    payload = rest[:length]
    crc, total = BLOCK_TAIL.unpack_from(rest, length)
    if total != length + BLOCK_OVERHEAD:
        raise Damage(offset, "block length fields disagree", truncated=False)
    if crc != zlib.crc32(payload, zlib.crc32(head)):
        raise Damage(offset, f"bad checksum in {_name(btype)} block", truncated=False)
    return Block(offset, btype, payload)


def scan(f: BinaryIO, offset: int, seekable: bool) -> Iterator[Block | Damage]:
    """Walk blocks from ``offset`` to the end, yielding blocks and damage reports.

    After damage (including an apparent truncation, which may be a damaged length
    field), a seekable file is searched forward for the next valid block
    (resynchronisation); a stream stops at the first damage. The search reads at most
    RESYNC_READ_FACTOR times the file's size in whole candidate blocks (plus one
    maximal block), so that a file full of false block starts cannot take quadratic time.
    """
    budget = [0]
    if seekable:
        here = f.tell()
        budget[0] = RESYNC_READ_FACTOR * f.seek(0, os.SEEK_END) + MAX_BLOCK_PAYLOAD
        f.seek(here)
    while True:
        try:
            block = read_block(f, offset)
        except EOFError:
            return
        except Damage as dmg:
            nxt = _resync(f, dmg.offset + 1, budget) if seekable else None
            if nxt is not None and nxt >= 0 and dmg.truncated:
                # Not the end of the file after all: a damaged length field.
                dmg = Damage(dmg.offset, "block length runs past the end of the file, yet "
                             "valid blocks follow (damaged length field)", truncated=False)
            yield dmg
            if nxt is None:
                return
            if nxt < 0:
                yield Damage(-nxt, "too much damage: stopped searching for further blocks",
                             truncated=True)
                return
            offset = nxt
            f.seek(offset)
            continue
        yield block
        offset += block.length


def _resync(f: BinaryIO, start: int, budget: list[int]) -> int | None:
    """Offset of the next block at or after ``start`` whose framing and checksum verify;
    None at the end of the file; minus the offset reached when ``budget`` (bytes that
    may still be read in whole candidate blocks) runs out."""
    window = 1 << 20
    pos = start
    while True:
        f.seek(pos)
        buf = f.read(window + BLOCK_HEAD.size)
        if len(buf) < BLOCK_OVERHEAD:
            return None
        candidates = sorted(i for t in KNOWN_TYPES for i in _find_all(buf, t) if i < window)
        for i in candidates:
            if i + BLOCK_HEAD.size > len(buf):
                break
            _, length = BLOCK_HEAD.unpack_from(buf, i)
            if length > MAX_BLOCK_PAYLOAD:
                continue
            # Cheap test first: the length repeated in the block's last field.
            tail_at = pos + i + BLOCK_HEAD.size + length + 4
            f.seek(tail_at)
            tail = f.read(4)
            if len(tail) < 4 or struct.unpack("<I", tail)[0] != length + BLOCK_OVERHEAD:
                continue
            budget[0] -= length + BLOCK_OVERHEAD
            if budget[0] < 0:
                return -(pos + i)
            f.seek(pos + i)
            try:
                read_block(f, pos + i)
                return pos + i
            except (Damage, EOFError):
                pass
        pos += window


def _find_all(buf: bytes, sub: bytes) -> Iterator[int]:
    i = buf.find(sub)
    while i >= 0:
        yield i
        i = buf.find(sub, i + 1)


def _read_exact(f: BinaryIO, n: int) -> bytes:
    data = f.read(n)
    if data is None:
        data = b""
    while len(data) < n:
        more = f.read(n - len(data))
        if not more:
            break
        data += more
    return data


def _name(btype: bytes) -> str:
    return btype.decode("ascii", "replace")
