"""Fuzzing of damaged and hostile captures, shared by tests/test_fuzz.py and
bench/fuzz_captures.py (a development tool: it lives with the tests, not in the installed
package, because it reads the checkout's vectors and fixtures).

A *case* is a capture made from a seed (a synthetic capture, a golden vector, a recorded
fixture) by one mutation: bit flips, byte overwrites, interesting numbers written into
length fields, inserted or deleted bytes, truncation, splicing two captures, dropping or
repeating blocks, and structure-aware mutations that re-frame the block with a valid
checksum (so that the decoders behind the checksum are reached): msgpack documents
(header, chunk summary, chunk directory, loss, metadata, index) with nodes replaced by
hostile values, chunk bodies recompressed after damage, trailers pointing anywhere.

Each case is run through what a stranger opening the file would run (``exercise``):
open, chunk_infos, chunks (ordered and not), losses, meta, verify, the ``info`` code
path (as text and JSON), strict open, ``recover`` and ``redact`` (whose outputs must
open again).
The outcome is one of

    ok        read completely, no warning (the mutation hit something unchecked, e.g.
              the preamble's flag bits, or the index only)
    partial   read with warnings or verify problems (the reader kept what it could)
    error     a clean ``CaptureError`` (or subclass)
    crash     any other exception: a bug
    wrong     read, but the answers disagree: a bug (see ``answers``)
    hang      the case took longer than its time budget: a bug

Cases run in a worker subprocess (``python tests/fuzzing.py worker``) watched by
``FuzzRunner``, which kills and restarts it when a case overruns its budget, so a hang
in C code is caught too; the worker's peak memory is read from VmHWM in
/proc/self/status (its own, fresh after exec: not ru_maxrss, which Linux carries across
fork and exec) and its address space is capped so that a bomb fails instead of
swapping. Everything is deterministic given (seed, case number).
"""

from __future__ import annotations

import glob
import io
import json
import math
import os
import random
import resource
import selectors
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np
import zstandard

from aether_rec.errors import CaptureError
from aether_rec.format.blocks import (
    BLOCK_HEAD,
    BLOCK_OVERHEAD,
    BLOCK_TAIL,
    CHNK,
    HEAD,
    INDX,
    LOSS,
    META,
    PREAMBLE_SIZE,
    TRLR,
    preamble,
)
from aether_rec.format.limits import MAX_BLOCK_PAYLOAD
from aether_rec.format.records import Loss

SCRIPT = os.path.abspath(__file__)  # run as the worker process
REPO = os.path.dirname(os.path.dirname(SCRIPT))
META_TABLES = ("procs", "fds", "devices", "clock", "cgroups")
MAX_SEED_BYTES = 4 << 20  # vectors and fixtures larger than this are left out of the corpus

INTERESTING_U32 = [
    0, 1, 2, 3, 4, 7, 8, 15, 16, 17, 31, 32, 0x7F, 0x80, 0xFF, 0x100, 0xFFFF, 0x10000,
    0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF, MAX_BLOCK_PAYLOAD, MAX_BLOCK_PAYLOAD + 1,
]
INTERESTING_BYTES = [0x00, 0x01, 0x7F, 0x80, 0xFF, 0xC0, 0xC1, 0xDC, 0xDD, 0xDE, 0xDF, 0x90, 0x80]


def _interesting_values() -> list[Any]:
    return [
        0, 1, -1, 2, 255, 256, 65535, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**63 - 1, 2**63,
        2**64 - 1, -(2**31), -(2**63), 4 * 1024 * 1024, 4 * 1024 * 1024 + 1, 256 * 1024 * 1024 + 1,
        0.5, -0.0, 1e308, -1e308, math.inf, -math.inf, math.nan,
        "", "x", "x" * 5000, "zstd", "none", "str", "<u8", "<i1", "delta", "for", "dict", "%s%n{0}",
        "../../etc/passwd", "\u202e\x00\x1b[2J", b"", b"\x00\xff" * 8, None, True, False,
        [], {}, [[[[]]]], {"a": {"b": {}}}, [0] * 40, list(range(300)), [None, -1, "x"],
        {"n": 1}, {1: 2}, [2**64 - 1] * 3,
    ]


INTERESTING_VALUES = _interesting_values()


