#!/usr/bin/env python3
"""Write the golden .aio test vectors and their descriptions (format/SPEC.md, section "Test vectors").

    python format/vectors/make_vectors.py [OUTDIR]     (default: this directory)

The output is deterministic: every header field that would vary (capture id, creation
time, host, kernel, clock) is fixed, the events are written out below rather than
drawn at random, and the codecs are deterministic for a given zstd library version
(ZSTD_VERSION below, the one the committed files were made with). tests/test_vectors.py
regenerates the vectors and checks that the committed files are byte-identical.

Ordinary vectors are written by the real writer (aether_rec.format.writer); damaged
ones are byte edits of those; the ones that stand for a future writer (new block type,
minor version 1.1, new columns) are assembled here from the public building blocks.
Each NNN-name.txt ends with machine-readable "expect.*" lines that the tests (and any
other implementation) check:

    expect.result    ok | refused
    expect.error     (refused) a substring of the error message
    expect.kind      (refused) not-a-capture | version | damaged
    expect.events    events a reader yields when it reads every chunk
    expect.index_events  events the index claims (only where it differs)
    expect.chunks    chunks a reader lists
    expect.indexed   yes | no (whether the index is used)
    expect.lost      events lost according to LOSS blocks
    expect.warning   a substring of a warning (one line per warning; "none": none)
    expect.strict    ok | refused (what a strict reader does)
    expect.ts        every ts in global order
"""

from __future__ import annotations

import io
import struct
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from aether_rec.format.blocks import (
    CHNK,
    HEAD,
    INDX,
    LOSS,
    META,
    PREAMBLE,
    PREAMBLE_SIZE,
    TRLR,
    Block,
    Damage,
    frame,
    pack,
    preamble,
    scan,
    trailer,
    unpack,
)
from aether_rec.format.chunk import ChunkInfo
from aether_rec.format.columns import U32, get_codec, read_summary
from aether_rec.format.records import Loss
from aether_rec.format.writer import CaptureWriter
from aether_rec.schema import FD_KIND_CODE, LAYER_CODE, OP_CODE

HERE = Path(__file__).resolve().parent
ZSTD_VERSION = (1, 5, 7)  # libzstd the committed vectors were compressed with

T0 = 1_000_000_000_000  # CLOCK_MONOTONIC ns at the clock pair below
REAL0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z
VDA = (254 << 20) | 0
NVME = (259 << 20) | 1
SYS, BLK, URING = LAYER_CODE["syscall"], LAYER_CODE["block"], LAYER_CODE["io_uring"]
SYNC, META_F, PREFLUSH, RAHEAD, DIRECT, QUEUED, ASYNC = 1, 2, 8, 16, 32, 128, 256


def fixed_header(name: str, **extra: Any) -> dict[str, Any]:
    """A header whose every field is fixed, so the bytes are reproducible."""
    h: dict[str, Any] = {
        "capture_id": "ae70000000000000000000000000" + name[:3].rjust(4, "0"),
        "created_ns": REAL0,
        "created": "2026-01-01T00:00:00Z",
        "tool": "aether-rec",
        "tool_version": "0.1.0",
        "hostname": "vectors.example",
        "kernel": "6.1.0-vectors",
        "arch": "x86_64",
        "ncpu": 2,
        "clock": [[T0, REAL0]],
        "synthetic": True,
        "generator": "format/vectors/make_vectors.py",
        "command": ["make_vectors.py", name],
        "layers": ["syscall", "block"],
        "hooks": [{"layer": "syscall", "hook": "tracepoint:raw_syscalls"},
                  {"layer": "block", "hook": "tracepoint:block:block_rq_complete"}],
    }
    h.update(extra)
    return h


