"""The streaming writer: safe file creation, non-seekable outputs, chunk cutting, abort
(SPEC.md section 15)."""

from __future__ import annotations

import io
import os
import stat
import threading
from pathlib import Path

import numpy as np
import pytest

import aether_rec
from aether_rec.errors import CaptureError
from aether_rec.format.blocks import CHNK, INDX, PREAMBLE_SIZE, TRLR, Block, scan
from aether_rec.format.records import Loss
from aether_rec.format.writer import CaptureWriter, WriteError


def batch(n: int, start: int = 0) -> dict[str, np.ndarray]:
    ts = np.arange(start, start + n, dtype=np.uint64) * 10
    return {"ts": ts, "lat": ts + 1, "comm": np.array(["w"] * n, object)}


def block_types(data: bytes) -> list[bytes]:
    f = io.BytesIO(data)
    f.seek(PREAMBLE_SIZE)
    return [b.type for b in scan(f, PREAMBLE_SIZE, True) if isinstance(b, Block)]


# -- creating the output file -----------------------------------------------------------------------
def test_output_file_is_created_0600_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        p = tmp_path / "a.aio"
        with CaptureWriter(p) as w:
            w.write_events(batch(3))
    finally:
        os.umask(old)
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    with aether_rec.open(p) as cap:
        assert cap.n_events == 3


def test_existing_output_is_refused_unless_overwrite(tmp_path: Path) -> None:
    p = tmp_path / "a.aio"
    p.write_bytes(b"precious")
    with pytest.raises(WriteError, match="already exists"):
        CaptureWriter(p)
    assert p.read_bytes() == b"precious"
    with CaptureWriter(p, overwrite=True) as w:
        w.write_events(batch(2))
    with aether_rec.open(p) as cap:
        assert cap.n_events == 2


@pytest.mark.parametrize("overwrite", [False, True])
@pytest.mark.parametrize("dangling", [False, True])
def test_symlinked_output_is_refused(tmp_path: Path, overwrite: bool, dangling: bool) -> None:
    target = tmp_path / "target"
    if not dangling:
        target.write_bytes(b"precious")
    link = tmp_path / "link.aio"
    link.symlink_to(target)
    with pytest.raises(WriteError, match="symbolic link" if overwrite else "symbolic link|already exists"):
        CaptureWriter(link, overwrite=overwrite)
    if dangling:
        assert not target.exists()
    else:
        assert target.read_bytes() == b"precious"
    assert link.is_symlink()


def test_uncreatable_output(tmp_path: Path) -> None:
    with pytest.raises(WriteError, match="cannot create"):
        CaptureWriter(tmp_path / "no" / "such" / "dir.aio")


# -- non-seekable outputs ------------------------------------------------------------------------------
def test_writer_on_a_pipe_reads_back() -> None:
    r, w = os.pipe()
    received: list[bytes] = []

    def drain() -> None:
        with os.fdopen(r, "rb") as f:
            received.append(f.read())

    t = threading.Thread(target=drain)
    t.start()
    with os.fdopen(w, "wb", buffering=0) as out:
        assert not out.seekable()
        with CaptureWriter(out, chunk_events=4) as cw:
            for i in range(5):
                cw.write_events(batch(3, 3 * i))
            cw.write_loss(Loss(0, 5, 1, 2, "perf_buffer"))
            cw.write_meta("procs", [{"pid": 1, "comm": "init"}])
    t.join(10)
    data = received[0]
    assert block_types(data)[-2:] == [INDX, TRLR]
    with aether_rec.open(io.BytesIO(data), strict=True) as cap:
        assert cap.has_index and cap.n_events == 15 and cap.lost == 5
        assert cap.to_numpy(["ts"])["ts"].tolist() == [10 * i for i in range(15)]
        assert cap.meta("procs") == [{"pid": 1, "comm": "init"}]


def test_reader_gone_is_a_write_error() -> None:
    r, w = os.pipe()
    os.close(r)
    with os.fdopen(w, "wb", buffering=0) as out:
        with pytest.raises(WriteError, match="broken pipe"):
            CaptureWriter(out)