# -- the corpus ----------------------------------------------------------------------
def synthetic_seeds() -> list[tuple[str, bytes]]:
    """Small synthetic captures covering every block kind and both codecs."""
    from aether_rec.format.chunk import Chunk
    from aether_rec.format.reader import Capture
    from aether_rec.format.synth import generate
    from aether_rec.format.writer import CaptureWriter

    seeds: list[tuple[str, bytes]] = []
    buf = io.BytesIO()
    generate(buf, 3000, seed=7, losses=3, batch=700, chunk_events=700)
    main = buf.getvalue()
    seeds.append(("synth-zstd", main))

    # The same events with the "none" codec, plus an extra int and an extra str column,
    # some clock rows and chunks that overlap in time (the ordered merge path).
    with Capture(io.BytesIO(main)) as cap:
        chunks = list(cap.chunks(ordered=False))
        header = {k: v for k, v in cap.header.items() if k not in ("codec", "columns")}
    buf = io.BytesIO()
    with CaptureWriter(buf, header, codec="none", chunk_events=700) as w:
        w.write_meta("clock", [{"mono": 10**12 + 5 * 10**8, "real": 1_767_225_600_500_000_000}])
        w.write_meta("fds", [{"pid": 2201, "fd": 3, "path": "/var/lib/postgres/data0.db"}])
        for i, c in enumerate(chunks):
            cols = dict(c.columns)
            cols["zz_extra"] = np.arange(c.n, dtype=np.uint16)
            dicts = dict(c.dicts)
            cols["zz_label"] = (np.arange(c.n) % 3).astype(np.uint32)
            dicts["zz_label"] = ["alpha", "beta", "gamma"]
            w.write_chunk(Chunk(c.n, cols, dicts))
            if i == 1:
                w.write_loss(Loss(1, 17, 10**12, 10**12 + 10**6, "ringbuf"))
        late = chunks[0].take(slice(0, 50))  # overlaps everything before it
        w.write_chunk(late)
    seeds.append(("synth-none", buf.getvalue()))

    # Unindexed: a recorder killed before close (cut just before the index).
    idx = main.rfind(INDX, 0, len(main) - 32)
    seeds.append(("synth-noindex", main[: idx if idx > 0 else len(main)]))

    for name, n in (("synth-one", 1), ("synth-empty", 0)):
        buf = io.BytesIO()
        generate(buf, n, seed=3)
        seeds.append((name, buf.getvalue()))
    return seeds


def file_seeds(dirs: Iterable[str] = ("format/vectors", "fixtures")) -> list[tuple[str, bytes]]:
    """Golden vectors and recorded fixtures (``*.aio`` under ``dirs``, relative to the repo)."""
    out = []
    for d in dirs:
        root = d if os.path.isabs(d) else os.path.join(REPO, d)
        for path in sorted(glob.glob(os.path.join(root, "**", "*.aio"), recursive=True)):
            try:
                size = os.path.getsize(path)
                if size > MAX_SEED_BYTES:
                    continue
                with open(path, "rb") as f:
                    data = f.read()
            except OSError:
                continue
            if data[:8] == preamble()[:8]:
                out.append((os.path.relpath(path, REPO), data))
    return out


def write_corpus(directory: str, seeds: list[tuple[str, bytes]]) -> None:
    os.makedirs(directory, exist_ok=True)
    names = []
    for i, (name, data) in enumerate(seeds):
        fn = f"{i:03d}.aio"
        with open(os.path.join(directory, fn), "wb") as f:
            f.write(data)
        names.append([fn, name])
    with open(os.path.join(directory, "corpus.json"), "w") as f:
        json.dump(names, f)


def read_corpus(directory: str) -> list[tuple[str, bytes]]:
    with open(os.path.join(directory, "corpus.json")) as f:
        names = json.load(f)
    out = []
    for fn, name in names:
        with open(os.path.join(directory, fn), "rb") as f:
            out.append((name, f.read()))
    return out


# -- block structure -------------------------------------------------------------------
@dataclass
class RawBlock:
    offset: int
    type: bytes
    payload: bytes

    @property
    def end(self) -> int:
        return self.offset + len(self.payload) + BLOCK_OVERHEAD


def blocks_of(data: bytes) -> list[RawBlock]:
    """The blocks of an undamaged capture, walked by their length fields."""
    out = []
    pos = PREAMBLE_SIZE
    while pos + BLOCK_OVERHEAD <= len(data):
        btype, length = BLOCK_HEAD.unpack_from(data, pos)
        end = pos + BLOCK_OVERHEAD + length
        if end > len(data):
            break
        out.append(RawBlock(pos, btype, data[pos + BLOCK_HEAD.size : pos + BLOCK_HEAD.size + length]))
        pos = end
    return out


def reframe(btype: bytes, payload: bytes) -> bytes:
    """A block with valid framing and checksum, whatever its size."""
    head = BLOCK_HEAD.pack(btype, len(payload) & 0xFFFFFFFF)
    crc = zlib.crc32(payload, zlib.crc32(head))
    return head + payload + BLOCK_TAIL.pack(crc, (len(payload) + BLOCK_OVERHEAD) & 0xFFFFFFFF)


def _replace_block(data: bytes, blk: RawBlock, new: bytes) -> bytes:
    return data[: blk.offset] + new + data[blk.end :]


# -- structure-aware mutation of msgpack documents -------------------------------------------
def _nodes(obj: Any, depth: int = 0) -> Iterator[tuple[Any, Any]]:
    """(container, key) for every node under ``obj`` (bounded)."""
    if depth > 6:
        return
    if isinstance(obj, dict):
        for k in list(obj)[:64]:
            yield obj, k
            yield from _nodes(obj[k], depth + 1)
    elif isinstance(obj, list):
        idx = list(range(len(obj)))
        for i in idx[:16] + idx[-4:]:
            yield obj, i
            yield from _nodes(obj[i], depth + 1)