# ts - T0, lat, pid, tid, comm, cpu, layer, op, fd, dev, offset, bytes, result, queue, flags, path
EVENTS: list[tuple[Any, ...]] = [
    (100_000, 41_230, 2201, 2201, "postgres", 0, SYS, "pread", 7, VDA, 8192, 8192, 8192, 0, 0,
     "/var/lib/postgresql/16/main/base/16384/2619"),
    (130_500, 12_004, 1830, 1831, "nginx", 1, SYS, "write", 12, VDA, 40960, 512, 512, 0, 0,
     "/var/log/nginx/access.log"),
    (131_000, 250_000, 311, 311, "jbd2/vda1-8", 1, BLK, "write", -1, VDA, 1_048_576, 4096, 4096,
     18_000, SYNC | META_F | QUEUED, "vda"),
    (150_000, 3_100_000, 2201, 2204, "postgres", 0, SYS, "fsync", 9, VDA, -1, 0, 0, 0, 0,
     "/var/lib/postgresql/16/main/pg_wal/000000010000000000000001"),
    (152_500, 980_000, 2201, 2204, "postgres", 0, BLK, "flush", -1, VDA, -1, 0, 0, 4_000,
     PREFLUSH | QUEUED, "vda"),
    (200_000, 88_000, 3377, 3380, "java", 1, SYS, "read", 33, NVME, -1, 65536, 65536, 0, 0,
     "/opt/app/data/segment-0001.log"),
    (201_000, 1_200_000, 3377, 3380, "java", 1, BLK, "read", -1, NVME, 7_340_032, 65536, 65536,
     30_000, RAHEAD | QUEUED, "nvme0n1"),
    (250_000, 9_000, 4410, 4410, "rsync", 0, SYS, "write", 4, NVME, -1, 131072, -28, 0, 0,
     "/backup/db.tar"),
    (300_000, 15_500, 2201, 2201, "postgres", 0, SYS, "pwrite", 7, VDA, 16384, 8192, 8192, 0, DIRECT,
     "/var/lib/postgresql/16/main/base/16384/2619"),
    (301_000, 410_000, 98, 98, "kworker/u4:2", 1, BLK, "write", -1, NVME, 9_437_184, 1_048_576,
     1_048_576, 120_000, QUEUED, "nvme0n1"),
]

PROCS = [
    {"pid": 2201, "ppid": 1, "comm": "postgres",
     "cmdline": "/usr/lib/postgresql/16/bin/postgres -D /var/lib/postgresql/16/main"},
    {"pid": 1830, "ppid": 1, "comm": "nginx", "cmdline": "nginx: master process /usr/sbin/nginx"},
    {"pid": 3377, "ppid": 1, "comm": "java", "cmdline": "java -jar /opt/app/app.jar"},
    {"pid": 4410, "ppid": 4400, "comm": "rsync", "cmdline": "rsync -a /srv/db /backup/"},
]
DEVICES = [{"dev": VDA, "name": "vda"}, {"dev": NVME, "name": "nvme0n1"}]
FDS = [  # flags: the event flag bits the open flags imply (O_DIRECT -> direct)
    {"pid": 2201, "fd": 7, "path": "/var/lib/postgresql/16/main/base/16384/2619", "flags": DIRECT},
    {"pid": 1830, "fd": 12, "path": "/var/log/nginx/access.log", "flags": 0},
]


def columns(rows: Iterable[tuple[Any, ...]], names: Iterable[str] | None = None) -> dict[str, Any]:
    """Column dict (the writer's input) from EVENTS-style rows."""
    rows = list(rows)
    cols: dict[str, Any] = {
        "ts": np.array([T0 + r[0] for r in rows], np.uint64),
        "lat": np.array([r[1] for r in rows], np.uint64),
        "pid": np.array([r[2] for r in rows], np.uint32),
        "tid": np.array([r[3] for r in rows], np.uint32),
        "comm": np.array([r[4] for r in rows], object),
        "cpu": np.array([r[5] for r in rows], np.uint16),
        "layer": np.array([r[6] for r in rows], np.uint8),
        "op": np.array([OP_CODE[r[7]] for r in rows], np.uint8),
        "fd": np.array([r[8] for r in rows], np.int32),
        "dev": np.array([r[9] for r in rows], np.uint32),
        "offset": np.array([r[10] for r in rows], np.int64),
        "bytes": np.array([r[11] for r in rows], np.uint64),
        "result": np.array([r[12] for r in rows], np.int64),
        "queue": np.array([r[13] for r in rows], np.uint64),
        "cgroup": np.full(len(rows), 4242, np.uint64),
        "flags": np.array([r[14] for r in rows], np.uint32),
        "path": np.array([r[15] for r in rows], object),
    }
    return cols if names is None else {k: cols[k] for k in names}


