"""Format 1.2: per-chunk latency histograms in the index, the SUMM block before it, and what
uses them: ``info`` from SUMM alone (local and by range), ``stats --from-index``. Old files
read as before; a damaged SUMM falls back to the index with a warning."""

from __future__ import annotations

import dataclasses
import io
import json
import struct
import zlib
from pathlib import Path
from typing import Any

import fsspec
import msgpack
import numpy as np
import pytest
import zstandard
from click.testing import CliRunner
from http_range import serve
from jsonschema_mini import validate
from ops_common import make_capture, random_chunk

import aether_rec
from aether_rec.cli import main
from aether_rec.errors import DamagedCaptureError
from aether_rec.format import blocks
from aether_rec.format.blocks import BLOCK_HEAD, INDX, SUMM, TRAILER_SIZE, frame, pack, parse_trailer, trailer
from aether_rec.format.chunk import Chunk
from aether_rec.format.records import Loss
from aether_rec.format.remote import RangeFile
from aether_rec.format.summary import CaptureSummary, LatencyHist
from aether_rec.format.writer import CaptureWriter
from aether_rec.ops.stats import StatsOptions
from aether_rec.ops.stats import compute as compute_stats
from aether_rec.ops.stats_index import compute_from_index
from aether_rec.ops.window import Selection

VECTORS = Path(__file__).resolve().parents[1] / "format" / "vectors"
SCHEMA = json.loads((VECTORS.parents[1] / "docs" / "stats-json.schema.json").read_text())
# what stats --from-index cannot know: everything else must be equal
NOT_FROM_INDEX = ("errnos", "block", "top", "would_block", "page_cache", "from_index", "tool_version")


def mixed_capture(path: Path, minor: int = 2, chunks: int = 6, n: int = 2000, seed: int = 3,
                  threads: int = 0) -> Path:
    """Events of every kind stats tells apart: layers, ops, storage and other fd kinds, errors
    and EAGAIN, a loss; chunks overlapping in time."""
    rng = np.random.default_rng(seed)
    with CaptureWriter(path, {"clock": [[0, 1_767_225_600_000_000_000]]}, chunk_events=n, minor=minor,
                       overwrite=True, threads=threads) as w:
        w.write_meta("clock", [{"mono": 2_000_000_000, "real": 1_767_225_602_000_000_100}])
        for _ in range(chunks):
            c = random_chunk(rng, n)
            c.columns["lat"] = rng.lognormal(9, 2, n).astype(np.uint64)
            if minor >= 1:
                c.columns["fdkind"] = rng.choice([0, 1, 2, 3, 4, 8], n).astype(np.uint8)
            w.write_events(c)
        w.write_loss(Loss(1, 0, 1_000, 2_000, "perf_buffer"))  # nothing lost: not in the span
        w.write_loss(Loss(1, 7, 3_000_000, 4_000_000, "perf_buffer"))
        w.write_loss(Loss(-1, 2, 3_000_000, 4_000_000, "unmatched"))
    return path


def _json(runner: CliRunner, args: list[str]) -> Any:
    r = runner.invoke(main, args)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def _strip(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in NOT_FROM_INDEX}


# -- the histograms --------------------------------------------------------------------------


def test_index_histograms_merge_to_the_whole_capture_and_to_summ(tmp_path: Path) -> None:
    path = mixed_capture(tmp_path / "m.aio")
    with aether_rec.open(str(path)) as cap:
        infos = cap.chunk_infos()
        assert infos and all(i.hist is not None for i in infos)
        merged = LatencyHist()
        for i in infos:
            merged.merge(LatencyHist.decode(i.hist))
        whole = LatencyHist.from_chunk(Chunk.concat(list(cap.chunks(ordered=False))))
        summ = cap.summary()
        assert summ is not None and summ.complete and summ.events == cap.n_events == merged.total
        assert merged.encode() == whole.encode() == summ.hist.encode()
        assert summ.chunks == len(infos) and summ.compressed == sum(i.length for i in infos)
        assert summ.t_first == min(i.t_first for i in infos) and summ.t_last == max(i.t_last for i in infos)
        assert [(x.cpu, x.kind, x.count, x.blocks) for x in summ.losses] == [
            (1, "perf_buffer", 7, 2), (-1, "unmatched", 2, 1)]
        assert (summ.losses[0].t_first, summ.losses[0].t_last) == (3_000_000, 4_000_000)
        assert summ.clock == [(2_000_000_000, 1_767_225_602_000_000_100)]
        assert cap.verify() == []


