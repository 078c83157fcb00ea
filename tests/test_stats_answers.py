"""``stats`` answers against an oracle computed with plain numpy from every event.

Each test pins a behaviour a planted mutant once got past the suite with: the block
queue-time histogram counting requests that were never queued, per-interval and
per-group error counts, the service time, the --top order, the span's end, errnos,
--max-groups keeping the largest groups, and --by op keeping layers apart.
"""

from __future__ import annotations

import errno
from pathlib import Path

import numpy as np
import pytest
from ops_common import make_undecodable

import aether_rec
from aether_rec.format.writer import CaptureWriter
from aether_rec.ops.stats import StatsOptions, compute
from aether_rec.schema import FLAGS, LAYER_CODE, OP_CODE

QUEUED = next(bit for bit, name in FLAGS.items() if name == "queued")
BLOCK, SYSCALL = LAYER_CODE["block"], LAYER_CODE["syscall"]
N = 6000


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(11)
    path = tmp_path_factory.mktemp("answers") / "a.aio"
    ts = 10**12 + np.cumsum(rng.integers(1_000, 2_000_000, N)).astype(np.uint64)
    layer = np.where(rng.random(N) < 0.4, BLOCK, SYSCALL).astype(np.uint8)
    op = np.where(rng.random(N) < 0.5, OP_CODE["read"], OP_CODE["write"]).astype(np.uint8)
    lat = rng.integers(1_000, 9_000_000, N).astype(np.uint64)
    queued = (layer == BLOCK) & (rng.random(N) < 0.5)  # half the block requests never queued
    queue = np.where(queued, lat // np.uint64(3), 0).astype(np.uint64)
    flags = np.where(queued & (rng.random(N) < 0.5), QUEUED, 0).astype(np.uint32)
    result = np.where(rng.random(N) < 0.05, -rng.choice([5, 11, 28], N), 4096).astype(np.int64)
    # pid 7 has most events but appears late: first-seen order is not size order
    pid = np.where(np.arange(N) < N // 3, rng.integers(1, 5, N), 7).astype(np.uint32)
    comm = np.array(["a", "b", "c"], dtype=object)[rng.integers(0, 3, N)]
    with CaptureWriter(str(path), {"clock": [[10**12, 1_767_225_600 * 10**9]]}, chunk_events=700) as w:
        w.write_events({"ts": ts, "lat": lat, "layer": layer, "op": op, "queue": queue, "flags": flags,
                        "result": result, "pid": pid, "tid": pid, "comm": comm,
                        "bytes": np.full(N, 4096, np.uint64)})
    return path


@pytest.fixture(scope="module")
def data(capture: Path) -> dict[str, np.ndarray]:
    with aether_rec.open(str(capture)) as cap:
        return cap.to_numpy()


def _stats(capture: Path, **kw: object) -> dict:  # type: ignore[type-arg]
    with aether_rec.open(str(capture)) as cap:
        return compute([cap], StatsOptions(**kw))  # type: ignore[arg-type]


def test_queue_time_counts_only_queued_requests(capture: Path, data: dict[str, np.ndarray]) -> None:
    doc = _stats(capture)
    blk = data["layer"] == BLOCK
    queued = blk & (((data["flags"] & QUEUED) != 0) | (data["queue"] > 0))
    assert 0 < queued.sum() < blk.sum()
    block = doc["block"]
    assert block["events"] == int(blk.sum())
    assert block["queued_events"] == int(queued.sum()) == block["queue"]["count"]
    assert block["queue"]["min"] == int(data["queue"][queued].min()) > 0
    assert block["queue"]["max"] == int(data["queue"][queued].max())
    service = data["lat"][blk] - np.minimum(data["queue"][blk], data["lat"][blk])
    assert block["service"]["count"] == int(blk.sum())
    assert block["service"]["min"] == int(service.min()) and block["service"]["max"] == int(service.max())


def _err(result: np.ndarray) -> np.ndarray:
    """What stats counts as an error: a negative result other than -EAGAIN (a non-blocking
    call that would have waited is not a failure; stats counts those apart)."""
    return (result < 0) & (result != -errno.EAGAIN)


def test_interval_rows_count_events_bytes_and_errors(capture: Path, data: dict[str, np.ndarray]) -> None:
    iv = 500_000_000
    doc = _stats(capture, interval_ns=iv)
    real = data["ts"].astype(np.int64) - 10**12 + 1_767_225_600 * 10**9
    origin = (int(real.min()) // iv) * iv
    bucket = (real - origin) // iv
    rows = doc["intervals"]["rows"]
    assert len(rows) == int(bucket.max()) + 1
    for b, row in enumerate(rows):
        sel = bucket == b
        assert row["start_ns"] == origin + b * iv
        assert row["events"] == int(sel.sum())
        assert row["errors"] == int(_err(data["result"][sel]).sum())
        assert row["bytes"] == int(data["bytes"][sel].sum())
    assert sum(r["errors"] for r in rows) == int(_err(data["result"]).sum()) > 0


def test_interval_errors_in_a_single_interval(capture: Path, data: dict[str, np.ndarray]) -> None:
    """An interval longer than the capture: every chunk is in one bucket (the single-group path)."""
    doc = _stats(capture, interval_ns=10**13)
    (row,) = doc["intervals"]["rows"]
    assert row["errors"] == int(_err(data["result"]).sum()) and row["events"] == N


def test_groups_count_their_own_events_and_errors(capture: Path, data: dict[str, np.ndarray]) -> None:
    doc = _stats(capture, by=["comm"])
    for row in doc["groups"]["rows"]:
        sel = data["comm"] == row["key"]["comm"]
        assert row["events"] == int(sel.sum())
        assert row["errors"] == int(_err(data["result"][sel]).sum())
        assert row["latency"]["max"] == int(data["lat"][sel].max())


def test_max_groups_keeps_the_largest_groups(capture: Path, data: dict[str, np.ndarray]) -> None:
    doc = _stats(capture, by=["pid"], max_groups=2)
    pids, counts = np.unique(data["pid"], return_counts=True)
    order = np.argsort(-counts, kind="stable")
    want = [int(pids[i]) for i in order[:2]]
    rows = doc["groups"]["rows"]
    kept = [r["key"]["pid"] for r in rows if r["key"]["pid"] != "(other)"]
    assert kept == want and want[0] == 7
    other = next(r for r in rows if r["key"]["pid"] == "(other)")
    assert other["events"] == doc["groups"]["lumped_events"] == int(counts[order[2:]].sum())
    assert sum(r["events"] for r in rows) == N


def test_by_op_keeps_layers_apart(capture: Path, data: dict[str, np.ndarray]) -> None:
    doc = _stats(capture, by=["op"])
    rows = doc["groups"]["rows"]
    assert {tuple(sorted(r["key"])) for r in rows} == {("layer", "op")}
    for r in rows:
        sel = (data["op"] == OP_CODE[r["key"]["op"]]) & (data["layer"] == LAYER_CODE[r["key"]["layer"]])
        assert r["events"] == int(sel.sum()) and r["bytes"] == int(data["bytes"][sel].sum())
    assert len(rows) == 4 and sum(r["bytes"] for r in rows) == int(data["bytes"].sum())


def test_top_is_the_slowest_in_order(capture: Path, data: dict[str, np.ndarray]) -> None:
    doc = _stats(capture, top=25)
    got = [r["lat"] for r in doc["top"]]
    assert got == sorted(data["lat"].tolist(), reverse=True)[:25]


def test_span_ends_when_the_last_io_ends(capture: Path, data: dict[str, np.ndarray]) -> None:
    doc = _stats(capture)
    end = int((data["ts"] + data["lat"]).max()) - 10**12 + 1_767_225_600 * 10**9
    assert doc["span"]["end_ns"] == end
    assert doc["span"]["start_ns"] == int(data["ts"].min()) - 10**12 + 1_767_225_600 * 10**9


def test_errnos_are_named_and_counted(capture: Path, data: dict[str, np.ndarray]) -> None:
    doc = _stats(capture)
    codes, counts = np.unique(-data["result"][_err(data["result"])], return_counts=True)
    assert {e["errno"]: e["count"] for e in doc["errnos"]} == dict(zip(codes.tolist(), counts.tolist()))
    assert {e["name"] for e in doc["errnos"]} == {"EIO", "ENOSPC"}
    assert doc["would_block"] == int((data["result"] == -errno.EAGAIN).sum()) > 0


def test_storage_first_and_the_page_cache(tmp_path: Path) -> None:
    """Format 1.1 columns: I/O on fds that are not storage is left out and counted by kind
    (--all-fds keeps it); the page-cache figures are the reads' pages and misses."""
    from aether_rec.schema import FD_KIND_CODE

    rng = np.random.default_rng(5)
    n = 3000
    kinds = np.array([FD_KIND_CODE[k] for k in ("file", "pipe", "tty", "socket", "unknown", "blockdev")],
                     dtype=np.uint8)[rng.integers(0, 6, n)]
    op = np.where(rng.random(n) < 0.7, OP_CODE["read"], OP_CODE["write"]).astype(np.uint8)
    result = rng.integers(1, 3 * 4096, n).astype(np.int64)
    missed = rng.integers(0, 3, n).astype(np.uint32)
    path = tmp_path / "k.aio"
    with CaptureWriter(str(path), chunk_events=500) as w:
        ts = 10**12 + np.arange(n, dtype=np.uint64) * 1000
        w.write_events({"ts": ts, "lat": np.full(n, 5000, np.uint64), "layer": np.full(n, SYSCALL, np.uint8),
                        "op": op, "result": result, "bytes": result.astype(np.uint64), "fdkind": kinds,
                        "pages_missed": missed})
    storage = np.isin(kinds, [FD_KIND_CODE[k] for k in ("file", "unknown", "blockdev")])
    doc = _stats(path)
    assert doc["events"] == int(storage.sum())
    names = {v: k for k, v in FD_KIND_CODE.items()}
    want = {names[int(k)]: int(c) for k, c in zip(*np.unique(kinds[~storage], return_counts=True))}
    assert doc["not_storage"] == {"events": int((~storage).sum()), "by_kind": want}
    reads = storage & (op == OP_CODE["read"])
    pages = int(((result[reads] + 4095) // 4096).sum())
    assert doc["page_cache"]["read_pages"] == pages
    assert doc["page_cache"]["missed_pages"] == int(missed[reads].sum())
    assert doc["page_cache"]["hit_ratio"] == pytest.approx(1 - missed[reads].sum() / pages)
    every = _stats(path, all_fds=True)
    assert every["events"] == n and every["not_storage"] is None


@pytest.mark.parametrize(
    "by", [["layer"], ["op"], ["layer", "op"], ["comm", "op"], ["pid"], ["queue", "lat"]]
)
def test_group_rows_are_their_events(capture: Path, data: dict[str, np.ndarray], by: list[str]) -> None:
    """Every --by row against numpy: the groups merged from the (layer, op) partition
    (by layer and/or op), the ones grouped by dense ids (comm, pid) and by sorting (queue
    and lat: more combined keys than 65536)."""
    from aether_rec.ops.histogram import Histogram
    from aether_rec.schema import LAYERS, OPS

    doc = _stats(capture, by=by, max_groups=100_000)
    names = {"layer": LAYERS, "op": OPS}
    rows = doc["groups"]["rows"]
    assert sum(r["events"] for r in rows) == N
    for r in rows:
        sel = np.ones(N, dtype=bool)
        for name, value in r["key"].items():
            col = data[name]
            if name in names:
                sel &= col == next(k for k, v in names[name].items() if v == value)
            else:
                sel &= col == value
        h = Histogram()
        h.add(data["lat"][sel])
        assert r["events"] == int(sel.sum()) > 0
        assert r["bytes"] == int(data["bytes"][sel].sum())
        assert r["errors"] == int(_err(data["result"][sel]).sum())
        assert r["latency"] == h.summary()


def test_top_rows_are_whole_events(capture: Path, data: dict[str, np.ndarray]) -> None:
    """The --top rows come from chunks decoded in part: every field is the event's."""
    doc = _stats(capture, top=15)
    order = np.argsort(-data["lat"].astype(np.int64), kind="stable")[:15]
    for row, i in zip(doc["top"], order.tolist()):
        assert (row["lat"], row["comm"], row["pid"], row["result"], row["queue"]) == (
            int(data["lat"][i]), data["comm"][i], int(data["pid"][i]), int(data["result"][i]),
            int(data["queue"][i]))


def test_undecodable_chunks_are_warned_in_file_order(
    capture: Path, data: dict[str, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks are decoded on two threads; a chunk that fails is skipped with its warning,
    given in file order (and raised with --strict)."""
    from aether_rec.errors import DamagedCaptureError

    with aether_rec.open(str(capture)) as cap:
        infos = cap.chunk_infos()
    bad = {infos[1].offset, infos[4].offset}
    make_undecodable(monkeypatch, bad)
    doc = _stats(capture)
    skipped = sum(i.n for i in infos if i.offset in bad)
    assert doc["events"] == N - skipped
    want = [f"chunk at offset {o}: column 'lat' runs past the chunk body; skipped it" for o in sorted(bad)]
    assert [w.split(": ", 1)[1] for w in doc["warnings"]] == want
    with aether_rec.open(str(capture), strict=True) as cap:
        with pytest.raises(DamagedCaptureError, match="skipped it"):
            compute([cap], StatsOptions())