def write(build: Callable[[CaptureWriter], None], header: dict[str, Any], *, codec: str = "zstd",
          chunk_events: int = 4, close: bool = True, minor: int = 0) -> bytes:
    """Run ``build`` against the real writer, writing format 1.minor (the 1.0 vectors
    stay exactly as they were when 1.1 came); return the file's bytes."""
    out = io.BytesIO()
    # zstd level pinned: the golden bytes must not follow the writer's default
    w = CaptureWriter(out, header, codec=codec, level=3, chunk_events=chunk_events, minor=minor)
    build(w)
    if close:
        w.close()
    else:
        w.flush()
        w.abort()
    return out.getvalue()


def blocks_of(data: bytes) -> list[Block]:
    f = io.BytesIO(data)
    f.seek(PREAMBLE_SIZE)
    out = []
    for item in scan(f, PREAMBLE_SIZE, seekable=True):
        assert not isinstance(item, Damage), item.reason
        out.append(item)
    return out


def assemble(header: dict[str, Any], body: list[tuple[bytes, bytes]], *, minor: int = 0,
             index_extra: dict[str, Any] | None = None) -> bytes:
    """A file from (type, payload) blocks, with the index a writer of the given minor
    version would add. For ordinary input this is byte-identical to the real writer."""
    out = bytearray(preamble(minor))
    out += frame(HEAD, pack(header))
    chunks: list[list[Any]] = []
    losses: list[list[Any]] = []
    metas: list[list[Any]] = []
    events = 0
    for btype, payload in body:
        offset = len(out)
        block = frame(btype, payload)
        if btype == CHNK:
            summary, _ = read_summary(payload)
            chunks.append(ChunkInfo.from_summary(summary, offset, len(block)).to_row())
            events += summary["n"]
        elif btype == LOSS:
            d = unpack(payload, "loss")
            losses.append([offset, d["cpu"], d["count"], d["t0"], d["t1"], d["kind"]])
        elif btype == META:
            metas.append([offset, unpack(payload, "meta")["table"]])
        out += block
    index: dict[str, Any] = {"chunks": chunks, "losses": losses, "meta": metas, "events": events,
                             "stats": {}}
    index.update(index_extra or {})
    offset = len(out)
    out += frame(INDX, pack(index))
    out += trailer(offset)
    return bytes(out)


def header_and_body(data: bytes) -> tuple[dict[str, Any], list[tuple[bytes, bytes]]]:
    blocks = blocks_of(data)
    assert blocks[0].type == HEAD
    body = [(b.type, b.payload) for b in blocks[1:] if b.type not in (INDX, TRLR)]
    return unpack(blocks[0].payload, "header"), body


def offset_of(data: bytes, btype: bytes, nth: int = 0) -> Block:
    return [b for b in blocks_of(data) if b.type == btype][nth]


