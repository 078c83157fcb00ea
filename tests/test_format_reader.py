"""Reading: global time order over overlapping chunks, index push-down, streams, metadata,
losses and the clock mapping (SPEC.md sections 8, 9, 12 and 14)."""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import aether_rec
from aether_rec.errors import CaptureError
from aether_rec.format.chunk import Chunk
from aether_rec.format.records import Loss
from aether_rec.format.writer import CaptureWriter

VECTORS = Path(__file__).resolve().parent.parent / "format" / "vectors"
T0 = 1_000_000_000_000
REAL0 = 1_767_225_600_000_000_000


def vector(name: str) -> bytes:
    return (VECTORS / f"{name}.aio").read_bytes()


def open_bytes(data: bytes, **kw: Any) -> aether_rec.Capture:
    return aether_rec.open(io.BytesIO(data), **kw)


# -- global order over overlapping chunks -----------------------------------------------------------
@st.composite
def overlapping_chunks(draw: st.DrawFn) -> list[np.ndarray]:
    """Sorted ts arrays whose ranges overlap in arbitrary ways, in arbitrary file order."""
    chunks = []
    for _ in range(draw(st.integers(1, 7))):
        start = draw(st.integers(0, 1000))
        n = draw(st.integers(1, 30))
        spread = draw(st.integers(0, 2000))
        ts = draw(st.lists(st.integers(start, start + spread), min_size=n, max_size=n))
        chunks.append(np.array(sorted(ts), np.uint64))
    return chunks


def write_chunks(chunks: list[np.ndarray], indexed: bool = True) -> bytes:
    out = io.BytesIO()
    w = CaptureWriter(out)
    next_id = 0
    for ts in chunks:
        ids = np.arange(next_id, next_id + len(ts), dtype=np.uint32)
        next_id += len(ts)
        w.write_chunk(Chunk.from_columns({"ts": ts, "lat": ts * 3, "x_id": ids}))
    if indexed:
        w.close()
    else:
        w.abort()
    return out.getvalue()


@settings(max_examples=80, deadline=None)
@given(overlapping_chunks(), st.booleans())
def test_ordered_iteration_merges_overlapping_chunks(chunks: list[np.ndarray], indexed: bool) -> None:
    data = write_chunks(chunks, indexed)
    total = sum(len(c) for c in chunks)
    with open_bytes(data, strict=True) as cap:
        assert cap.has_index == indexed
        out = list(cap.chunks())
        ts = np.concatenate([c.column("ts") for c in out])
        ids = np.concatenate([c.column("x_id") for c in out])
        lat = np.concatenate([c.column("lat") for c in out])
        assert bool(np.all(ts[:-1] <= ts[1:]))  # globally sorted
        assert sorted(ids.tolist()) == list(range(total))  # none lost, none doubled
        assert lat.tolist() == (ts * 3).tolist()  # rows stay whole
        # File order: the chunks as stored.
        raw = [c.column("ts").tolist() for c in cap.chunks(ordered=False)]
        assert raw == [c.tolist() for c in chunks]
        # Selecting columns still merges by ts, which is decoded for the purpose.
        only = list(cap.chunks(columns=["x_id"]))
        assert np.concatenate([c.column("x_id") for c in only]).tolist() == ids.tolist()


def test_overlapping_vector_reads_in_global_order() -> None:
    with open_bytes(vector("011-overlapping-chunks")) as cap:
        infos = cap.chunk_infos()
        assert infos[0].t_last > infos[1].t_first  # the ranges really overlap
        ts = cap.to_numpy(["ts"])["ts"].tolist()
        file_order = [t for c in cap.chunks(ordered=False) for t in c.column("ts").tolist()]
    assert ts == sorted(ts) and sorted(file_order) == ts and file_order != ts


def test_time_range_and_predicate_push_down() -> None:
    with open_bytes(vector("002-several-chunks")) as cap:
        infos = cap.chunk_infos()
        assert [(i.t_first - T0, i.t_last - T0) for i in infos] == [
            (100_000, 150_000), (152_500, 250_000), (300_000, 301_000)]
        got = list(cap.chunks(t_min=T0 + 160_000, t_max=T0 + 260_000))
        assert [c.n for c in got] == [4]  # only the middle chunk overlaps the range
        assert list(cap.chunks(t_min=T0 + 400_000)) == []
        java = list(cap.chunks(where=lambda c: c.pids is not None and 3377 in c.pids, ordered=False))
        assert [c.n for c in java] == [4]
        assert 3377 in java[0].column("pid").tolist()
        blocks_only = list(cap.chunks(where=lambda c: bool(c.layers & (1 << 2)), ordered=False))
        assert len(blocks_only) == 3