@pytest.mark.parametrize("split", [False, True])
def test_histograms_built_beside_the_encoding_are_the_same(tmp_path: Path, split: bool,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A writer with compression threads (filter, merge) builds each chunk's histograms on a
    helper thread while the chunk is encoded: its index and SUMM are those of a writer
    without, also when chunks over a limit are split (the halves' histograms, not the
    whole's)."""
    from aether_rec.format import columns as columns_mod

    if split:
        monkeypatch.setattr(columns_mod, "MAX_CHUNK_EVENTS", 700)
    docs = []
    for threads in (0, -1):
        path = mixed_capture(tmp_path / f"t{threads}.aio", threads=threads)
        with aether_rec.open(str(path)) as cap:
            infos = cap.chunk_infos()
            summ = cap.summary()
            assert summ is not None and summ.complete and cap.verify() == []
            assert all(i.hist is not None for i in infos)
            assert (len(infos) > 6) == split
            docs.append(([(i.n, i.t_first, i.hist) for i in infos], summ.hist.encode(), summ.events))
    assert docs[0] == docs[1]


def test_histogram_groups_count_exactly(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    c = random_chunk(rng, 5000)
    c.columns["fdkind"] = rng.choice([0, 3], 5000).astype(np.uint8)
    h = LatencyHist.from_chunk(c)
    layer, op, fdk = c.column("layer"), c.column("op"), c.column("fdkind")
    lat, res = c.column("lat"), c.column("result")
    for key, g in h.groups.items():
        sel = (layer == key >> 16) & (op == (key >> 8) & 0xFF) & (fdk == key & 0xFF)
        assert g.count == int(sel.sum()) and g.sum == int(lat[sel].sum()) and g.max == int(lat[sel].max())
        assert g.errors == int(((res[sel] < 0) & (res[sel] != -11)).sum())
        assert g.bytes == int(c.column("bytes")[sel].sum())
        assert g.t0 == int(c.column("ts")[sel].min())
        assert g.end == int((c.column("ts")[sel] + lat[sel]).max())
    assert h.total == 5000 and LatencyHist.decode(h.encode()).encode() == h.encode()


# -- stats --from-index -----------------------------------------------------------------------


@pytest.mark.parametrize("all_fds", [False, True])
def test_from_index_equals_stats(tmp_path: Path, all_fds: bool) -> None:
    path = mixed_capture(tmp_path / "m.aio")
    with aether_rec.open(str(path)) as cap:
        full = compute_stats([cap], StatsOptions(all_fds=all_fds))
    with aether_rec.open(str(path)) as cap:
        fast = compute_from_index([cap], StatsOptions(all_fds=all_fds))
    assert fast["from_index"]["chunks_read"] == 0 and fast["events"] == full["events"] > 0
    validate(json.loads(json.dumps(fast)), SCHEMA)
    # counts, bytes, errors, span and every percentile: the same (same buckets, merged)
    assert _strip(fast) == _strip(full)


def test_from_index_reads_under_one_percent(tmp_path: Path) -> None:
    path = make_capture(tmp_path / "big.aio", 600_000, seed=2)
    with aether_rec.open(str(path)) as cap:
        full = compute_stats([cap])
    f = RangeFile(str(path), fs=fsspec.filesystem("file"))
    with aether_rec.open(f) as cap:
        fast = compute_from_index([cap])
    size = path.stat().st_size
    assert _strip(fast) == _strip(full)
    assert f.bytes_fetched < size / 100, (f.bytes_fetched, size)


def test_from_index_window_by_whole_chunks(tmp_path: Path) -> None:
    path = mixed_capture(tmp_path / "m.aio")
    with aether_rec.open(str(path)) as cap:
        infos = cap.chunk_infos()
        sel = Selection(t_min=infos[0].t_last + 1, t_max=infos[0].t_last + 2)
        doc = compute_from_index([cap], StatsOptions(all_fds=True), per_input=[sel])
        want = sum(i.n for i in infos if sel.can_match(i))
    assert doc["events"] == want and doc["from_index"]["whole_chunks"]
    assert any("whole chunks" in w for w in doc["warnings"])


def test_from_index_on_a_1_1_capture_reads_the_chunks(tmp_path: Path) -> None:
    path = mixed_capture(tmp_path / "old.aio", minor=1)
    with aether_rec.open(str(path)) as cap:
        assert (cap.minor, cap.summary()) == (1, None) and all(i.hist is None for i in cap.chunk_infos())
        full = compute_stats([cap])
    with aether_rec.open(str(path)) as cap:
        fast = compute_from_index([cap])
    assert fast["from_index"]["chunks_read"] == len(cap.chunk_infos()) and _strip(fast) == _strip(full)


def test_from_index_refuses_what_the_index_cannot_answer(tmp_path: Path) -> None:
    path = mixed_capture(tmp_path / "m.aio", chunks=1)
    r = CliRunner().invoke(main, ["stats", "--from-index", "--by", "comm", str(path)])
    assert r.exit_code != 0 and "--from-index" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(main, ["stats", "--from-index", "-e", "lat > 1ms", str(path)])
    assert r.exit_code != 0 and "--from-index" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(main, ["stats", "--from-index", str(path)])
    assert r.exit_code == 0 and "latency" in r.output


# -- info from SUMM ---------------------------------------------------------------------------


def many_chunks(path: Path, n_chunks: int, src: Path) -> Path:
    """A capture of ``n_chunks`` tiny chunks: a few real ones, their blocks copied over and
    over (as a raw copy does), with histograms carried from the source index."""
    make_capture(src, 64, seed=4, chunk_events=4)
    path.parent.mkdir(exist_ok=True)
    with aether_rec.open(str(src)) as cap, CaptureWriter(path, dict(cap.header), atomic=True,
                                                         overwrite=True) as w:
        infos = cap.chunk_infos()
        raws = [cap.raw_chunk(i) for i in infos]
        w.write_meta("clock", [{"mono": 1_000_000_000_000, "real": 1_767_225_600_000_000_000}])
        for k in range(n_chunks):
            raw = raws[k % len(raws)]
            assert raw is not None
            w.copy_chunk_block(raw, dataclasses.replace(infos[k % len(infos)]))
        w.write_loss(Loss(0, 5, 1_000_000_000_100, 1_000_000_000_200, "perf_buffer"))
    return path


def test_info_on_25k_chunks_by_range_transfers_under_256k(tmp_path: Path) -> None:
    big = many_chunks(tmp_path / "srv" / "many.aio", 25_000, tmp_path / "src.aio")
    runner = CliRunner()
    local = _json(runner, ["info", "--json", str(big)])
    with aether_rec.open(str(big)) as cap:
        index_bytes = cap.size - cap._index_offset  # type: ignore[operator]
    with serve(big.parent) as (base, served):
        remote = _json(runner, ["info", "--json", f"{base}/many.aio"])
        sent = served.bytes
    assert sent <= 256 * 1024 < index_bytes, (sent, index_bytes)
    assert remote["chunks"] == 25_000 and remote["from_summary"] is True
    assert sum(e["events"] for e in remote["by_layer_op"]) == remote["events"] == 25_000 * 4
    assert remote["lost"] == 5 and remote["start"].startswith("2026-01-01T00:00:00")
    local.pop("file"), remote.pop("file")
    assert remote == local


def test_info_from_summ_equals_scanning_and_reads_no_chunk(tmp_path: Path) -> None:
    path = mixed_capture(tmp_path / "m.aio")
    runner = CliRunner()
    scanned = _json(runner, ["info", "--json", "--scan", str(path)])
    fast = _json(runner, ["info", "--json", str(path)])
    assert fast.pop("from_summary") is True and scanned.pop("from_summary") is False
    assert fast == scanned
    f = RangeFile(str(path), fs=fsspec.filesystem("file"))
    with aether_rec.open(f, lazy_index=True) as cap:
        from aether_rec.ops.info import capture_info

        d = capture_info(cap)
        first_block = cap._first_block
    assert d["events"] == scanned["events"] and d["from_summary"]
    start, index_at = _summ_at(path.read_bytes())
    # preamble and header, trailer, the SUMM block's last 8 bytes, the SUMM block: nothing else
    assert f.bytes_fetched == first_block + TRAILER_SIZE + 8 + (index_at - start)


def test_info_with_a_summ_missing_some_histograms_counts_from_the_chunks(tmp_path: Path) -> None:
    path = mixed_capture(tmp_path / "m.aio")
    with aether_rec.open(str(path)) as cap:
        infos = cap.chunk_infos()
    data = _resummed(path.read_bytes(), hist_chunks=len(infos) - 1, hist=infos[0].hist)
    fast, scanned = _info_pair(tmp_path, data)
    assert fast["from_summary"] is False and fast["warnings"] == []
    assert fast["by_layer_op"] == scanned["by_layer_op"] and fast["events"] == scanned["events"]


@pytest.mark.parametrize("vector", ["015-version-1.1", "002-several-chunks"])
def test_info_on_old_vectors_falls_back(vector: str) -> None:
    runner = CliRunner()
    d = _json(runner, ["info", "--json", str(VECTORS / f"{vector}.aio")])
    assert d["from_summary"] is False and d["warnings"] == [] and d["indexed"] is True
    assert sum(e["events"] for e in d["by_layer_op"]) == d["events"] > 0


def test_a_1_1_writer_writes_no_histograms_nor_summ(tmp_path: Path) -> None:
    path = mixed_capture(tmp_path / "old.aio", minor=1, chunks=2)
    data = path.read_bytes()
    assert SUMM not in data
    with aether_rec.open(str(path)) as cap:
        assert all(len(i.to_row()) == 12 for i in cap.chunk_infos()) and cap.warnings == []


# -- a damaged SUMM -------------------------------------------------------------------------------


def _summ_at(data: bytes) -> tuple[int, int]:
    """(offset of the SUMM block, offset of INDX) of a 1.2 capture."""
    index_at = parse_trailer(data[-TRAILER_SIZE:])
    assert index_at is not None
    total = struct.unpack_from("<I", data, index_at - 4)[0]
    assert data[index_at - total : index_at - total + 4] == SUMM
    return index_at - total, index_at


def _replace_summ(data: bytes, block: bytes) -> bytes:
    start, index_at = _summ_at(data)
    out = data[:start] + block + data[index_at:-TRAILER_SIZE]
    return out + trailer(start + len(block))


def _info_pair(tmp_path: Path, data: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    p = tmp_path / "bad.aio"
    p.write_bytes(data)
    runner = CliRunner()
    return _json(runner, ["info", "--json", str(p)]), _json(runner, ["info", "--json", "--scan", str(p)])


def _retyped(data: bytes, btype: bytes) -> bytes:
    start, index_at = _summ_at(data)
    payload = data[start + BLOCK_HEAD.size : index_at - 8]
    return _replace_summ(data, frame(btype, payload))


def _resummed(data: bytes, **changes: Any) -> bytes:
    start, index_at = _summ_at(data)
    doc = msgpack.unpackb(data[start + BLOCK_HEAD.size : index_at - 8], raw=False)
    doc.update(changes)
    return _replace_summ(data, frame(SUMM, pack(doc)))


@pytest.mark.parametrize("damage,warning", [
    ("crc", "summary block unusable (bad checksum"),
    ("type", "no summary block before the index"),
    ("events", "summary block unusable (summary histograms disagree"),
    ("hist", "summary block unusable (latency histograms"),
    ("length", "summary block unusable (its length field is wrong"),
])
def test_damaged_summ_falls_back_with_a_warning(tmp_path: Path, damage: str, warning: str) -> None:
    data = mixed_capture(tmp_path / "m.aio").read_bytes()
    start, index_at = _summ_at(data)
    if damage == "crc":
        bad = bytearray(data)
        bad[start + 20] ^= 0x40
        data = bytes(bad)
    elif damage == "type":
        data = _retyped(data, b"XTRA")
    elif damage == "events":
        data = _resummed(data, events=1)
    elif damage == "hist":
        data = _resummed(data, hist=b"\x00garbage")
    else:
        bad = bytearray(data)
        bad[index_at - 4 : index_at] = struct.pack("<I", index_at + 5)
        data = bytes(bad)
    fast, scanned = _info_pair(tmp_path, data)
    assert fast["from_summary"] is False and any(warning in w for w in fast["warnings"]), fast["warnings"]
    for k in ("events", "by_layer_op", "chunks", "lost", "lost_by_cpu", "unmatched", "first_ts", "last_ts",
              "start", "end"):
        assert fast[k] == scanned[k], k
    r = CliRunner().invoke(main, ["info", "--strict", str(tmp_path / "bad.aio")])
    assert "Traceback" not in r.output
    assert (r.exit_code != 0) == (damage != "type")  # a missing SUMM is allowed, damage is not


def test_verify_catches_a_summ_that_disagrees_with_the_index(tmp_path: Path) -> None:
    data = mixed_capture(tmp_path / "m.aio").read_bytes()
    start, index_at = _summ_at(data)
    doc = msgpack.unpackb(data[start + BLOCK_HEAD.size : index_at - 8], raw=False)
    doc["raw"] += 1
    p = tmp_path / "bad.aio"
    p.write_bytes(_replace_summ(data, frame(SUMM, pack(doc))))
    with aether_rec.open(str(p)) as cap:
        assert any("summary block" in x and "raw" in x for x in cap.verify())


def test_verify_catches_index_histograms_that_disagree(tmp_path: Path) -> None:
    path = mixed_capture(tmp_path / "m.aio", chunks=2)
    with aether_rec.open(str(path)) as cap:
        infos = cap.chunk_infos()
        other = infos[1].hist
    data = path.read_bytes()
    start, index_at = _summ_at(data)
    index = msgpack.unpackb(data[index_at + 8 : -TRAILER_SIZE - 8], raw=False)
    index["chunks"][0][12] = other
    p = tmp_path / "bad.aio"
    p.write_bytes(data[:index_at] + frame(INDX, pack(index)) + trailer(index_at))
    with aether_rec.open(str(p)) as cap:
        assert any("latency histograms disagree" in x for x in cap.verify())


# -- untrusted input ----------------------------------------------------------------------------


def _hist_doc(rows: list[Any], precision: Any = 8) -> bytes:
    return zstandard.ZstdCompressor().compress(msgpack.packb([precision, rows], use_bin_type=True))


GOOD_ROW = [1 << 16 | 1 << 8, 3, 30, 10, 10, 0, 0, 5, 15, 10, 1, b"\x03"]


def _u8(v: int) -> bytes:
    return v.to_bytes(8, "little")


@pytest.mark.parametrize("blob", [
    b"", b"not zstd", zstandard.ZstdCompressor().compress(b"\xc1"),
    _hist_doc([GOOD_ROW], precision=99), _hist_doc([GOOD_ROW], precision=1.5),
    _hist_doc([GOOD_ROW[:11]]), _hist_doc([[*GOOD_ROW[:10], 3, b"\x03"]]),  # width 3
    _hist_doc([[*GOOD_ROW[:1], 4, *GOOD_ROW[2:]]]),  # count != sum of buckets
    _hist_doc([[*GOOD_ROW[:9], 1 << 40, *GOOD_ROW[10:]]]),  # base far out
    _hist_doc([[*GOOD_ROW[:11], b"\x00" * 70000]]),  # too many buckets
    _hist_doc([[*GOOD_ROW[:11], b"\x00\x03"]]),  # a leading empty bucket
    _hist_doc([GOOD_ROW, GOOD_ROW]),  # a key twice
    _hist_doc([[*GOOD_ROW[:3], 20, 10, *GOOD_ROW[5:]]]),  # min > max
    _hist_doc([[*GOOD_ROW[:6], 9, *GOOD_ROW[7:]]]),  # more errors than events
    _hist_doc([["k", *GOOD_ROW[1:]]]), _hist_doc("rows"), _hist_doc([GOOD_ROW] * 70000),
    zstandard.ZstdCompressor().compress(b"\x00" * (5 << 20)),  # decompresses beyond the limit
    _hist_doc([[*GOOD_ROW[:11], b"\x03\x00"]]),  # a trailing empty bucket
    _hist_doc([[*GOOD_ROW[:1], 2**64 - 1, *GOOD_ROW[2:10], 8, b"\xff" * 8]]),  # a count of 2**63 or more
    _hist_doc([[*GOOD_ROW[:1], 2**63, *GOOD_ROW[2:10], 8, _u8(2**62) * 2]]),  # a total beyond int64
    _hist_doc([[*GOOD_ROW[:1], 4, *GOOD_ROW[2:10], 8, _u8(2**62 + 1) * 4]]),  # whose int64 sum wraps to 4
])
@pytest.mark.parametrize("arrays", [True, False], ids=["numpy", "python"])
def test_malformed_histograms_are_damage(blob: Any, arrays: bool) -> None:
    """Damage whichever way the counts are checked (arrays: an index's; Python: a SUMM block's)."""
    assert LatencyHist.decode(_hist_doc([GOOD_ROW]), arrays).total == 3
    with pytest.raises(DamagedCaptureError):
        LatencyHist.decode(blob, arrays)


def test_mutated_histograms_never_raise_anything_else() -> None:
    """...and both ways of checking the counts accept and refuse the same histograms."""
    rng = np.random.default_rng(0)
    c = random_chunk(rng, 3000)
    good = LatencyHist.from_chunk(c).encode()
    raw = zstandard.ZstdDecompressor().decompress(good)
    assert LatencyHist.decode(good, arrays=False).encode() == good
    accepted = refused = 0
    for k in range(300):
        b = bytearray(raw)
        for _ in range(1 + k % 4):
            b[int(rng.integers(0, len(b)))] = int(rng.integers(0, 256))
        got = []
        for arrays in (True, False):
            try:
                got.append(LatencyHist.decode(zstandard.ZstdCompressor().compress(bytes(b)), arrays).encode())
            except DamagedCaptureError as exc:
                got.append(f"refused: {exc}".encode())
        assert got[0] == got[1]
        refused += got[0].startswith(b"refused: ")
        accepted += not got[0].startswith(b"refused: ")
    assert accepted and refused > 100  # (deterministic: a fixed seed)


@pytest.mark.parametrize("doc", [
    None, [], {"chunks": -1}, {"chunks": 1, "events": 1, "compressed": 1, "raw": 1, "hist_chunks": 2},
    {"chunks": 1, "events": 1, "compressed": 1, "raw": 1, "hist_chunks": 0, "hist": b"x"},
    {"chunks": 0, "events": 0, "compressed": 0, "raw": 0, "hist_chunks": 0, "hist": LatencyHist().encode(),
     "losses": [[0, 1, 2, 3, 4, 5]]},
    {"chunks": 0, "events": 0, "compressed": 0, "raw": 0, "hist_chunks": 0, "hist": LatencyHist().encode(),
     "clock": [[1, 2, 3]]},
    {"chunks": 0, "events": 0, "compressed": 0, "raw": 0, "hist_chunks": 0, "hist": LatencyHist().encode(),
     "losses": "x"},
])
def test_malformed_summary_is_damage(doc: Any) -> None:
    with pytest.raises(DamagedCaptureError):
        CaptureSummary.from_doc(doc)


# -- writers ------------------------------------------------------------------------------------


def test_copies_keep_or_recompute_the_histograms(tmp_path: Path) -> None:
    src = mixed_capture(tmp_path / "m.aio")
    with aether_rec.open(str(src)) as cap:
        want = [LatencyHist.decode(i.hist).encode() for i in cap.chunk_infos()]  # type: ignore[arg-type]
    from aether_rec.ops.recover import recover
    from aether_rec.ops.redact import redact

    recover(str(src), str(tmp_path / "r.aio"))
    redact(str(src), str(tmp_path / "x.aio"), b"k" * 32)
    for name in ("r.aio", "x.aio"):
        with aether_rec.open(str(tmp_path / name)) as cap:
            got = [i.hist for i in cap.chunk_infos()]
            assert got == want, name
            s = cap.summary()
            assert s is not None and s.complete and cap.verify() == []
    # a 1.1 source: histograms computed for the 1.2 copy
    old = mixed_capture(tmp_path / "old.aio", minor=1)
    recover(str(old), str(tmp_path / "r11.aio"))
    with aether_rec.open(str(tmp_path / "r11.aio")) as cap:
        assert cap.minor == 2 and all(i.hist is not None for i in cap.chunk_infos())
        assert cap.summary() is not None and cap.verify() == []


def test_an_index_too_long_for_histograms_keeps_them_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(blocks, "MAX_BLOCK_PAYLOAD", 12_000)
    out = io.BytesIO()
    rng = np.random.default_rng(5)
    with CaptureWriter(out, {}, chunk_events=8) as w:
        for _ in range(100):
            w.write_events(random_chunk(rng, 8))
        w.flush()
    with aether_rec.open(io.BytesIO(out.getvalue())) as cap:
        assert cap.has_index and cap.warnings == [] and len(cap.chunk_infos()) == 100
        assert all(i.hist is None for i in cap.chunk_infos())
        summ = cap.summary()
        assert summ is not None and summ.complete and summ.events == 800
        fast = compute_from_index([cap], StatsOptions(all_fds=True))
        assert fast["from_index"]["chunks_read"] == 100 and fast["events"] == 800
        assert cap.verify() == []


def test_summ_block_sits_just_before_the_index(tmp_path: Path) -> None:
    data = mixed_capture(tmp_path / "m.aio", chunks=1).read_bytes()
    start, index_at = _summ_at(data)
    length = struct.unpack_from("<I", data, start + 4)[0]
    assert start + length + 16 == index_at and data[index_at : index_at + 4] == INDX
    crc = zlib.crc32(data[start + 8 : start + 8 + length], zlib.crc32(data[start : start + 8]))
    assert struct.unpack_from("<I", data, index_at - 8)[0] == crc


def test_histograms_beyond_the_limits_are_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """A writer never writes histograms a reader would refuse: the entry goes without them
    (the summary is then incomplete and info counts from the chunks)."""
    from aether_rec.format import summary as summary_mod

    monkeypatch.setattr(summary_mod, "MAX_HIST_GROUPS", 3)
    out = io.BytesIO()
    rng = np.random.default_rng(6)
    with CaptureWriter(out, {}, chunk_events=50) as w:
        c = random_chunk(rng, 50)
        c.columns["layer"] = np.full(50, 1, np.uint8)
        c.columns["op"] = np.full(50, 1, np.uint8)  # one group: fits
        w.write_events(c)
        w.write_events(random_chunk(rng, 50))  # ten groups: too many
    with aether_rec.open(io.BytesIO(out.getvalue())) as cap:
        assert [i.hist is not None for i in cap.chunk_infos()] == [True, False]
        s = cap.summary()
        assert s is not None and (s.chunks, s.hist_chunks, s.events) == (2, 1, 100) and not s.complete
        assert cap.warnings == [] and cap.verify() == []


@pytest.mark.parametrize("groups", [1, 2, 3, 8, 9, 40])
def test_chunk_histograms_equal_a_group_by_group_reference(
        groups: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A slice's histograms (histfill: events sorted by group once, each figure one
    reduction over the groups' runs; buckets in one bincount or a group at a time) equal
    the plainest computation: each group picked by a mask, its figures taken one by one."""
    import numpy as np

    from aether_rec.format import histfill, summary
    from aether_rec.format.chunk import Chunk

    rng = np.random.default_rng(groups)
    n = 20000
    layer = np.ones(n, np.uint8)
    op = rng.integers(0, 256, n).astype(np.uint8) % groups
    lat = rng.integers(0, 10**9, n).astype(np.uint64) >> rng.integers(0, 30, n).astype(np.uint64)
    lat[:3] = [0, 2**64 - 1, 2**63]  # extremes: ends saturate, sums wrap
    cols = {"ts": np.sort(rng.integers(0, 10**12, n)).astype(np.uint64), "lat": lat,
            "layer": layer, "op": op, "fdkind": rng.integers(0, 3, n).astype(np.uint8) * (groups > 3),
            "bytes": rng.integers(0, 1 << 20, n).astype(np.uint64),
            "result": rng.integers(-20, 4096, n).astype(np.int64)}
    chunk = Chunk(n, cols, {})

    want = summary.LatencyHist(summary.PRECISION)
    key = (cols["layer"].astype(np.int64) << 16) | (cols["op"].astype(np.int64) << 8) | cols["fdkind"]
    idx = summary.bucket_index(cols["lat"], want.precision)
    for k in np.unique(key).tolist():
        m = key == k
        lm, i, t = cols["lat"][m], idx[m], cols["ts"][m]
        ends = [min(int(a) + int(b), 2**64 - 1) for a, b in zip(t, lm)]
        res = cols["result"][m]
        lo = int(i.min())
        want.groups[k] = summary.GroupHist(
            int(m.sum()), sum(int(x) for x in lm) % 2**64, int(lm.min()), int(lm.max()),
            int(cols["bytes"][m].sum()), int(((res < 0) & (res != -summary.EAGAIN)).sum()),
            int(t.min()), max(ends), lo, np.bincount(i - lo).astype(np.int64))
    assert summary.LatencyHist.from_chunk(chunk).encode() == want.encode()
    monkeypatch.setattr(histfill, "DENSE_CELLS", 0)
    assert summary.LatencyHist.from_chunk(chunk).encode() == want.encode()