def edit_chunk(payload: bytes, summary_extra: dict[str, Any] | None = None,
               insert_column: tuple[int, dict[str, Any], bytes] | None = None) -> bytes:
    """Re-encode a CHNK payload with extra summary keys and/or an extra column inserted
    at a position of the directory (with its data at the matching place of the body)."""
    summary, at = read_summary(payload)
    codec = get_codec(summary["codec"], 3 if summary["codec"] == "zstd" else None)
    raw = codec.decompress(payload[at:], summary["raw"])
    (dlen,) = U32.unpack_from(raw)
    directory = unpack(raw[4 : 4 + dlen], "directory")
    data = raw[4 + dlen :]
    if insert_column is not None:
        pos, entry, col = insert_column
        cut = sum(e["size"] for e in directory[:pos])
        directory.insert(pos, dict(entry, size=len(col)))
        data = data[:cut] + col + data[cut:]
    dir_bytes = pack(directory)
    body = U32.pack(len(dir_bytes)) + dir_bytes + data
    summary["raw"] = len(body)
    summary.update(summary_extra or {})
    s = pack(summary)
    return U32.pack(len(s)) + s + codec.compress(body)


# -- the vectors ------------------------------------------------------------------------
def several(w: CaptureWriter) -> None:
    """The 10 EVENTS in three chunks, with metadata, a clock pair and a loss block."""
    w.write_meta("procs", PROCS)
    w.write_meta("devices", DEVICES)
    w.write_meta("fds", FDS)
    w.write_events(columns(EVENTS[0:4]))
    w.write_loss(Loss(1, 17, T0 + 132_000, T0 + 149_000, "perf_buffer"))
    w.write_events(columns(EVENTS[4:8]))
    w.write_meta("clock", [{"mono": T0 + 250_000, "real": REAL0 + 250_010}])
    w.write_events(columns(EVENTS[8:10]))


ALL_TS = " ".join(str(T0 + r[0]) for r in EVENTS)
MINIMAL_COLUMNS = ("ts", "lat", "pid", "comm", "layer", "op", "bytes")