# -- cutting chunks --------------------------------------------------------------------------------------
def test_chunks_are_cut_by_event_count() -> None:
    out = io.BytesIO()
    with CaptureWriter(out, chunk_events=4) as w:
        w.write_events(batch(3))
        assert block_types(out.getvalue()) == [b"HEAD"]  # pending, nothing written yet
        w.write_events(batch(6, 3))
        assert block_types(out.getvalue()).count(CHNK) == 2  # 9 pending -> 4 + 4, 1 left
    with aether_rec.open(io.BytesIO(out.getvalue())) as cap:
        assert [c.n for c in cap.chunk_infos()] == [4, 4, 1]


def test_chunks_are_cut_by_bytes() -> None:
    out = io.BytesIO()
    with CaptureWriter(out, chunk_events=1000, chunk_bytes=100) as w:
        w.write_events(batch(3))  # 3 * (8 + 8 + 4) = 60 bytes: pending
        assert block_types(out.getvalue()).count(CHNK) == 0
        w.write_events(batch(3, 3))  # 120 bytes: cut
        assert block_types(out.getvalue()).count(CHNK) == 1


def test_chunks_are_cut_by_age() -> None:
    out = io.BytesIO()
    w = CaptureWriter(out, chunk_age=3600)
    w.write_events(batch(2))
    w.maybe_flush()
    assert block_types(out.getvalue()).count(CHNK) == 0
    w.chunk_age = 0.0
    w.maybe_flush()
    assert block_types(out.getvalue()).count(CHNK) == 1
    w.close()


def test_each_chunk_is_sorted_and_batches_may_arrive_out_of_order() -> None:
    out = io.BytesIO()
    with CaptureWriter(out, chunk_events=3) as w:
        w.write_events({"ts": np.array([30, 10, 20, 5, 1, 2], np.uint64)})
    with aether_rec.open(io.BytesIO(out.getvalue())) as cap:
        raw = [c.column("ts").tolist() for c in cap.chunks(ordered=False)]
        assert raw == [[10, 20, 30], [1, 2, 5]]
        assert cap.to_numpy(["ts"])["ts"].tolist() == [1, 2, 5, 10, 20, 30]


def test_abort_and_exceptions_leave_a_readable_file_without_index(tmp_path: Path) -> None:
    p = tmp_path / "a.aio"
    with pytest.raises(RuntimeError):
        with CaptureWriter(p, chunk_events=2) as w:
            w.write_events(batch(5))
            raise RuntimeError("recorder died")
    with aether_rec.open(p, strict=True) as cap:
        assert not cap.has_index and cap.warnings == []
        assert cap.n_events == 4  # the two complete chunks; the pending event was never written
    assert INDX not in block_types(p.read_bytes())


def test_close_is_idempotent_and_stats_land_in_the_index() -> None:
    out = io.BytesIO()
    w = CaptureWriter(out)
    w.write_events(batch(2))
    w.close(stats={"events_seen": 2, "dropped": 0})
    size = len(out.getvalue())
    w.close()
    assert len(out.getvalue()) == size and w.indexed
    with aether_rec.open(io.BytesIO(out.getvalue())) as cap:
        assert cap.index_stats == {"events_seen": 2, "dropped": 0}


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        CaptureWriter(io.BytesIO(), chunk_events=0)
    with pytest.raises(CaptureError, match="codec 'lz4'"):
        CaptureWriter(io.BytesIO(), codec="lz4")
    with pytest.raises(ValueError, match="different lengths"):
        CaptureWriter(io.BytesIO()).write_events({"ts": np.zeros(2, np.uint64),
                                                  "lat": np.zeros(3, np.uint64)})
    with pytest.raises(TypeError, match="unsupported dtype"):
        CaptureWriter(io.BytesIO()).write_events({"x_f": np.zeros(2, np.float64)})


def test_overwrite_replaces_the_name_never_writes_through_a_hard_link(tmp_path: Path) -> None:
    """recover/redact/generate --force: the old name is replaced by a new 0600 file, so a
    hard link to some other file is never truncated or written through."""
    precious = tmp_path / "precious"
    precious.write_bytes(b"do not touch")
    os.chmod(precious, 0o644)
    out = tmp_path / "out.aio"
    os.link(precious, out)
    with CaptureWriter(str(out), {}, overwrite=True):
        pass
    assert precious.read_bytes() == b"do not touch"
    assert os.stat(out).st_ino != os.stat(precious).st_ino
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
