"""The committed real-kernel captures in fixtures/ are what fixtures/README.md says."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import aether_rec
from aether_rec.schema import LAYER_CODE, OP_CODE

FIX = Path(__file__).resolve().parents[1] / "fixtures"


def _open(name: str) -> aether_rec.Capture:
    cap = aether_rec.open(str(FIX / name))
    assert cap.has_index and not cap.warnings
    return cap


def test_fixtures_are_small() -> None:
    for f in FIX.glob("*.aio"):
        assert f.stat().st_size < 1 << 20, f


def test_mixed_has_both_layers_with_names() -> None:
    with _open("mixed.aio") as cap:
        ev = cap.to_numpy()
        assert cap.lost == 0
        layers = set(ev["layer"].tolist())
        assert {LAYER_CODE["syscall"], LAYER_CODE["block"]} <= layers
        blk = ev["layer"] == LAYER_CODE["block"]
        assert (ev["lat"][blk] >= ev["queue"][blk]).all()
        assert (ev["queue"][blk] > 0).any()
        assert set(ev["path"][blk].tolist()) == {"vda"}
        sc = ev["layer"] == LAYER_CODE["syscall"]
        direct = sc & (ev["op"] == OP_CODE["pwrite"])
        assert direct.any() and (ev["flags"][direct] & (1 << 5)).all()
        assert any(p.startswith("/work/.aether-workload-") for p in ev["path"][sc].tolist())
        assert cap.meta("procs") and cap.meta("fds") and cap.meta("devices") and cap.meta("clock")
        assert cap.header["layers"] == ["syscall", "block"]
        assert "vfs" in cap.header["layers_unavailable"]
        assert cap.index_stats["final"] is True


def test_losses_fixture_has_perf_buffer_loss_blocks() -> None:
    with _open("losses.aio") as cap:
        losses = cap.losses()
        assert losses and all(x.kind == "perf_buffer" for x in losses)
        assert cap.lost > 2 * cap.n_events
        assert all(x.t_first <= x.t_last for x in losses)
        assert cap.header["transport"] == "perf_buffer"
        assert cap.n_events + cap.lost >= 110_000


def test_rotated_pair_is_one_recording_in_two_files() -> None:
    with _open("rotated.0001.aio") as a, _open("rotated.0002.aio") as b:
        assert a.header["rotation"] == {"index": 1} and b.header["rotation"] == {"index": 2}
        assert a.header["command"] == b.header["command"]
        assert a.index_stats["stop_reason"] == "rotated"
        assert b.index_stats["final"] is True
        ta, tb = a.to_numpy(["ts"])["ts"], b.to_numpy(["ts"])["ts"]
        assert int(np.max(ta)) <= int(np.min(tb)) + 50_000_000  # b follows a
        assert b.meta("procs")  # names repeated: each file reads on its own


def test_truth_fixture_has_the_1_1_columns_filled_by_the_kernel() -> None:
    """fixtures/truth.aio (format 1.1): io_uring requests with their file, block requests
    linked to the call that issued them, a flush owned by dd's fdatasync, a cold and a warm
    read of the same file, a pipe."""
    from aether_rec.schema import FD_KIND_CODE

    with _open("truth.aio") as cap:
        assert (cap.major, cap.minor) == (1, 1) and cap.lost == 0
        ev = cap.to_numpy()
    path = np.array(ev["path"], dtype=object)
    comm = np.array(ev["comm"], dtype=object)
    uring = ev["layer"] == LAYER_CODE["io_uring"]
    assert uring.sum() >= 1900 and set(path[uring].tolist()) == {"/work/.aether-fx"}
    blk = ev["layer"] == LAYER_CODE["block"]
    linked = blk & (ev["link"] != 0)
    # fio's direct requests are linked to the io_uring requests that issued them (and the
    # few of its file layout to its write syscalls)
    fio_blk = linked & (comm == "fio")
    to_uring = set(zip(ev["tid"][uring].tolist(), ev["ts"][uring].tolist()))
    sc = ev["layer"] == LAYER_CODE["syscall"]
    to_any = to_uring | set(zip(ev["tid"][sc].tolist(), ev["ts"][sc].tolist()))
    pairs = list(zip(ev["tid"][fio_blk].tolist(), ev["link"][fio_blk].tolist()))
    assert sum(k in to_uring for k in pairs) >= 1900 and all(k in to_any for k in pairs)
    flush = blk & (ev["op"] == OP_CODE["flush"]) & (comm == "dd")
    assert flush.any() and (path[flush] == "/work/.aether-fx2").all()
    reads = (ev["layer"] == LAYER_CODE["syscall"]) & (path == "/work/.aether-fx") & (comm == "cat")
    pids = sorted(set(ev["pid"][reads].tolist()))
    assert len(pids) == 2  # the cold cat, then the warm one
    cold, warm = (reads & (ev["pid"] == p) for p in pids)
    assert ev["pages_missed"][cold].sum() >= 0.99 * (8 << 20) // 4096
    assert ev["pages_missed"][warm].sum() == 0
    assert (ev["fdkind"][reads] == FD_KIND_CODE["file"]).all()
    assert (ev["fdkind"] == FD_KIND_CODE["pipe"]).any()