def make() -> dict[str, tuple[bytes, str]]:
    v: dict[str, tuple[bytes, str]] = {}
    minimal = write(lambda w: w.write_events(columns(EVENTS[:3], MINIMAL_COLUMNS)),
                    fixed_header("001-minimal"), codec="none", chunk_events=4)
    v["001-minimal"] = (minimal, f"""\
The smallest useful capture: one uncompressed chunk (codec "none") of three events
holding only seven columns ({", ".join(MINIMAL_COLUMNS)}), an index and a trailer.
Columns the chunk lacks read as their schema defaults (tid 0, fd -1, offset -1,
path "", ...). This is the file annotated byte by byte in format/SPEC.md, "Worked example".

  ts             lat     pid   comm         layer    op     bytes
  1000000100000  41230   2201  postgres     syscall  pread  8192
  1000000130500  12004   1830  nginx        syscall  write  512
  1000000131000  250000  311   jbd2/vda1-8  block    write  4096

expect.result: ok
expect.events: 3
expect.chunks: 1
expect.indexed: yes
expect.lost: 0
expect.warning: none
expect.strict: ok
expect.ts: {T0 + 100_000} {T0 + 130_500} {T0 + 131_000}
""")

    full = write(several, fixed_header("002-several-chunks"))
    assert assemble(*header_and_body(full)) == full, "assemble() must match the writer"
    v["002-several-chunks"] = (full, f"""\
A complete capture as the recorder writes it: zstd-compressed chunks of all 17 columns,
chunk_events 4, so the 10 events are in three chunks (4, 4, 2). Block order: HEAD,
META procs, META devices, META fds, CHNK, LOSS (17 events lost on CPU 1), CHNK,
META clock (one extra clock pair), CHNK, INDX, TRLR.

expect.result: ok
expect.events: 10
expect.chunks: 3
expect.indexed: yes
expect.lost: 17
expect.warning: none
expect.strict: ok
expect.ts: {ALL_TS}
""")

    noindex = write(several, fixed_header("003-no-index"), close=False)
    v["003-no-index"] = (noindex, f"""\
The capture of 002 as left by a recorder that was killed after its last chunk: no INDX
and no TRLR. Readers find no trailer and read the file by scanning its blocks; nothing
is lost and this is not damage (no warning). `aether-rec info --verify` reports the
missing index; `aether-rec recover` adds one.

expect.result: ok
expect.events: 10
expect.chunks: 3
expect.indexed: no
expect.lost: 17
expect.warning: none
expect.strict: ok
expect.ts: {ALL_TS}
""")

    c2 = offset_of(noindex, CHNK, 1)
    cut = c2.offset + c2.length // 2
    v["004-truncated"] = (noindex[:cut], f"""\
The file of 003 cut in the middle of its second CHNK block (at byte {cut}, block at
offset {c2.offset}, {c2.length} bytes long), as a full disk or a copy of a file still
being written leaves it. Readers keep everything before the cut block: the first
chunk and the LOSS block; the cut block is dropped with a warning that says how much
was recovered. A strict reader refuses the file.

expect.result: ok
expect.events: 4
expect.chunks: 1
expect.indexed: no
expect.lost: 17
expect.warning: cut short
expect.strict: refused
expect.ts: {" ".join(str(T0 + r[0]) for r in EVENTS[:4])}
""")

    c2 = offset_of(full, CHNK, 1)
    bad = bytearray(full)
    flip = c2.offset + 8 + len(c2.payload) // 2
    bad[flip] ^= 0x01
    v["005-bad-checksum"] = (bytes(bad), f"""\
The file of 002 with one bit flipped (byte {flip}, inside the payload of the second
CHNK block at offset {c2.offset}), so that block's CRC-32 no longer matches. The
index is intact and still lists the chunk. Readers skip the damaged chunk with a
warning and read the other two; a strict reader refuses the file.

expect.result: ok
expect.events: 6
expect.index_events: 10
expect.chunks: 3
expect.indexed: yes
expect.lost: 17
expect.warning: bad checksum
expect.strict: refused
expect.ts: {" ".join(str(T0 + r[0]) for r in EVENTS[:4] + EVENTS[8:])}
""")

    def two_chunks(w: CaptureWriter) -> None:
        w.write_events(columns(EVENTS[0:3]))
        w.write_events(columns(EVENTS[3:6]))

    header, body = header_and_body(write(two_chunks, fixed_header("006-unknown-block"), chunk_events=3))
    xtra = b"XTRA: a block type from the future; readers skip it by its length."
    body.insert(1, (b"XTRA", xtra))
    v["006-unknown-block"] = (assemble(header, body), f"""\
Two chunks of three events with a block of an unknown type, "XTRA" ({len(xtra)} bytes
of payload, valid CRC), between them, as a later version might write. Readers skip
it by its length, whether they read through the index or by scanning, without a
warning. `aether-rec recover` does not copy it (and says so).

expect.result: ok
expect.events: 6
expect.chunks: 2
expect.indexed: yes
expect.lost: 0
expect.warning: none
expect.strict: ok
expect.ts: {" ".join(str(T0 + r[0]) for r in EVENTS[:6])}
""")

    header, body = header_and_body(
        write(lambda w: w.write_events(columns(EVENTS[:4])), fixed_header("007-minor-version"),
              chunk_events=4))
    header["format_version"] = "1.1"
    header["numa_nodes"] = [{"node": 0, "cpus": [0, 1]}]
    body = [(t, edit_chunk(p, summary_extra={"numa_mask": 1}) if t == CHNK else p) for t, p in body]
    v["007-minor-version"] = (assemble(header, body, minor=1, index_extra={"numa": {"nodes": 1}}), f"""\
A file from a future minor version, 1.1: the preamble says 1.1, and the writer added
things a 1.0 reader does not know: a header key ("numa_nodes"), a key in the chunk
summary ("numa_mask") and a key in the index map ("numa"). A minor version only adds
such compatible things, so readers of any 1.x version read it fully, ignoring the
unknown keys (no warning). The header keeps the extra key for whoever wants it.

expect.result: ok
expect.events: 4
expect.chunks: 1
expect.indexed: yes
expect.lost: 0
expect.warning: none
expect.strict: ok
expect.ts: {" ".join(str(T0 + r[0]) for r in EVENTS[:4])}
""")

    def unknown_cols(w: CaptureWriter) -> None:
        cols = columns(EVENTS[:5])
        cols["numa"] = np.array([0, 1, 1, 0, 1], np.uint16)  # an extra integer column
        w.write_events(cols)

    header, body = header_and_body(write(unknown_cols, fixed_header("008-unknown-columns"),
                                         chunk_events=5))
    weights = struct.pack("<5d", 0.5, 1.0, 1.5, 2.0, 2.5)
    entry = {"name": "weight", "type": "f8", "enc": "raw"}
    body = [(t, edit_chunk(p, insert_column=(2, entry, weights)) if t == CHNK else p) for t, p in body]
    header["columns"] = header["columns"] + [
        {"name": "numa", "type": "<u2", "unit": "", "doc": "NUMA node of the CPU"},
        {"name": "weight", "type": "f8", "unit": "", "doc": "sampling weight (a future type)"},
    ]
    v["008-unknown-columns"] = (assemble(header, body), f"""\
One chunk of five events with two columns a 1.0 reader does not know: "numa", an
integer column ("<u2", values 0 1 1 0 1, stored last, frame-of-reference coded like
any integer column), and "weight", a column of a type this version does not define
("f8", 40 bytes), stored third, between "lat" and "pid". Readers decode unknown
columns of known types (numa reads back as 0 1 1 0 1) and skip columns of unknown
types by their "size", so every column after "weight" still decodes correctly. No
warning.

expect.result: ok
expect.events: 5
expect.chunks: 1
expect.indexed: yes
expect.lost: 0
expect.warning: none
expect.strict: ok
expect.ts: {" ".join(str(T0 + r[0]) for r in EVENTS[:5])}
""")

    major2 = bytearray(minimal)
    PREAMBLE.pack_into(major2, 0, PREAMBLE.unpack_from(minimal)[0], 2, 0, 0)
    v["009-major-version"] = (bytes(major2), """\
The file of 001 with major version 2 in its preamble: a future, incompatible version.
Readers of version 1 must refuse it before reading anything else, with a message
that names both versions (the file's 2.0 and the reader's 1.x), not try to guess.

expect.result: refused
expect.kind: version
expect.error: 2.0
expect.error: newer than this reader (1.
expect.strict: refused
""")

    not_capture = b"ts,lat,pid\n1000000100000,41230,2201\n"
    v["010-not-a-capture"] = (not_capture, """\
A CSV file given where a capture was expected. Its first 8 bytes are not the .aio
magic, so readers refuse it with "not an .aio capture (bad magic)" (exit 1 from the
command line), without reading further.

expect.result: refused
expect.kind: not-a-capture
expect.error: not an .aio capture (bad magic)
expect.strict: refused
""")

    # Chunk 1 holds events that completed early; chunk 2 holds I/Os that *started*
    # earlier but completed (were reported) later: their time ranges overlap.
    late = [EVENTS[i] for i in (1, 3, 4)]
    early = [EVENTS[i] for i in (0, 2, 5, 6)]

    def overlap(w: CaptureWriter) -> None:
        w.write_events(columns(early))
        w.write_events(columns(late + EVENTS[7:9]))
        w.write_events(columns(EVENTS[9:]))

    v["011-overlapping-chunks"] = (write(overlap, fixed_header("011-overlapping-chunks"),
                                         chunk_events=4), f"""\
Three chunks whose time ranges overlap: chunk 1 holds events 1, 3, 6, 7 of 002 (ts
100000..201000 after T0) and chunk 2 holds events 2, 4, 5, 8 (130500..250000), as
when slow I/Os that started early are reported after faster ones that started later;
chunk 3 holds events 9 and 10. Each chunk is sorted by ts. A reader that yields
events in global time order must merge the chunks (SPEC.md, "Ordering") and yield all 10
events sorted; a reader in file order yields the same 10 events, unsorted.

expect.result: ok
expect.events: 10
expect.chunks: 3
expect.indexed: yes
expect.lost: 0
expect.warning: none
expect.strict: ok
expect.ts: {ALL_TS}
""")

    v["012-empty"] = (write(lambda w: None, fixed_header("012-empty")), """\
A capture with no events: preamble, HEAD, an INDX listing nothing and the TRLR, as a
recording stopped before any I/O happened leaves it. Valid; readers yield no events.

expect.result: ok
expect.events: 0
expect.chunks: 0
expect.indexed: yes
expect.lost: 0
expect.warning: none
expect.strict: ok
expect.ts:
""")

    c2 = offset_of(noindex, CHNK, 1)
    dl = bytearray(noindex)
    struct.pack_into("<I", dl, c2.offset + 4, 0x00FFFFFF)
    v["013-damaged-length"] = (bytes(dl), f"""\
The file of 003 (no index) with the length field of its second CHNK block (offset
{c2.offset}) damaged to 0x00FFFFFF, which points past the end of the file. That looks
like a truncated last block, but valid blocks follow: a reader must resynchronise
(search forward for the next block whose framing and CRC verify), skip the damaged
block with a warning, and read on: the first and third chunks, the LOSS block and the
clock META block are kept.

expect.result: ok
expect.events: 6
expect.chunks: 2
expect.indexed: no
expect.lost: 17
expect.warning: damaged length field
expect.strict: refused
expect.ts: {" ".join(str(T0 + r[0]) for r in EVENTS[:4] + EVENTS[8:])}
""")

    ix = offset_of(full, INDX)
    bi = bytearray(full)
    bi[ix.offset + 8] ^= 0x40
    v["014-bad-index"] = (bytes(bi), f"""\
The file of 002 with one bit flipped in its INDX block (byte {ix.offset + 8}, the first
payload byte of the index at offset {ix.offset}). The trailer is intact and points at
the index, whose CRC now fails. Readers warn that the index is unusable and read the
file by scanning instead, losing nothing; a strict reader refuses the file.

expect.result: ok
expect.events: 10
expect.chunks: 3
expect.indexed: no
expect.lost: 17
expect.warning: index unusable
expect.strict: refused
expect.ts: {ALL_TS}
""")

    def truth(w: CaptureWriter) -> None:
        """Version 1.1: the link, pages_missed and fdkind columns, the io_uring layer,
        libaio's io_submit, an io-wq punt, a flush owned by an fsync, recursion losses."""
        w.write_meta("procs", PROCS[:1])
        w.write_meta("devices", DEVICES[:1])
        rows = [  # the 16 EVENTS fields, then link (ts - T0, or None), pages_missed, fdkind
            (400_000, 52_000, 2201, 2201, "postgres", 0, SYS, "pread", 7, VDA, 8192, 8192, 8192, 0, 0,
             "/var/lib/postgresql/16/main/base/16384/2619", None, 2, "file"),
            (405_000, 30_000, 2201, 2201, "postgres", 0, BLK, "read", 7, VDA, 1_048_576, 8192, 8192,
             1_500, QUEUED, "/var/lib/postgresql/16/main/base/16384/2619", 400_000, 0, "file"),
            (410_000, 2_000, 2201, 2201, "postgres", 1, SYS, "read", 7, VDA, 0, 8192, 8192, 0, 0,
             "/var/lib/postgresql/16/main/base/16384/2619", None, 0, "file"),
            (420_000, 800_000, 2201, 2204, "postgres", 0, SYS, "fsync", 9, VDA, -1, 0, 0, 0, 0,
             "/var/lib/postgresql/16/main/pg_wal/000000010000000000000001", None, 0, "file"),
            (421_000, 700_000, 2201, 2204, "postgres", 1, BLK, "flush", 9, VDA, -1, 0, 0, 2_000,
             PREFLUSH | QUEUED, "/var/lib/postgresql/16/main/pg_wal/000000010000000000000001",
             420_000, 0, "file"),
            (500_000, 95_000, 5120, 5121, "fio", 1, URING, "write", 5, VDA, -1, 4096, 4096, 0, ASYNC,
             "/srv/fio/test.0.0", None, 0, "file"),
            (510_000, 4_000, 5130, 5130, "mysqld", 0, SYS, "io_submit", -1, VDA, -1, 0, 8, 0, 0,
             "", None, 0, "unknown"),
            (600_000, 1_000_000_000, 4410, 4410, "sh", 1, SYS, "read", 0, VDA, -1, 1, 1, 0, 0,
             "pipe", None, 0, "pipe"),
        ]
        cols = columns([r[:16] for r in rows])
        cols["link"] = np.array([0 if r[16] is None else T0 + r[16] for r in rows], np.uint64)
        cols["pages_missed"] = np.array([r[17] for r in rows], np.uint32)
        cols["fdkind"] = np.array([FD_KIND_CODE[r[18]] for r in rows], np.uint8)
        w.write_events(cols)
        w.write_loss(Loss(-1, 3, T0 + 400_000, T0 + 500_000, "recursion"))

    one_one = write(truth, fixed_header("015-version-1.1", layers=["syscall", "block", "io_uring"]),
                    chunk_events=16, minor=1)
    v["015-version-1.1"] = (one_one, f"""\
A capture of format version 1.1 (section 22): its header's column schema lists the three
columns 1.1 added, and its one chunk holds all 20 columns. A read that missed the page
cache for 2 pages (pages_missed 2) and the block request it caused (link = the read's
ts, same tid, path = the file's), a cached read (pages_missed 0), an fsync and the disk
flush it caused (op flush, linked to the fsync), an io_uring write punted to io-wq
(layer 4, flag async 0x100), a libaio io_submit of 8 iocbs (result 8, bytes 0), and a
pipe read (fdkind pipe) that waited 1 s. One LOSS block of kind "recursion" with cpu -1
(the kernel does not say on which CPU a program was skipped): 3 events lost. A 1.0
reader reads the same events and decodes the new columns as unknown extra columns.

expect.result: ok
expect.events: 8
expect.chunks: 1
expect.indexed: yes
expect.lost: 3
expect.warning: none
expect.strict: ok
expect.ts: {" ".join(str(T0 + t) for t in (400_000, 405_000, 410_000, 420_000, 421_000, 500_000, 510_000, 600_000))}
""")

    one_two = write(truth, fixed_header("016-version-1.2", layers=["syscall", "block", "io_uring"]),
                    chunk_events=4, minor=2)
    v["016-version-1.2"] = (one_two, f"""\
Vector 015's events written by a 1.2 writer (section 22), in 2 chunks of 4 events: each
index chunk entry has a 13th element, the chunk's latency histograms (section 9.1), and a
SUMM block (section 9.2) sits between the last LOSS block and INDX. Its summary says 2
chunks, 8 events, 3 lost (cpu -1, kind recursion, 1 block), and its histograms hold 8
groups (layer, op, fdkind): for example syscall read of fdkind file (the cached read,
2000 ns) and syscall read of fdkind pipe (1 s), one event each. A 1.1 reader reads the
same 8 events, ignores the 13th elements and skips SUMM as an unknown block type.

expect.result: ok
expect.events: 8
expect.chunks: 2
expect.indexed: yes
expect.lost: 3
expect.warning: none
expect.strict: ok
expect.ts: {" ".join(str(T0 + t) for t in (400_000, 405_000, 410_000, 420_000, 421_000, 500_000, 510_000, 600_000))}
""")
    return v


def main(argv: list[str]) -> int:
    outdir = Path(argv[1]) if len(argv) > 1 else HERE
    outdir.mkdir(parents=True, exist_ok=True)
    for name, (data, text) in make().items():
        (outdir / f"{name}.aio").write_bytes(data)
        (outdir / f"{name}.txt").write_text(f"{name}.aio ({len(data)} bytes)\n\n{text}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
