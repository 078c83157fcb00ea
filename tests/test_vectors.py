"""The golden vectors in format/vectors/: each read with the outcome its .txt describes, and
regeneration by make_vectors.py is byte-identical (SPEC.md section "Test vectors")."""

from __future__ import annotations

import importlib.util
import io
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import zstandard

import aether_rec
from aether_rec.errors import CaptureError, DamagedCaptureError, NotACaptureError, VersionError
from aether_rec.format.blocks import PREAMBLE_SIZE, VERSION_MAJOR, VERSION_MINOR, Block, scan
from aether_rec.schema import LAYER_CODE, OP_CODE

VECTORS = Path(__file__).resolve().parent.parent / "format" / "vectors"
NAMES = sorted(p.stem for p in VECTORS.glob("*.aio"))
KINDS = {"not-a-capture": NotACaptureError, "version": VersionError, "damaged": DamagedCaptureError}


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_vectors", VECTORS / "make_vectors.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("make_vectors", mod)
    spec.loader.exec_module(mod)
    return mod


MV = load_generator()


def expectations(name: str) -> dict[str, list[str]]:
    exp: dict[str, list[str]] = {}
    for line in (VECTORS / f"{name}.txt").read_text().splitlines():
        if line.startswith("expect."):
            key, _, value = line[len("expect."):].partition(":")
            exp.setdefault(key, []).append(value.strip())
    return exp


def read_everything(path: Path, strict: bool = False) -> tuple[dict[str, Any], Any]:
    with aether_rec.open(path, strict=strict) as cap:
        events = cap.to_numpy()
        cap.losses()
        return events, cap


def test_every_vector_is_described() -> None:
    assert len(NAMES) >= 14
    for name in NAMES:
        assert (VECTORS / f"{name}.txt").is_file(), name
        exp = expectations(name)
        assert exp["result"][0] in ("ok", "refused"), name
        assert "strict" in exp, name
    assert {p.stem for p in VECTORS.glob("*.txt")} == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_vector(name: str) -> None:
    exp = expectations(name)
    path = VECTORS / f"{name}.aio"
    if exp["result"] == ["refused"]:
        for strict in (False, True):
            with pytest.raises(KINDS[exp["kind"][0]]) as ei:
                read_everything(path, strict)
            for part in exp["error"]:
                assert part in str(ei.value)
            assert str(path) in str(ei.value)
        return
    events, cap = read_everything(path)
    ts = [int(t) for t in exp["ts"][0].split()]
    assert len(events["ts"]) == int(exp["events"][0]) == len(ts)
    assert events["ts"].tolist() == ts
    assert cap.n_events == int(exp.get("index_events", exp["events"])[0])
    assert len(cap.chunk_infos()) == int(exp["chunks"][0])
    assert cap.has_index == (exp["indexed"][0] == "yes")
    assert cap.lost == int(exp["lost"][0])
    if exp["warning"] == ["none"]:
        assert cap.warnings == []
    else:
        for part in exp["warning"]:
            assert any(part in w for w in cap.warnings), (part, cap.warnings)
    if exp["strict"] == ["ok"]:
        events2, cap2 = read_everything(path, strict=True)
        assert events2["ts"].tolist() == ts and cap2.warnings == []
    else:
        with pytest.raises(DamagedCaptureError):
            read_everything(path, strict=True)


def _row(ev: tuple[Any, ...], names: tuple[str, ...] | None = None) -> dict[str, Any]:
    full = {
        "ts": MV.T0 + ev[0], "lat": ev[1], "pid": ev[2], "tid": ev[3], "comm": ev[4], "cpu": ev[5],
        "layer": ev[6], "op": OP_CODE[ev[7]], "fd": ev[8], "dev": ev[9], "offset": ev[10],
        "bytes": ev[11], "result": ev[12], "queue": ev[13], "cgroup": 4242, "flags": ev[14], "path": ev[15],
    }
    return full if names is None else {k: full[k] for k in names}


def test_several_chunks_values_exactly() -> None:
    with aether_rec.open(VECTORS / "002-several-chunks.aio") as cap:
        assert list(cap.events()) == [_row(e) for e in MV.EVENTS]
        assert cap.header["hostname"] == "vectors.example" and cap.header["codec"] == "zstd"
        assert [i.n for i in cap.chunk_infos()] == [4, 4, 2]
        assert (cap.major, cap.minor) == (1, 0)


def test_minimal_values_and_defaults() -> None:
    with aether_rec.open(VECTORS / "001-minimal.aio") as cap:
        got = list(cap.events())
        assert got == [_row(e, MV.MINIMAL_COLUMNS) for e in MV.EVENTS[:3]]
        d = cap.to_numpy(["tid", "fd", "offset", "path", "layer"])
        assert d["tid"].tolist() == [0, 0, 0] and d["fd"].tolist() == [-1, -1, -1]
        assert d["offset"].tolist() == [-1, -1, -1] and d["path"].tolist() == ["", "", ""]
        assert d["layer"].tolist() == [LAYER_CODE["syscall"]] * 2 + [LAYER_CODE["block"]]
        assert cap.header["codec"] == "none"


def test_no_index_reads_like_the_indexed_file() -> None:
    with aether_rec.open(VECTORS / "003-no-index.aio") as a, \
            aether_rec.open(VECTORS / "002-several-chunks.aio") as b:
        assert list(a.events()) == list(b.events())
        assert a.losses()[0].count == 17
        assert any("no index" in p for p in a.verify())
        assert b.verify() == []


