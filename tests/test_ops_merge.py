"""merge: rotated pieces merge back into the whole; hosts align on wall-clock time; the same
capture twice is not double counted; the source column feeds stats --by source."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from ops_common import make_capture, read_all

import aether_rec
from aether_rec.cli import main
from aether_rec.errors import UsageError
from aether_rec.ops.filter import filter_capture
from aether_rec.ops.merge import MergeInput, merge_captures, parse_offsets
from aether_rec.ops.window import select

REAL0 = 1_767_225_600_000_000_000  # what the synthetic generator maps its start to


def _merge(paths: list[Path], out: Path, **kw: object) -> object:
    caps = [aether_rec.open(str(p)) for p in paths]
    try:
        return merge_captures(
            [MergeInput(c, str(p)) for c, p in zip(caps, paths)], str(out), overwrite=True, **kw
        )  # type: ignore[arg-type]
    finally:
        for c in caps:
            c.close()


def _pieces(src: Path, tmp: Path, cuts: list[str]) -> list[Path]:
    bounds = [None, *cuts, None]
    out = []
    for k in range(len(bounds) - 1):
        p = tmp / f"piece{k}.aio"
        with aether_rec.open(str(src)) as cap:
            filter_capture(cap, str(p), select(cap, [], bounds[k], bounds[k + 1]), overwrite=True)
        out.append(p)
    return out


@pytest.fixture(scope="module")
def whole(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_capture(
        tmp_path_factory.mktemp("merge") / "whole.aio", 250_000, seed=4, losses=4, chunk_events=30_000
    )


def test_rotated_pieces_merge_back_into_the_whole(tmp_path: Path, whole: Path) -> None:
    pieces = _pieces(whole, tmp_path, ["+0.3s", "+0.71s", "+1.0s"])
    out = tmp_path / "merged.aio"
    rep = _merge(list(reversed(pieces)), out)  # order of the arguments does not matter
    a, m = read_all(whole), read_all(out)
    # one source: no source column (it would be constant); the header names the host
    assert set(m) == set(a)
    for k in a:
        np.testing.assert_array_equal(m[k], a[k], err_msg=k)
    assert rep.duplicate_chunks == 0  # type: ignore[attr-defined]
    assert rep.chunks_copied > 0  # type: ignore[attr-defined]  # pieces do not overlap: copied whole
    r = CliRunner().invoke(main, ["stats", str(out), "--by", "source", "--json"])
    host = aether_rec.open(str(whole)).header["hostname"]
    assert [row["key"]["source"] for row in json.loads(r.stdout)["groups"]["rows"]] == [host]
    with aether_rec.open(str(out)) as mc, aether_rec.open(str(whole)) as wc:
        lost = sorted((x.cpu, x.count, x.t_first) for x in mc.losses())
        assert lost == sorted((x.cpu, x.count, x.t_first) for x in wc.losses())
        assert [s["shift_ns"] for s in mc.header["sources"]] == [0, 0, 0, 0]


def test_merge_of_merges_keeps_sources(tmp_path: Path) -> None:
    a = _host(tmp_path, "m1", 1_000_000_000_000, REAL0, 1)
    b = _host(tmp_path, "m2", 2_000_000_000_000, REAL0 + 1_000, 2)
    c = _host(tmp_path, "m3", 3_000_000_000_000, REAL0 + 500_000_000, 3)
    ab = tmp_path / "ab.aio"
    _merge([a, b], ab)
    abc = tmp_path / "abc.aio"
    _merge([ab, c], abc)
    m = read_all(abc)
    assert Counter(m["source"].tolist()) == {"m1": 20_000, "m2": 20_000, "m3": 20_000}
    assert np.all(np.diff(m["ts"].astype(np.int64)) >= 0)


def test_same_capture_twice_is_not_double_counted(tmp_path: Path, whole: Path) -> None:
    out = tmp_path / "twice.aio"
    rep = _merge([whole, whole], out)
    assert rep.duplicate_events == 250_000  # type: ignore[attr-defined]
    m = read_all(out)
    np.testing.assert_array_equal(m["ts"], read_all(whole)["ts"])


def test_overlapping_copies_detected(tmp_path: Path, whole: Path) -> None:
    copy = tmp_path / "copy.aio"
    copy.write_bytes(whole.read_bytes())  # a copy of the file: same capture id, same chunks
    out = tmp_path / "o.aio"
    _merge([whole, copy], out)
    assert read_all(out)["ts"].size == 250_000


def _host(tmp: Path, name: str, mono0: int, real0: int, seed: int) -> Path:
    return make_capture(
        tmp / f"{name}.aio",
        20_000,
        seed=seed,
        start_ns=mono0,
        header={"hostname": name, "clock": [[mono0, real0]]},
    )


def test_hosts_align_on_wall_clock(tmp_path: Path) -> None:
    a = _host(tmp_path, "db1", 5_000_000_000_000, REAL0, 1)
    b = _host(tmp_path, "db2", 9_000_000_000, REAL0 + 20_000_000, 2)  # booted later, starts 20 ms later
    out = tmp_path / "fleet.aio"
    rep = _merge([a, b], out)
    with aether_rec.open(str(out)) as cap:
        m = cap.to_numpy()
        real = cap.mono_to_real(m["ts"].astype(np.int64))
    assert np.all(np.diff(m["ts"].astype(np.int64)) >= 0)
    for path, host in ((a, "db1"), (b, "db2")):
        with aether_rec.open(str(path)) as cap:
            want = np.sort(cap.mono_to_real(cap.to_numpy()["ts"].astype(np.int64)))
        np.testing.assert_array_equal(np.sort(real[m["source"] == host]), want)
    assert rep.reference == 0  # type: ignore[attr-defined]  # db1 booted first: every shift >= 0
    # stats --by source sees both hosts
    r = CliRunner().invoke(main, ["stats", str(out), "--by", "source", "--json"])
    doc = json.loads(r.stdout)
    assert {row["key"]["source"]: row["events"] for row in doc["groups"]["rows"]} == {
        "db1": 20_000,
        "db2": 20_000,
    }


def test_no_align_and_manual_offset(tmp_path: Path) -> None:
    a = _host(tmp_path, "h1", 1_000_000_000_000, REAL0, 1)
    b = _host(tmp_path, "h2", 1_000_000_000_000, REAL0 + 5_000_000_000, 2)
    out = tmp_path / "n.aio"
    _merge([a, b], out, align=False, offsets={1: 12_000_000})
    m = read_all(out)
    tb = np.sort(read_all(b)["ts"])
    np.testing.assert_array_equal(np.sort(m["ts"][m["source"] == "h2"]), tb + 12_000_000)
    np.testing.assert_array_equal(np.sort(m["ts"][m["source"] == "h1"]), np.sort(read_all(a)["ts"]))


def test_parse_offsets() -> None:
    labels = ["dir/a.aio", "b.aio"]
    assert parse_offsets(["b.aio=+12ms", "a.aio=-1s"], labels) == {1: 12_000_000, 0: -1_000_000_000}
    with pytest.raises(UsageError, match="not one of the inputs"):
        parse_offsets(["c.aio=+1ms"], labels)
    with pytest.raises(UsageError, match="expected FILE"):
        parse_offsets(["+1ms"], labels)
    with pytest.raises(UsageError, match="bad unit"):
        parse_offsets(["b.aio=+1parsec"], labels)


def test_merge_cli(tmp_path: Path, whole: Path) -> None:
    out = tmp_path / "c.aio"
    r = CliRunner().invoke(main, ["merge", str(whole), str(whole), "-o", str(out)])
    assert r.exit_code == 0, r.stderr
    assert "already taken from an earlier input" in r.stderr and r.stdout == ""
    r = CliRunner().invoke(
        main, ["merge", str(whole), "-o", str(tmp_path / "d.aio"), "--offset", "x.aio=+1ms"]
    )
    assert r.exit_code == 2 and "not one of the inputs" in r.stderr
    r = CliRunner().invoke(
        main, ["merge", str(whole), str(tmp_path / "nope.aio"), "-o", str(tmp_path / "e.aio")]
    )
    assert r.exit_code == 1 and "no such file" in r.stderr


def test_merge_parts_equals_concat_then_stable_sort() -> None:
    from ops_common import random_chunk

    from aether_rec.format.chunk import Chunk
    from aether_rec.ops.merge import merge_parts

    rng = np.random.default_rng(2)
    parts = [random_chunk(rng, n) for n in (50, 1, 200)]
    parts[1].columns.pop("path")  # a part without a string column reads as ""
    parts[1].dicts.pop("path")
    got = merge_parts(parts)
    whole = Chunk.concat(parts)
    want = whole.take(np.argsort(whole.column("ts"), kind="stable"))
    for name in want.columns:
        if name in want.dicts:
            np.testing.assert_array_equal(got.strings(name), want.strings(name), err_msg=name)
        else:
            np.testing.assert_array_equal(got.column(name), want.column(name), err_msg=name)


def test_merged_chunks_are_in_time_order_in_the_file(tmp_path: Path) -> None:
    """Two hosts recording at the same time: their events interleave, so every batch is
    merged, not copied. The output's chunks, in file order, must follow each other in time
    (no overlap to re-sort at read time, no warning), not only read back sorted."""
    a, b = (make_capture(tmp_path / f"{name}.aio", 150_000, seed=seed, start_ns=mono0,
                         header={"hostname": name, "clock": [[mono0, REAL0 + seed * 1_000]]})
            for name, mono0, seed in (("db1", 5_000_000_000_000, 1), ("db2", 9_000_000_000, 2)))
    out = tmp_path / "fleet.aio"
    rep = _merge([a, b], out)
    assert rep.chunks_copied == 0  # type: ignore[attr-defined]
    with aether_rec.open(str(out)) as cap:
        infos = cap.chunk_infos()
        assert len(infos) >= 2
        spans = [(i.t_first, i.t_last) for i in infos]
        assert all(x[1] <= y[0] for x, y in zip(spans, spans[1:])), spans
        unordered = np.concatenate([c.column("ts") for c in cap.chunks(ordered=False)])
        assert np.all(np.diff(unordered.astype(np.int64)) >= 0)
        assert cap.n_events == 300_000 and cap.warnings == []