def mutate_doc(doc: Any, rng: random.Random) -> Any:
    """A copy of a msgpack document with one node replaced, deleted, duplicated or retyped."""
    doc = msgpack.unpackb(msgpack.packb(doc, use_bin_type=True), raw=False, strict_map_key=False)
    nodes = list(_nodes(doc))
    if not nodes or rng.random() < 0.05:
        return rng.choice(INTERESTING_VALUES)
    top = [(c, k) for c, k in nodes if c is doc]
    cont, key = rng.choice(top if top and rng.random() < 0.5 else nodes)
    act = rng.random()
    if act < 0.6:
        cont[key] = rng.choice(INTERESTING_VALUES)
    elif act < 0.7:
        del cont[key]
    elif act < 0.8:
        v = cont[key]
        cont[key] = [v] * rng.choice([2, 3, 50]) if not isinstance(v, (dict, list)) else [v, v]
    elif act < 0.9 and isinstance(cont, dict):
        cont[rng.choice(INTERESTING_VALUES[:30])] = cont.pop(key)  # hostile key
    else:
        v = cont[key]
        if isinstance(v, int) and not isinstance(v, bool):
            cont[key] = v + rng.choice([-1, 1, -(2**32), 2**32, 10**9])
        elif isinstance(v, str):
            cont[key] = v + rng.choice(["\x00", "'", "{0}", "%s"]) * rng.randint(1, 4)
        else:
            cont[key] = str(v)
    return doc


def _pack(doc: Any) -> bytes:
    try:
        return bytes(msgpack.packb(doc, use_bin_type=True))
    except (TypeError, ValueError, OverflowError):
        return bytes(msgpack.packb(None))


def _flip(data: bytes, rng: random.Random, n: int) -> bytes:
    if not data:
        return data
    b = bytearray(data)
    for _ in range(n):
        i = rng.randrange(len(b))
        b[i] ^= 1 << rng.randrange(8)
    return bytes(b)


# -- mutations ------------------------------------------------------------------------
Mutation = Callable[[bytes, list[RawBlock], random.Random, bytes], bytes]


def m_bitflip(data: bytes, blocks: list[RawBlock], rng: random.Random, other: bytes) -> bytes:
    return _flip(data, rng, rng.choice([1, 1, 2, 4, 8, 32]))


def m_overwrite(data: bytes, blocks: list[RawBlock], rng: random.Random, other: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.choice([1, 2, 4, 16])):
        i = rng.randrange(len(b))
        k = rng.choice([1, 1, 2, 4, 8])
        val = bytes(rng.choice(INTERESTING_BYTES) for _ in range(k)) if rng.random() < 0.5 \
            else rng.randbytes(k)
        b[i : i + k] = val[: len(b) - i]
    return bytes(b)


def m_length(data: bytes, blocks: list[RawBlock], rng: random.Random, other: bytes) -> bytes:
    """An interesting or random number in a block's length or total field (CRC not fixed)."""
    if not blocks:
        return m_overwrite(data, blocks, rng, other)
    blk = rng.choice(blocks)
    val = rng.choice(INTERESTING_U32) if rng.random() < 0.7 else rng.getrandbits(32)
    where = blk.offset + 4 if rng.random() < 0.7 else blk.end - 4
    return data[:where] + struct.pack("<I", val) + data[where + 4 :]


def m_length_refit(data: bytes, blocks: list[RawBlock], rng: random.Random, other: bytes) -> bytes:
    """A block re-framed with a lying length (both length fields agree, CRC valid over
    what the length covers)."""
    if not blocks:
        return data
    blk = rng.choice(blocks)
    new_len = rng.choice([0, 1, len(blk.payload) - 1, len(blk.payload) + 1, len(blk.payload) * 2, 3])
    new_len = max(new_len, 0)
    start = blk.offset + BLOCK_HEAD.size
    payload = data[start : start + new_len].ljust(new_len, b"\x00")
    return data[: blk.offset] + reframe(blk.type, payload) + data[start + new_len + BLOCK_TAIL.size :]


def m_insert(data: bytes, blocks: list[RawBlock], rng: random.Random, other: bytes) -> bytes:
    i = rng.randrange(len(data) + 1)
    if rng.random() < 0.5:
        j = rng.randrange(len(data))
        ins = data[j : j + rng.choice([1, 4, 16, 100, 1000])]
    else:
        ins = rng.randbytes(rng.choice([1, 3, 4, 8, 17, 64]))
    return data[:i] + ins + data[i:]


def m_delete(data: bytes, blocks: list[RawBlock], rng: random.Random, other: bytes) -> bytes:
    i = rng.randrange(len(data))
    return data[:i] + data[i + rng.choice([1, 2, 4, 8, 16, 100, 1000]) :]


def m_truncate(data: bytes, blocks: list[RawBlock], rng: random.Random, other: bytes) -> bytes:
    if blocks and rng.random() < 0.5:
        blk = rng.choice(blocks)
        cut = rng.choice([blk.offset, blk.end, blk.offset + rng.randrange(1, blk.end - blk.offset)])
        return data[:cut]
    return data[: rng.randrange(len(data))]


def m_splice(data: bytes, blocks: list[RawBlock], rng: random.Random, other: bytes) -> bytes:
    """The front of one capture joined to the back of another (or of itself)."""
    ob = blocks_of(other)
    if blocks and ob and rng.random() < 0.6:
        a = rng.choice(blocks).offset if rng.random() < 0.8 else rng.randrange(len(data))
        b = rng.choice(ob).offset
        return data[:a] + other[b:]
    return data[: rng.randrange(len(data) + 1)] + other[rng.randrange(len(other)) :]