def test_summaries_describe_their_chunks() -> None:
    with open_bytes(vector("002-several-chunks")) as cap:
        for info, chunk in zip(cap.chunk_infos(), cap.chunks(ordered=False)):
            assert info.n == chunk.n
            ts = chunk.column("ts")
            assert (info.t_first, info.t_last) == (int(ts.min()), int(ts.max()))
            assert info.lat_max == int(chunk.column("lat").max())
            assert info.layers == sum(1 << int(v) for v in set(chunk.column("layer").tolist()))
            assert info.ops == sum(1 << int(v) for v in set(chunk.column("op").tolist()))
            assert info.pids == sorted(set(chunk.column("pid").tolist()))
            assert (info.pid_min, info.pid_max) == (min(info.pids), max(info.pids))
            assert info.raw > 0


def test_events_and_to_numpy_agree() -> None:
    with open_bytes(vector("002-several-chunks")) as cap:
        evs = list(cap.events())
        arr = cap.to_numpy()
    assert len(evs) == 10 and evs[0]["comm"] == "postgres" and evs[0]["op"] == 3
    assert [e["ts"] for e in evs] == arr["ts"].tolist()
    assert [e["path"] for e in evs] == arr["path"].tolist()
    assert evs[7]["result"] == -28 and evs[2]["fd"] == -1 and evs[2]["offset"] == 1_048_576


def test_to_pandas() -> None:
    with open_bytes(vector("001-minimal")) as cap:
        try:
            import pandas  # noqa: F401
        except ImportError:
            with pytest.raises(CaptureError, match="pip install pandas"):
                cap.to_pandas()
        else:
            df = cap.to_pandas(["ts", "comm"])
            assert list(df["comm"]) == ["postgres", "nginx", "jbd2/vda1-8"]


# -- metadata, losses, clock ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["002-several-chunks", "003-no-index"])
def test_metadata_and_losses(name: str) -> None:
    with open_bytes(vector(name)) as cap:
        assert [p["comm"] for p in cap.meta("procs")] == ["postgres", "nginx", "java", "rsync"]
        assert cap.meta("devices") == [{"dev": (254 << 20), "name": "vda"},
                                       {"dev": (259 << 20) | 1, "name": "nvme0n1"}]
        assert [r["fd"] for r in cap.meta("fds")] == [7, 12]
        assert cap.meta("no-such-table") == []
        (loss,) = cap.losses()
        assert (loss.cpu, loss.count, loss.t_first - T0, loss.t_last - T0, loss.kind) == (
            1, 17, 132_000, 149_000, "perf_buffer")
        assert cap.lost == 17


def test_clock_mapping_interpolates_between_pairs() -> None:
    with open_bytes(vector("002-several-chunks")) as cap:
        pairs = cap.clock_pairs().tolist()
        assert pairs == [[T0, REAL0], [T0 + 250_000, REAL0 + 250_010]]
        assert int(cap.mono_to_real(T0)) == REAL0
        assert int(cap.mono_to_real(T0 + 125_000)) == REAL0 + 125_005
        assert int(cap.mono_to_real(T0 + 1_000_000)) == REAL0 + 1_000_010  # beyond: last offset
        assert cap.mono_to_real(np.array([T0], np.uint64)).tolist() == [REAL0]
        assert int(cap.mono_to_real(2**64 - 1)) != 0  # u64 extremes never raise
    with open_bytes(vector("001-minimal")) as cap:
        assert int(cap.mono_to_real(T0 + 7)) == REAL0 + 7  # one pair: a constant offset


# -- streams ----------------------------------------------------------------------------------------------
def test_reading_from_a_pipe_spools_it() -> None:
    data = vector("002-several-chunks")
    r, w = os.pipe()

    def feed() -> None:
        with os.fdopen(w, "wb") as f:
            f.write(data)

    t = threading.Thread(target=feed)
    t.start()
    with os.fdopen(r, "rb") as stream, aether_rec.open(stream) as cap:
        ts = cap.to_numpy(["ts"])["ts"].tolist()
        assert cap.has_index and cap.n_events == len(ts) == 10 and ts == sorted(ts)
    t.join()


def test_follow_yields_chunks_and_losses_in_file_order() -> None:
    with open_bytes(vector("002-several-chunks")) as cap:
        items = list(cap.follow(stop=lambda: False, poll=0.01))
    kinds = [type(i).__name__ for i in items]
    assert kinds == ["Chunk", "Loss", "Chunk", "Chunk"]
    assert isinstance(items[1], Loss) and items[1].count == 17
    calls = []

    def stop() -> bool:
        calls.append(1)
        return len(calls) > 50

    with open_bytes(vector("003-no-index")) as cap:  # no INDX: follow polls until stop()
        items = list(cap.follow(stop=stop, poll=0.001))
    assert sum(i.n for i in items if isinstance(i, Chunk)) == 10


def test_open_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match=r"nope\.aio: no such file"):
        aether_rec.open(tmp_path / "nope.aio")
    with pytest.raises(CaptureError, match="is a directory"):
        aether_rec.open(tmp_path)
    p = tmp_path / "x.aio"
    p.write_bytes(b"hello")
    with pytest.raises(CaptureError, match=r"x\.aio: not an \.aio capture \(bad magic\)"):
        aether_rec.open(p)
