"""Recovery: a clean indexed capture from a damaged or unfinished one (SPEC.md section 16)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

import aether_rec
from aether_rec.errors import CaptureError, NotACaptureError, VersionError
from aether_rec.format.blocks import CHNK, PREAMBLE_SIZE, Block, scan
from aether_rec.format.writer import WriteError
from aether_rec.ops.recover import recover

VECTORS = Path(__file__).resolve().parent.parent / "format" / "vectors"


def chunk_payloads(data: bytes) -> list[bytes]:
    f = io.BytesIO(data)
    f.seek(PREAMBLE_SIZE)
    return [b.payload for b in scan(f, PREAMBLE_SIZE, True) if isinstance(b, Block) and b.type == CHNK]


def recovered(tmp_path: Path, vector: str) -> tuple[object, aether_rec.Capture, bytes]:
    out = tmp_path / "fixed.aio"
    rep = recover(VECTORS / f"{vector}.aio", out)
    return rep, aether_rec.open(out, strict=True), out.read_bytes()


def test_recover_a_capture_cut_mid_chunk(tmp_path: Path) -> None:
    rep, cap, data = recovered(tmp_path, "004-truncated")
    with cap:
        assert cap.has_index and cap.warnings == [] and cap.verify() == []
        assert cap.n_events == 4 and cap.lost == 17
        assert [p["comm"] for p in cap.meta("procs")] == ["postgres", "nginx", "java", "rsync"]
        with aether_rec.open(VECTORS / "004-truncated.aio") as src:
            assert cap.header["capture_id"] == src.header["capture_id"]  # the header is kept ...
        assert cap.header["recovered_from"] == {"file": "004-truncated.aio"}  # ... and says so
        assert cap.index_stats["recovered"] is True
    assert (rep.chunks, rep.events, rep.losses, rep.metas) == (1, 4, 1, 3)  # type: ignore[attr-defined]
    assert len(rep.damaged) == 1 and "cut short" in rep.damaged[0]  # type: ignore[attr-defined]
    # Good chunks are copied as they are, not re-encoded.
    original = (VECTORS / "004-truncated.aio").read_bytes()
    assert chunk_payloads(data) == chunk_payloads(original)[:1]


def test_recover_a_capture_with_a_corrupted_chunk(tmp_path: Path) -> None:
    rep, cap, data = recovered(tmp_path, "005-bad-checksum")
    with cap:
        assert cap.has_index and cap.verify() == []
        assert cap.n_events == 6 and len(cap.to_numpy(["ts"])["ts"]) == 6
        assert cap.lost == 17 and len(cap.meta("clock")) == 1
    assert rep.chunks == 2 and rep.had_index  # type: ignore[attr-defined]
    assert any("bad checksum" in d for d in rep.damaged)  # type: ignore[attr-defined]
    good = chunk_payloads((VECTORS / "002-several-chunks.aio").read_bytes())
    assert chunk_payloads(data) == [good[0], good[2]]


def test_recover_a_damaged_length_field_keeps_what_follows(tmp_path: Path) -> None:
    rep, cap, _ = recovered(tmp_path, "013-damaged-length")
    with cap:
        assert cap.n_events == 6 and cap.lost == 17
    assert any("damaged length field" in d for d in rep.damaged)  # type: ignore[attr-defined]


def test_recover_adds_an_index_to_an_unfinished_capture(tmp_path: Path) -> None:
    rep, cap, _ = recovered(tmp_path, "003-no-index")
    with cap, aether_rec.open(VECTORS / "002-several-chunks.aio") as ref:
        assert cap.has_index and rep.damaged == []  # type: ignore[attr-defined]
        assert cap.to_numpy().keys() == ref.to_numpy().keys()
        for k, v in ref.to_numpy().items():
            assert cap.to_numpy()[k].tolist() == v.tolist(), k


def test_recover_says_it_drops_unknown_blocks(tmp_path: Path) -> None:
    rep, cap, _ = recovered(tmp_path, "006-unknown-block")
    with cap:
        assert cap.n_events == 6
    assert any("unknown block type" in d and "XTRA" in d for d in rep.damaged)  # type: ignore[attr-defined]


def test_recover_rebuilds_a_damaged_header(tmp_path: Path) -> None:
    data = bytearray((VECTORS / "002-several-chunks.aio").read_bytes())
    data[PREAMBLE_SIZE + 40] ^= 1
    src = tmp_path / "bad-head.aio"
    src.write_bytes(bytes(data))
    out = tmp_path / "fixed.aio"
    rep = recover(src, out)
    assert rep.header_rebuilt and rep.chunks == 3
    with aether_rec.open(out, strict=True) as cap:
        assert cap.header["recovered_header"] is True and cap.n_events == 10


def test_recover_refuses_what_is_not_a_capture_and_existing_outputs(tmp_path: Path) -> None:
    with pytest.raises(NotACaptureError):
        recover(VECTORS / "010-not-a-capture.aio", tmp_path / "x.aio")
    with pytest.raises(VersionError):
        recover(VECTORS / "009-major-version.aio", tmp_path / "y.aio")
    with pytest.raises(CaptureError, match="cannot open"):
        recover(tmp_path / "missing.aio", tmp_path / "z.aio")
    existing = tmp_path / "exists.aio"
    existing.write_bytes(b"keep")
    with pytest.raises(WriteError, match="already exists"):
        recover(VECTORS / "003-no-index.aio", existing)
    assert existing.read_bytes() == b"keep"


def test_recover_keeps_the_recorder_statistics_losses_and_metadata(tmp_path: Path) -> None:
    """What the recorder wrote into the index (its counters) survives recovery, next to the
    'recovered' mark; so do every loss record and metadata table."""
    import numpy as np

    from aether_rec.format.records import Loss
    from aether_rec.format.writer import CaptureWriter

    src = tmp_path / "src.aio"
    stats = {"events_seen": 1234, "counters": {"submit_failed": [0, 3]}, "stop_reason": "signal"}
    with CaptureWriter(str(src), {"clock": [[1, 2]]}) as w:
        w.write_meta("procs", [{"pid": 1, "comm": "x"}])
        w.write_events({"ts": np.arange(10, dtype=np.uint64), "lat": np.ones(10, np.uint64)})
        w.write_loss(Loss(1, 3, 4, 5, "ringbuf"))
        w.flush()
        w.close(stats=stats)
    out = tmp_path / "out.aio"
    rep = recover(src, out)
    with aether_rec.open(out, strict=True) as cap:
        assert {k: cap.index_stats.get(k) for k in stats} == stats
        assert cap.index_stats["recovered"] is True
        assert [(x.cpu, x.count, x.t_first, x.t_last, x.kind) for x in cap.losses()] == [
            (1, 3, 4, 5, "ringbuf")]
        assert cap.meta("procs") == [{"pid": 1, "comm": "x"}] and cap.n_events == 10
    assert rep.had_index and rep.index_stats == stats