def m_blocks(data: bytes, blocks: list[RawBlock], rng: random.Random, other: bytes) -> bytes:
    """Whole blocks dropped, repeated, swapped or borrowed from another capture."""
    if len(blocks) < 2:
        return m_splice(data, blocks, rng, other)
    parts = [data[b.offset : b.end] for b in blocks]
    tail = data[blocks[-1].end :]
    act = rng.random()
    i = rng.randrange(len(parts))
    if act < 0.3:
        del parts[i]
    elif act < 0.55:
        parts.insert(rng.randrange(len(parts)), parts[i])
    elif act < 0.8:
        j = rng.randrange(len(parts))
        parts[i], parts[j] = parts[j], parts[i]
    else:
        ob = blocks_of(other)
        if ob:
            o = rng.choice(ob)
            parts.insert(rng.randrange(len(parts) + 1), other[o.offset : o.end])
    return data[:PREAMBLE_SIZE] + b"".join(parts) + tail


def m_doc(data: bytes, blocks: list[RawBlock], rng: random.Random, other: bytes) -> bytes:
    """A msgpack document (header, loss, meta, index) or a chunk summary mutated, re-framed."""
    cands = [b for b in blocks if b.type in (HEAD, LOSS, META, INDX, CHNK)]
    if not cands:
        return m_bitflip(data, blocks, rng, other)
    blk = rng.choice(cands)
    if blk.type == CHNK:
        return _replace_block(data, blk, reframe(CHNK, _mutate_chunk(blk.payload, rng, summary=True)))
    try:
        doc = msgpack.unpackb(blk.payload, raw=False, strict_map_key=False)
    except Exception:
        return data
    return _replace_block(data, blk, reframe(blk.type, _pack(mutate_doc(doc, rng))))


def m_chunk(data: bytes, blocks: list[RawBlock], rng: random.Random, other: bytes) -> bytes:
    """A chunk's body damaged behind a valid compression frame and a valid checksum."""
    cands = [b for b in blocks if b.type == CHNK]
    if not cands:
        return m_doc(data, blocks, rng, other)
    blk = rng.choice(cands)
    return _replace_block(data, blk, reframe(CHNK, _mutate_chunk(blk.payload, rng, summary=False)))


def m_payload_refit(data: bytes, blocks: list[RawBlock], rng: random.Random, other: bytes) -> bytes:
    """Payload bytes flipped or overwritten, then the checksum fixed."""
    if not blocks:
        return data
    blk = rng.choice(blocks)
    p = blk.payload
    if p and rng.random() < 0.5:
        p = _flip(p, rng, rng.choice([1, 2, 8]))
    elif p:
        i = rng.randrange(len(p))
        p = p[:i] + struct.pack("<I", rng.choice(INTERESTING_U32)) + p[i + 4 :]
    return _replace_block(data, blk, reframe(blk.type, p))


def m_trailer(data: bytes, blocks: list[RawBlock], rng: random.Random, other: bytes) -> bytes:
    """The trailer's index offset pointed somewhere else (valid trailer framing)."""
    cands = [b.offset for b in blocks] + [0, 1, 16, len(data), len(data) - 32, 2**63, 2**64 - 1]
    off = rng.choice(cands) + rng.choice([0, 0, 1, -1, 8])
    off %= 2**64
    tr = reframe(TRLR, struct.pack("<Q8s", off, b"AIOINDEX"))
    if blocks and blocks[-1].type == TRLR:
        return data[: blocks[-1].offset] + tr
    return data + tr


def _mutate_chunk(payload: bytes, rng: random.Random, summary: bool) -> bytes:
    if len(payload) < 4:
        return payload
    (slen,) = struct.unpack_from("<I", payload)
    try:
        summ = msgpack.unpackb(payload[4 : 4 + slen], raw=False, strict_map_key=False)
    except Exception:
        return _flip(payload, rng, 1)
    body = payload[4 + slen :]
    codec = summ.get("codec", "zstd") if isinstance(summ, dict) else "zstd"
    if summary:
        if isinstance(summ, dict) and rng.random() < 0.5:
            key = rng.choice(["n", "t0", "t1", "raw", "codec", "pids", "lat_max", "layers", "pid_min"])
            summ[key] = rng.choice(INTERESTING_VALUES)
        else:
            summ = mutate_doc(summ, rng)
        s = _pack(summ)
        return struct.pack("<I", len(s)) + s + body
    try:
        raw = zstandard.ZstdDecompressor().decompress(body) if codec == "zstd" else body
    except zstandard.ZstdError:
        return _flip(payload, rng, 1)
    if len(raw) < 4:
        return payload
    (dlen,) = struct.unpack_from("<I", raw)
    act = rng.random()
    if act < 0.5:
        try:
            directory = msgpack.unpackb(raw[4 : 4 + dlen], raw=False, strict_map_key=False)
            d = _pack(mutate_doc(directory, rng))
        except Exception:
            d = raw[4 : 4 + dlen]
        raw = struct.pack("<I", len(d)) + d + raw[4 + dlen :]
    elif act < 0.8:
        col = raw[4 + dlen :]
        raw = raw[: 4 + dlen] + (_flip(col, rng, rng.choice([1, 4, 64])) if col else b"\xff")
    elif act < 0.9:
        raw = struct.pack("<I", rng.choice(INTERESTING_U32)) + raw[4:]
    else:
        raw = raw[: rng.randrange(len(raw))]
    if isinstance(summ, dict) and rng.random() < 0.9:
        summ["raw"] = len(raw)
    new_body = raw
    if codec == "zstd":
        new_body = zstandard.ZstdCompressor(level=1, write_content_size=rng.random() < 0.95).compress(raw)
    s = _pack(summ)
    return struct.pack("<I", len(s)) + s + new_body


