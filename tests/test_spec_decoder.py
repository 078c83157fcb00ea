"""The project's reader and writer against an independent decoder written from
format/SPEC.md alone (tests/spec_decoder.py, no project imports): the golden vectors'
chunk summaries, directories, column values and index must decode the same both ways,
and what the writer writes must decode, by the spec, to what it was given."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from ops_common import random_chunk
from spec_decoder import SpecCapture, SpecError, read

import aether_rec
from aether_rec.format.writer import CaptureWriter

VECTORS = Path(__file__).resolve().parent.parent / "format" / "vectors"
ALL = sorted(p.stem for p in VECTORS.glob("*.aio"))


def expectations(name: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in (VECTORS / f"{name}.txt").read_text().splitlines():
        if line.startswith("expect.") and ":" in line:
            k, _, v = line.partition(":")
            out.setdefault(k[len("expect."):], v.strip())
    return out


READABLE = [n for n in ALL if expectations(n)["result"] == "ok"]
REFUSED = [n for n in ALL if expectations(n)["result"] == "refused"]


def test_the_vectors_are_all_covered() -> None:
    assert len(ALL) >= 14 and set(READABLE) | set(REFUSED) == set(ALL) and REFUSED


@pytest.mark.parametrize("name", READABLE)
def test_spec_decoder_reads_what_the_vector_says(name: str) -> None:
    exp = expectations(name)
    spec = read((VECTORS / f"{name}.aio").read_bytes())
    ts = [e["ts"] for e in spec.events()]
    assert ts == [int(x) for x in exp["ts"].split()]
    assert len(ts) == int(exp["events"])
    assert sum(doc["count"] for _, doc in spec.losses) == int(exp["lost"])


@pytest.mark.parametrize("name", REFUSED)
def test_spec_decoder_refuses_what_the_vector_refuses(name: str) -> None:
    with pytest.raises(SpecError):
        read((VECTORS / f"{name}.aio").read_bytes())


def _summary_of(info: aether_rec.format.chunk.ChunkInfo) -> dict[str, object]:
    return {"n": info.n, "t0": info.t_first, "t1": info.t_last, "lat_max": info.lat_max,
            "layers": info.layers, "ops": info.ops, "pid_min": info.pid_min, "pid_max": info.pid_max,
            "pids": info.pids, "raw": info.raw}


def _compare(spec: SpecCapture, cap: aether_rec.Capture) -> None:
    infos = {i.offset: i for i in cap.chunk_infos()}
    decoded = {c.info.offset: c for c in cap.chunks(ordered=False) if c.info is not None}
    for sc in spec.chunks:
        info = infos[sc.offset]
        assert (info.length, info.n) == (sc.length, sc.summary["n"])
        want = {k: sc.summary.get(k, 0) for k in ("n", "t0", "t1", "lat_max", "layers", "ops", "pid_min",
                                                  "pid_max", "pids", "raw")}
        assert _summary_of(info) == want
        chunk = decoded[sc.offset]
        known = {e["name"] for e in sc.directory if e["type"] in ("str", "<u1", "<u2", "<u4", "<u8", "<i1",
                                                                   "<i2", "<i4", "<i8")}
        assert set(chunk.columns) == known == set(sc.columns)
        for name, values in sc.columns.items():
            got = chunk.strings(name).tolist() if chunk.is_str(name) else chunk.column(name).tolist()
            assert got == values, name
    assert sorted(decoded) == sorted(c.offset for c in spec.chunks)


@pytest.mark.parametrize("name", READABLE)
def test_project_reader_agrees_with_the_spec_decoder(name: str) -> None:
    data = (VECTORS / f"{name}.aio").read_bytes()
    spec = read(data)
    with aether_rec.open(io.BytesIO(data)) as cap:
        _compare(spec, cap)
        if expectations(name)["indexed"] == "yes":
            assert spec.index is not None and cap.has_index
            rows = spec.index["chunks"]
            assert [list(r[:12]) for r in rows] == [i.to_row()[:12] for i in cap.chunk_infos()]
            assert [list(r[:6]) for r in spec.index.get("losses", [])] == [x.to_row() for x in cap.losses()]
            assert [off for off, _ in spec.metas] == [r[0] for r in spec.index.get("meta", [])]
            # every index entry points at the block it describes (section 9)
            by_offset = {c.offset: c for c in spec.chunks}
            for r in rows:
                c = by_offset.get(r[0])
                if c is not None:
                    s = c.summary
                    assert (r[1], r[2], r[3], r[4]) == (c.length, s["n"], s["t0"], s["t1"])


@pytest.mark.parametrize("codec", ["zstd", "none"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_what_the_writer_writes_decodes_by_the_spec(codec: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    chunk = random_chunk(rng, 3000)
    extra = {"numa": rng.integers(-128, 127, 3000).astype(np.int8), "const": np.full(3000, 7, np.uint32),
             "big": (np.uint64(2**64 - 1) - rng.integers(0, 5, 3000).astype(np.uint64))}
    for k, v in extra.items():
        chunk.columns[k] = v
    out = io.BytesIO()
    with CaptureWriter(out, codec=codec, chunk_events=1000) as w:
        w.write_events(chunk)
    spec = read(out.getvalue())
    assert [c.summary["n"] for c in spec.chunks] == [1000, 1000, 1000]
    order = np.argsort(chunk.column("ts"), kind="stable")
    events = spec.events()
    for name, arr in chunk.columns.items():
        want = (np.array(chunk.dicts[name], dtype=object)[arr] if chunk.is_str(name) else arr)[order].tolist()
        assert [e[name] for e in events] == want, name
    with aether_rec.open(io.BytesIO(out.getvalue())) as cap:
        _compare(spec, cap)
    assert spec.index is not None and spec.index["events"] == 3000
