"""Hostile and damaged captures: a seeded fuzz run, decompression and size bombs, and
regression tests for every crash the fuzzing found.

The fuzz run (tests/fuzzing.py) mutates, truncates and splices synthetic captures, the
golden vectors and the recorded fixtures; every case must end in a CaptureError or a
read with warnings, never another exception, never a hang, with bounded memory. A
longer run: ``.venv/bin/python bench/fuzz_captures.py --cases 100000``.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from typing import Any

import msgpack
import numpy as np
import pytest
from fuzzing import (
    SCRIPT,
    FuzzRunner,
    blocks_of,
    default_seeds,
    exercise,
    make_case,
    reframe,
)

from aether_rec.errors import CaptureError
from aether_rec.format.blocks import CHNK, HEAD, INDX, LOSS, META, TRLR
from aether_rec.format.reader import Capture
from aether_rec.format.synth import generate
from aether_rec.ops.info import capture_info, format_info
from aether_rec.ops.recover import recover

CASES = int(os.environ.get("AETHER_FUZZ_CASES", "2000"))
PEAK_MB = 300


@pytest.fixture(scope="module")
def seeds() -> list[tuple[str, bytes]]:
    return default_seeds()


def test_fuzz_run_ends_cleanly(seeds: list[tuple[str, bytes]]) -> None:
    with FuzzRunner(seeds, seed=0, budget=20.0) as runner:
        rep = runner.run(range(CASES))
    print(rep.summary())
    msgs = [f"case {f['case']} ({f['desc']}): {f['kind']}: {f['detail'][-600:]}" for f in rep.failures]
    assert not msgs, "\n\n".join(msgs[:5])
    assert rep.cases == CASES
    # The run must reach the decoders, not only bounce off checksums.
    assert rep.counts["partial"] > CASES // 4 and rep.counts["error"] > CASES // 20
    assert rep.peak_kb < PEAK_MB * 1024, rep.summary()


def test_cases_are_deterministic(seeds: list[tuple[str, bytes]]) -> None:
    assert [make_case(seeds, 5, i) for i in range(20)] == [make_case(seeds, 5, i) for i in range(20)]
    assert make_case(seeds, 5, 1) != make_case(seeds, 6, 1)


def test_runner_reports_hangs_and_dead_workers(seeds: list[tuple[str, bytes]]) -> None:
    """The watchdog: a worker that does not answer in time is killed, the case is a hang,
    and the next case runs in a new worker."""
    with FuzzRunner(seeds[:1], seed=0, budget=0.0001) as runner:
        rep = runner.run(range(2))
    assert rep.counts["hang"] >= 1 and rep.cases == 2


# -- regression tests for crashes the fuzzing found ---------------------------------------
def _capture(n: int = 2000, **kw: Any) -> bytes:
    buf = io.BytesIO()
    generate(buf, n, seed=1, batch=500, chunk_events=500, **kw)
    return buf.getvalue()


def _edit(data: bytes, btype: bytes, edit: Any, which: int = 0, drop_index: bool = True) -> bytes:
    """``data`` with the ``which``-th block of type ``btype`` replaced by
    ``reframe(btype, edit(payload))`` (checksum valid), the index dropped if asked."""
    blocks = blocks_of(data)
    if drop_index:
        cut = next(b.offset for b in blocks if b.type == INDX)
        blocks = [b for b in blocks if b.offset < cut]
        data = data[:cut]
    blk = [b for b in blocks if b.type == btype][which]
    return data[: blk.offset] + reframe(btype, edit(blk.payload)) + data[blk.end :]


def _summary_edit(**fields: Any) -> Any:
    def edit(payload: bytes) -> bytes:
        slen = int.from_bytes(payload[:4], "little")
        summ = msgpack.unpackb(payload[4 : 4 + slen])
        summ.update(fields)
        s = msgpack.packb(summ)
        return len(s).to_bytes(4, "little") + s + payload[4 + slen :]
    return edit


def _doc_edit(**fields: Any) -> Any:
    def edit(payload: bytes) -> bytes:
        doc = msgpack.unpackb(payload, strict_map_key=False)
        doc.update(fields)
        return msgpack.packb(doc)
    return edit


def _run(tmp_path: Any, data: bytes) -> str:
    path = tmp_path / "case.aio"
    path.write_bytes(data)
    res = exercise(str(path))
    assert res.kind in ("ok", "partial", "error"), res.detail
    return res.kind


@pytest.mark.parametrize("fields", [
    {"pids": [float("inf")]},   # int(inf): OverflowError
    {"pids": [[1]]},            # int([1]): TypeError escaped verify()
    {"pids": [b""]},            # int(b""): ValueError escaped verify()
    {"lat_max": 1e308},
    {"layers": "7"},
    {"t1": 2**64 - 1},          # mono_to_real of a ts beyond int64
    {"n": True},                # isinstance(True, int): np.empty(True) raised TypeError
])
def test_hostile_chunk_summary_fields_skip_the_chunk(tmp_path: Any, fields: dict[str, Any]) -> None:
    data = _edit(_capture(), CHNK, _summary_edit(**fields), which=1)
    assert _run(tmp_path, data) == "partial"
    with Capture(io.BytesIO(data)) as cap:
        cap.chunk_infos()
        problems = cap.verify()
    assert problems


def test_hostile_loss_block_is_skipped_and_recover_survives(tmp_path: Any) -> None:
    data = _edit(_capture(losses=2), LOSS, _doc_edit(count=float("inf"), t0=1e308))
    assert _run(tmp_path, data) == "partial"
    src = tmp_path / "in.aio"
    src.write_bytes(data)
    out = io.BytesIO()
    rep = recover(str(src), out)
    assert any("loss" in d for d in rep.damaged)
    with Capture(io.BytesIO(out.getvalue())) as cap:
        assert cap.n_events == 2000 and len(cap.losses()) == 1


def test_index_meta_offset_outside_the_file_falls_back_to_scanning(tmp_path: Any) -> None:
    def edit(payload: bytes) -> bytes:
        index = msgpack.unpackb(payload, strict_map_key=False)
        index["meta"][0][0] = -5  # seek(-5) raised OSError from meta()
        return msgpack.packb(index)

    data = _edit(_capture(), INDX, edit, drop_index=False)
    with Capture(io.BytesIO(data)) as cap:
        assert not cap.has_index
        assert [r["comm"] for r in cap.meta("procs")][:2] == ["postgres", "nginx"]
        assert any("index points outside" in w for w in cap.warnings)


@pytest.mark.parametrize("hooks", [5, 2.5, {"a": 1}, "kprobe", [None, {"hook": 1}]])
def test_info_renders_any_header(tmp_path: Any, hooks: Any) -> None:
    data = _edit(_capture(), HEAD, _doc_edit(hooks=hooks, command=7, hostname="evil\x1b]0;pwned\x07\nX"),
                 drop_index=False)
    with Capture(io.BytesIO(data)) as cap:
        text = format_info(capture_info(cap, verify=True))
    assert "\x1b" not in text and "\x07" not in text
    assert "evil\\x1b]0;pwned\\x07\\nX" in text


def test_trailer_and_meta_types_are_exercised(seeds: list[tuple[str, bytes]]) -> None:
    """The seed corpus holds every block kind, so mutations can reach each decoder."""
    kinds = {b.type for _, data in seeds for b in blocks_of(data)}
    assert {HEAD, CHNK, LOSS, META, INDX, TRLR} <= kinds


# -- decompression bombs and huge declared sizes ------------------------------------------------
def test_bombs_are_refused_with_bounded_memory() -> None:
    """Each bomb runs in one fresh child process; VmHWM (its own peak, not ru_maxrss,
    which Linux carries across fork and exec) is read after each."""
    proc = subprocess.run(
        [sys.executable, SCRIPT, "bombs"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(results) >= 8
    report = "\n".join(
        f"{r['name']}: {r['kind']} {r['secs']:.2f}s {r['hwm_kb'] // 1024} MB {r['detail'][:120]}"
        for r in results
    )
    print(report)
    for r in results:
        assert r["kind"] in ("error", "partial"), report
        assert r["hwm_kb"] < r["budget_mb"] * 1024, report
        assert r["secs"] < 20, report


def test_clean_error_class_for_a_non_capture(tmp_path: Any) -> None:
    p = tmp_path / "x.aio"
    p.write_bytes(b"GIF89a" + b"\0" * 100)
    with pytest.raises(CaptureError):
        Capture(str(p))


def test_ordered_reading_caps_what_it_holds_back(monkeypatch: Any) -> None:
    """Chunks that all overlap in time: past MAX_MERGE_BYTES held back, the reader yields
    what it holds (order becomes piecewise, with a warning) instead of growing without
    bound. (The full-size version is in ``python tests/fuzzing.py bombs --heavy``.)"""
    import aether_rec.format.chunk as chunk_mod
    from aether_rec.format.chunk import Chunk
    from aether_rec.format.writer import CaptureWriter

    monkeypatch.setattr(chunk_mod, "MAX_MERGE_BYTES", 64 * 1024)
    buf = io.BytesIO()
    with CaptureWriter(buf, {}) as w:
        for k in range(10):
            ts = np.arange(k, 10_000_000, 2500, dtype=np.uint64)  # every chunk spans it all
            w.write_chunk(Chunk.from_columns({"ts": ts, "lat": np.ones(len(ts), np.uint64)}))
    with Capture(io.BytesIO(buf.getvalue())) as cap:
        sizes = [c.n for c in cap.chunks()]
        assert sum(sizes) == cap.n_events
        assert any("overlap in time" in w for w in cap.warnings)
    monkeypatch.setattr(chunk_mod, "MAX_MERGE_BYTES", 1 << 30)
    with Capture(io.BytesIO(buf.getvalue())) as cap:
        ts = np.concatenate([c.column("ts") for c in cap.chunks()])
        assert bool(np.all(ts[1:] >= ts[:-1])) and not cap.warnings


def test_summary_true_as_event_count_through_the_index(tmp_path: Any) -> None:
    """Found by the long fuzz run (seed 11, case 12413): the index is intact, the chunk's
    own summary says n=true; decode_chunk's np.empty(True) raised TypeError."""
    # n: 500 (3 bytes) -> true (1 byte) plus "": nil (2 bytes): the index stays right.
    data = _edit(_capture(), CHNK, _summary_edit(n=True, **{"": None}), which=0, drop_index=False)
    assert len(data) == len(_capture())
    with Capture(io.BytesIO(data)) as cap:
        assert cap.has_index
    assert _run(tmp_path, data) == "partial"