MUTATIONS: list[tuple[str, Mutation, float]] = [
    ("bitflip", m_bitflip, 1.5),
    ("overwrite", m_overwrite, 1.0),
    ("length", m_length, 1.0),
    ("length-refit", m_length_refit, 0.6),
    ("insert", m_insert, 0.7),
    ("delete", m_delete, 0.7),
    ("truncate", m_truncate, 1.0),
    ("splice", m_splice, 1.0),
    ("blocks", m_blocks, 0.8),
    ("doc", m_doc, 2.5),
    ("chunk", m_chunk, 2.0),
    ("payload-refit", m_payload_refit, 1.2),
    ("trailer", m_trailer, 0.5),
]


def make_case(seeds: list[tuple[str, bytes]], seed: int, case: int) -> tuple[str, bytes]:
    """Case number ``case`` of run ``seed``: (description, bytes). Deterministic."""
    rng = random.Random(f"aether-fuzz:{seed}:{case}")
    si = rng.randrange(len(seeds))
    name, data = seeds[si]
    other = seeds[rng.randrange(len(seeds))][1]
    desc = []
    for _ in range(1 if rng.random() < 0.8 else rng.randint(2, 3)):
        blocks = blocks_of(data)
        names = [m[0] for m in MUTATIONS]
        weights = [m[2] for m in MUTATIONS]
        k = rng.choices(range(len(MUTATIONS)), weights)[0]
        if len(data) == 0:
            data = preamble()
        data = MUTATIONS[k][1](data, blocks, rng, other)
        desc.append(names[k])
    return f"{name}:{'+'.join(desc)}", data


# -- running one case -------------------------------------------------------------------
@dataclass
class Outcome:
    kind: str  # ok / partial / error / crash / wrong / hang
    detail: str = ""


def exercise(path: str) -> Outcome:
    """Everything a stranger might run on the capture at ``path``."""
    from aether_rec.format.reader import Capture
    from aether_rec.ops.info import capture_info, format_info
    from aether_rec.ops.recover import recover
    from aether_rec.ops.stats_index import compute_from_index

    warned = False
    first: list[str] = []
    try:
        with Capture(path) as cap:
            infos = cap.chunk_infos()
            n = 0
            for chunk in cap.chunks():
                n += chunk.n
                chunk.strings("comm")
                chunk.column("lat").max(initial=0)
            for chunk in cap.chunks(ordered=False, columns=["ts", "lat", "comm"]):
                chunk.strings("comm")
            cap.losses()
            for table in META_TABLES:
                cap.meta(table)
            problems = cap.verify()
            d = capture_info(cap, verify=True)
            format_info(d)
            json.dumps(d, default=str)
            warned = bool(cap.warnings or problems or d["warnings"])
            first = (cap.warnings + problems)[:1]
            del infos
            wrong = answers(cap, n, d)
            if wrong:
                return Outcome("wrong", wrong[:600])
        with Capture(path, strict=True) as cap:
            cap.chunk_infos()
            cap.losses()
        # format 1.2: info from the SUMM block alone, stats from the index histograms
        with Capture(path, lazy_index=True) as cap:
            json.dumps(capture_info(cap), default=str)
            compute_from_index([cap])
        for fix in (recover, _redact):
            out = io.BytesIO()
            fix(path, out)
            with Capture(io.BytesIO(out.getvalue())) as cap:
                cap.chunk_infos()
                for _ in cap.chunks(ordered=False):
                    pass
    except CaptureError as exc:
        if not warned:
            return Outcome("error", str(exc)[:300])
        return Outcome("partial", str(exc)[:300])
    except MemoryError:
        return Outcome("crash", "MemoryError\n" + traceback.format_exc(limit=8))
    except Exception:
        return Outcome("crash", traceback.format_exc(limit=12))
    return Outcome("partial", first[0][:300]) if warned else Outcome("ok")