def test_unknown_block_is_skipped_when_scanning_too() -> None:
    data = (VECTORS / "006-unknown-block.aio").read_bytes()
    f = io.BytesIO(data)
    f.seek(PREAMBLE_SIZE)
    assert b"XTRA" in [b.type for b in scan(f, PREAMBLE_SIZE, True) if isinstance(b, Block)]
    with aether_rec.open(io.BytesIO(data[:-32]), strict=True) as cap:  # no trailer: scan
        assert not cap.has_index and cap.warnings == []
        assert cap.to_numpy(["ts"])["ts"].tolist() == [MV.T0 + e[0] for e in MV.EVENTS[:6]]


def test_minor_version_keeps_unknown_header_keys() -> None:
    with aether_rec.open(VECTORS / "007-minor-version.aio", strict=True) as cap:
        assert (cap.major, cap.minor) == (1, 1)
        assert cap.header["format_version"] == "1.1"
        assert cap.header["numa_nodes"] == [{"node": 0, "cpus": [0, 1]}]
        assert list(cap.events()) == [_row(e) for e in MV.EVENTS[:4]]


def test_unknown_columns() -> None:
    with aether_rec.open(VECTORS / "008-unknown-columns.aio", strict=True) as cap:
        (chunk,) = list(cap.chunks())
        assert "weight" not in chunk.columns  # unknown type: skipped by its size
        assert chunk.columns["numa"].tolist() == [0, 1, 1, 0, 1]
        assert str(chunk.columns["numa"].dtype) == "uint16"
        evs = list(cap.events())
        for got, ev in zip(evs, MV.EVENTS[:5]):  # every column after "weight" still decodes
            assert {k: v for k, v in got.items() if k != "numa"} == _row(ev)
        assert [c["name"] for c in cap.header["columns"]][-2:] == ["numa", "weight"]


def test_empty_capture() -> None:
    with aether_rec.open(VECTORS / "012-empty.aio", strict=True) as cap:
        assert cap.n_events == 0 and list(cap.chunks()) == [] and cap.verify() == []
        assert len(cap.to_numpy()["ts"]) == 0


def test_not_a_capture_and_newer_major_messages() -> None:
    with pytest.raises(NotACaptureError, match=r"not an \.aio capture \(bad magic\)$"):
        aether_rec.open(VECTORS / "010-not-a-capture.aio")
    with pytest.raises(VersionError) as ei:
        aether_rec.open(VECTORS / "009-major-version.aio")
    assert f"version 2.0 is newer than this reader ({VERSION_MAJOR}.{VERSION_MINOR})" in str(ei.value)
    assert isinstance(ei.value, CaptureError)


def test_regeneration_is_byte_identical(tmp_path: Path) -> None:
    assert MV.main(["make_vectors.py", str(tmp_path)]) == 0
    made = sorted(p.name for p in tmp_path.iterdir())
    committed = sorted(p.name for p in VECTORS.iterdir() if p.suffix in (".aio", ".txt"))
    assert made == committed
    same_zstd = zstandard.ZSTD_VERSION == MV.ZSTD_VERSION
    for name in made:
        new, old = (tmp_path / name).read_bytes(), (VECTORS / name).read_bytes()
        if new == old:
            continue
        # Only compressed bytes may differ, and only under another libzstd version: then the
        # files must still hold exactly the same events and header.
        assert not same_zstd, f"{name} differs from what make_vectors.py writes"
        assert name.endswith(".aio"), name
        stem = name[:-4]
        if expectations(stem)["result"] == ["refused"]:
            assert new[:16] == old[:16]
            continue
        with aether_rec.open(io.BytesIO(new)) as a, aether_rec.open(io.BytesIO(old)) as b:
            assert a.header == b.header and list(a.events()) == list(b.events())


def test_version_1_2_summary_and_histograms() -> None:
    """Vector 016: what its description says the SUMM block and the index histograms hold,
    and that they are what the events give."""
    from aether_rec.format.chunk import Chunk
    from aether_rec.format.summary import LatencyHist
    from aether_rec.schema import FD_KIND_CODE, LAYER_CODE, OP_CODE

    with aether_rec.open(VECTORS / "016-version-1.2.aio", strict=True) as cap:
        assert (cap.major, cap.minor) == (1, 2) and cap.header["format_version"] == "1.2"
        s = cap.summary()
        assert s is not None and (s.chunks, s.events, s.hist_chunks) == (2, 8, 2)
        assert [(x.cpu, x.kind, x.count, x.blocks) for x in s.losses] == [(-1, "recursion", 3, 1)]
        assert len(s.hist.groups) == 8
        pipe = s.hist.groups[LAYER_CODE["syscall"] << 16 | OP_CODE["read"] << 8 | FD_KIND_CODE["pipe"]]
        assert (pipe.count, pipe.min, pipe.max) == (1, 1_000_000_000, 1_000_000_000)
        infos = cap.chunk_infos()
        assert all(i.hist is not None for i in infos)
        whole = LatencyHist.from_chunk(Chunk.concat(list(cap.chunks(ordered=False))))
        assert whole.encode() == s.hist.encode() and cap.verify() == []