def answers(cap: Any, n: int, info: dict[str, Any]) -> str:
    """What a readable capture's tools must agree on ("" when they do): the events that
    the ordered read, ``info``, ``stats`` and ``replay`` count are the same, and writing
    the events read into a new capture and reading it back gives them back exactly."""
    from aether_rec.format.chunk import Chunk
    from aether_rec.format.writer import CaptureWriter
    from aether_rec.ops.replay import replay
    from aether_rec.ops.stats import StatsOptions, compute
    from aether_rec.ops.window import Selection

    counts = {"ordered read": n, "info": info["events"]}
    counts["unordered read"] = sum(c.n for c in cap.chunks(ordered=False))
    counts["stats"] = compute([cap], StatsOptions(top=0, all_fds=True))["events"]
    rows = io.StringIO()
    counts["replay"] = replay(cap, rows, Selection(), fmt="jsonl").events
    counts["replay lines"] = rows.getvalue().count("\n")
    if len(set(counts.values())) != 1:
        return f"tools disagree on the number of events: {counts}"
    if n > 200_000:
        return ""
    events = Chunk.concat(list(cap.chunks()))
    out = io.BytesIO()
    with CaptureWriter(out, {"clock": cap.header.get("clock") if isinstance(cap.header.get("clock"), list)
                             else None}, chunk_events=4096) as w:
        if events.n:
            w.write_events(events)
    from aether_rec.format.reader import Capture

    with Capture(io.BytesIO(out.getvalue()), strict=True) as again:
        back = Chunk.concat(list(again.chunks()))
    if back.n != events.n:
        return f"re-encoding {events.n} events gave {back.n}"
    # the same events; in the same order unless the source's summaries lie about time
    # ranges (then its ordered read is only as ordered as they allow; verify says so)
    def rows(c: Chunk) -> list[tuple[Any, ...]]:
        cols = [(c.strings(k) if c.is_str(k) else c.column(k)).tolist() for k in sorted(events.columns)]
        return list(zip(*cols))

    a, b = rows(events), rows(back)
    ts = events.column("ts") if "ts" in events.columns else None
    in_order = ts is None or bool(np.all(ts[:-1] <= ts[1:]))
    if (a != b) if in_order else (sorted(a, key=repr) != sorted(b, key=repr)):
        return "re-encoding changed the events"
    return ""


def _redact(path: str, out: io.BytesIO) -> None:
    from aether_rec.ops.redact import redact

    redact(path, out, b"fuzz-key-0123456789")


def vm_hwm_kb() -> int:
    """This process's peak resident memory (VmHWM), in kB."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def worker(corpus_dir: str, seed: int, as_limit: int) -> None:
    """Read case numbers on stdin, answer one JSON line per case on stdout."""
    if as_limit:
        resource.setrlimit(resource.RLIMIT_AS, (as_limit, as_limit))
    seeds = read_corpus(corpus_dir)
    tmp = tempfile.mkdtemp(prefix="aether-fuzz-")
    path = os.path.join(tmp, "case.aio")
    out = sys.stdout
    try:
        for line in sys.stdin:
            case = int(line)
            desc, data = make_case(seeds, seed, case)
            with open(path, "wb") as f:
                f.write(data)
            t = time.perf_counter()
            res = exercise(path)
            out.write(json.dumps({
                "case": case, "desc": desc, "kind": res.kind, "detail": res.detail,
                "secs": time.perf_counter() - t, "hwm_kb": vm_hwm_kb(),
            }) + "\n")
            out.flush()
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
        os.rmdir(tmp)


# -- the runner -------------------------------------------------------------------------
@dataclass
class FuzzReport:
    cases: int = 0
    counts: dict[str, int] = field(default_factory=lambda: {k: 0 for k in
                                                            ("ok", "partial", "error", "crash", "wrong",
                                                             "hang")})
    failures: list[dict[str, Any]] = field(default_factory=list)
    peak_kb: int = 0
    secs: float = 0.0
    slowest: tuple[float, str] = (0.0, "")

    def summary(self) -> str:
        c = self.counts
        return (
            f"{self.cases} cases in {self.secs:.1f} s: {c['error']} clean errors, "
            f"{c['partial']} partial reads with warnings, {c['ok']} read whole, "
            f"{c['crash']} crashes, {c['wrong']} wrong answers, {c['hang']} hangs; "
            f"peak memory {self.peak_kb / 1024:.0f} MB "
            f"(VmHWM of the worker); slowest case {self.slowest[0] * 1000:.0f} ms ({self.slowest[1]})"
        )


class FuzzRunner:
    """Runs cases in a worker subprocess with a per-case time budget."""

    def __init__(self, seeds: list[tuple[str, bytes]], seed: int = 0, budget: float = 10.0,
                 as_limit: int = 3 << 30) -> None:
        self.seed = seed
        self.budget = budget
        self.as_limit = as_limit
        self._dir = tempfile.mkdtemp(prefix="aether-fuzz-corpus-")
        write_corpus(self._dir, seeds)
        self._proc: subprocess.Popen[str] | None = None

    def _start(self) -> subprocess.Popen[str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
        return subprocess.Popen(
            [sys.executable, SCRIPT, "worker", self._dir, str(self.seed),
             str(self.as_limit)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True, bufsize=1, env=env,
        )

    def _stop(self) -> None:
        p = self._proc
        self._proc = None
        if p is None:
            return
        try:
            p.kill()
        except OSError:
            pass
        p.wait()

    def run(self, cases: Iterable[int], progress: Callable[[FuzzReport], None] | None = None) -> FuzzReport:
        rep = FuzzReport()
        t0 = time.perf_counter()
        sel = selectors.DefaultSelector()
        try:
            for case in cases:
                if self._proc is None:
                    self._proc = self._start()
                    sel = selectors.DefaultSelector()
                    assert self._proc.stdout is not None
                    sel.register(self._proc.stdout, selectors.EVENT_READ)
                proc = self._proc
                assert proc.stdin is not None and proc.stdout is not None
                res: dict[str, Any] | None = None
                try:
                    proc.stdin.write(f"{case}\n")
                    proc.stdin.flush()
                    # the first case of a worker also pays for its start (imports)
                    if sel.select(self.budget):
                        line = proc.stdout.readline()
                        res = json.loads(line) if line else None
                        if res is None:
                            res = {"case": case, "kind": "crash",
                                   "detail": f"worker died (exit {proc.wait()})"}
                            self._stop()
                    else:
                        res = {"case": case, "kind": "hang", "detail": f"over {self.budget} s"}
                        self._stop()
                except BrokenPipeError:
                    res = {"case": case, "kind": "crash", "detail": "worker died"}
                    self._stop()
                rep.cases += 1
                rep.counts[res["kind"]] += 1
                rep.peak_kb = max(rep.peak_kb, int(res.get("hwm_kb", 0)))
                if res.get("secs", 0) > rep.slowest[0]:
                    rep.slowest = (res["secs"], f"case {case} {res.get('desc', '')}")
                if res["kind"] in ("crash", "wrong", "hang"):
                    res.setdefault("desc", "")
                    rep.failures.append(res)
                if progress is not None:
                    progress(rep)
        finally:
            self._stop()
            rep.secs = time.perf_counter() - t0
        return rep

    def close(self) -> None:
        self._stop()
        for fn in os.listdir(self._dir):
            os.unlink(os.path.join(self._dir, fn))
        os.rmdir(self._dir)

    def __enter__(self) -> FuzzRunner:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# -- bombs: hostile files crafted against each limit ----------------------------------------
def _capture_with(blocks: list[bytes], header: dict[str, Any] | None = None) -> bytes:
    hdr = {"codec": "zstd", "format_version": "1.0", "tool": "aether-rec"}
    hdr.update(header or {})
    return preamble() + reframe(HEAD, msgpack.packb(hdr)) + b"".join(blocks)


def _chunk_block(summary: dict[str, Any], body: bytes) -> bytes:
    s = msgpack.packb(summary)
    return reframe(CHNK, struct.pack("<I", len(s)) + s + body)


def zstd_rle_frame(total: int, declared: int | None) -> bytes:
    """A zstd frame of RLE blocks that expands to ``total`` bytes while its header
    declares ``declared`` (None: no content size), made by hand in a few hundred kB."""
    if declared is None:
        out = struct.pack("<IBB", 0xFD2FB528, 0x00, 0x58)  # no FCS, window 8 MB
    else:
        out = struct.pack("<IBBQ", 0xFD2FB528, 0xC0, 0x58, declared)  # 8-byte FCS
    block = 1 << 17
    n_full, rest = divmod(total, block)
    sizes = [block] * n_full + ([rest] if rest else [])
    parts = []
    for i, size in enumerate(sizes):
        last = 1 if i == len(sizes) - 1 else 0
        parts.append(struct.pack("<I", (size << 3) | (1 << 1) | last)[:3] + b"\x00")
    return out + b"".join(parts)


def _body(directory: list[dict[str, Any]], data: bytes = b"") -> bytes:
    d = msgpack.packb(directory)
    return struct.pack("<I", len(d)) + d + data


def _summ(n: int, raw: int, **kw: Any) -> dict[str, Any]:
    s = {"n": n, "t0": 0, "t1": 10**9, "raw": raw, "codec": "zstd", "lat_max": 0, "layers": 2,
         "ops": 2, "pid_min": 1, "pid_max": 1, "pids": [1]}
    s.update(kw)
    return s


def bombs(heavy: bool = False) -> Iterator[tuple[str, bytes, int]]:
    """(name, capture bytes, memory budget in MB) for each crafted bomb; ``heavy`` adds
    those that take seconds and up to a GB (within the limits) to run."""
    gb10 = 10 << 30
    zc = zstandard.ZstdCompressor(level=3, write_content_size=True)
    out: list[tuple[str, bytes, int]] = []

    out.append(("zstd frame declaring 10 GB", _capture_with(
        [_chunk_block(_summ(1000, gb10), zstd_rle_frame(1 << 20, gb10))]), 300))
    out.append(("zstd frame expanding to 10 GB, declaring 1 MB", _capture_with(
        [_chunk_block(_summ(1000, 1 << 20), zstd_rle_frame(gb10, 1 << 20))]), 300))
    out.append(("zstd frame expanding to 10 GB, no declared size", _capture_with(
        [_chunk_block(_summ(1000, 1 << 20), zstd_rle_frame(gb10, None))]), 300))

    body = _body([{"name": "ts", "type": "<u8", "enc": "delta", "first": 0, "base": 1, "w": 0, "size": 0}])
    out.append(("chunk declaring 2**32 events", _capture_with(
        [_chunk_block(_summ(1 << 32, len(body)), zc.compress(body))]), 300))

    # 10**7 empty strings: 10 MB of msgpack, a few kB compressed.
    d = b"\x93" + b"\xa4comm" + b"\xa3str" + b"\xdd" + struct.pack(">I", 10**7) + b"\xa0" * 10**7
    entry = msgpack.packb({"name": "comm", "type": "str", "enc": "dict", "w": 0, "size": 0})
    # the directory: a list of one map whose "dict" key is the huge array
    huge = b"\x91" + bytes([entry[0] + 1]) + entry[1:] + b"\xa4dict" + d[1 + 5 + 4 :]
    body = struct.pack("<I", len(huge)) + huge
    out.append(("dictionary of 10**7 strings", _capture_with(
        [_chunk_block(_summ(10, len(body)), zc.compress(body))]), 300))

    cols = [{"name": f"x{i}", "type": "<u8", "enc": "for", "base": 7, "w": 0, "size": 0}
            for i in range(256)]
    body = _body(cols)
    out.append(("chunk of 4M events in 256 zero-width columns (8 GB decoded)", _capture_with(
        [_chunk_block(_summ(4 * 1024 * 1024, len(body)), zc.compress(body))]), 300))

    out.append(("block declaring 4 GB", _capture_with(
        [BLOCK_HEAD.pack(CHNK, 0xFFFFFFFF) + b"\x00" * 1000])
        + reframe(LOSS, msgpack.packb({"cpu": 0, "count": 1, "t0": 0, "t1": 0})), 300))
    out.append(("header block declaring 4 GB",
                preamble() + BLOCK_HEAD.pack(HEAD, 0xFFFFFFFF) + b"\x00" * 1000, 300))

    out.append(("msgpack array header of 2**32-1 items (header)",
                preamble() + reframe(HEAD, b"\xdd\xff\xff\xff\xff" + b"\xc0" * 100), 300))
    out.append(("msgpack array header of 2**32-1 items (index)", _capture_with(
        [reframe(INDX, b"\x81\xa6chunks\xdd\xff\xff\xff\xff")]), 300))
    out.append(("msgpack nested 100000 deep (header)",
                preamble() + reframe(HEAD, b"\x91" * 100000 + b"\xc0"), 300))
    out.append(("msgpack nested 100000 deep (meta)", _capture_with(
        [reframe(META, b"\x82\xa5table\xa5procs\xa4rows" + b"\x91" * 100000 + b"\xc0")]), 300))
    out.append(("msgpack 1000 nested arrays each declaring 10**6 items",
                preamble() + reframe(HEAD, b"\xdd\x00\x0f\x42\x40" * 1000), 300))

    # Chunks that all overlap in time: ordered reading holds events back to sort them,
    # up to MAX_MERGE_BYTES, then gives up exact order (with a warning).
    n = 4 * 1024 * 1024
    body = _body([{"name": "ts", "type": "<u8", "enc": "delta", "first": 0, "base": 200, "w": 0,
                   "size": 0}])
    blk = _chunk_block(_summ(n, len(body), t1=200 * (n - 1)), zc.compress(body))

    # Resynchronisation storm: 4 MB of block starts whose length fields agree but
    # whose checksums do not, each pointing far ahead.
    n = 4 << 20
    storm = bytearray(n)
    step = 12
    for pos in range(0, n - 64, step):
        length = n - pos - 32 - ((pos // step) % 7) * step
        storm[pos : pos + 8] = BLOCK_HEAD.pack(CHNK, length)
    out.append(("resynchronisation storm (4 MB of false block starts)",
                _capture_with([bytes(storm)]), 300))
    if heavy:  # last: VmHWM is the process's peak so far
        out.append(("12 chunks of 4M events overlapping in time", _capture_with([blk] * 12), 1200))
    return iter(out)


def run_bombs(heavy: bool = False) -> None:
    """Run every bomb here, one JSON line each (run in a fresh process: VmHWM is ours)."""
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
    tmp = tempfile.mkdtemp(prefix="aether-bombs-")
    path = os.path.join(tmp, "bomb.aio")
    try:
        for name, data, budget in bombs(heavy):
            with open(path, "wb") as f:
                f.write(data)
            del data
            t = time.perf_counter()
            res = exercise(path)
            print(json.dumps({"name": name, "kind": res.kind, "detail": res.detail,
                              "secs": time.perf_counter() - t, "hwm_kb": vm_hwm_kb(),
                              "budget_mb": budget}), flush=True)
    finally:
        os.unlink(path)
        os.rmdir(tmp)


def default_seeds() -> list[tuple[str, bytes]]:
    return synthetic_seeds() + file_seeds()


def dump_case(seed: int, case: int, path: str) -> str:
    """Write case ``case`` of run ``seed`` to ``path`` (to reproduce a failure)."""
    desc, data = make_case(default_seeds(), seed, case)
    with open(path, "wb") as f:
        f.write(data)
    return desc


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "worker":
        worker(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif sys.argv[1:2] == ["bombs"]:
        run_bombs(heavy=sys.argv[2:] == ["--heavy"])
    else:
        sys.exit("usage: python tests/fuzzing.py worker CORPUS_DIR SEED AS_LIMIT "
                 "(see bench/fuzz_captures.py)")
