"""Distributed stats and the Dask reader, on a local cluster of worker processes (127.0.0.1)
over 210 generated captures."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from ops_common import make_capture

import aether_rec
from aether_rec.cli import main
from aether_rec.format.chunk import Chunk
from aether_rec.format.writer import CaptureWriter
from aether_rec.ops import distributed
from aether_rec.ops import stats as st
from aether_rec.ops.histogram import relative_error

N_CAPTURES = 210
EVENTS = 12_000  # 2.52 M events in all


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    d = tmp_path_factory.mktemp("fleet")
    return [
        str(make_capture(d / f"host{k:03d}.aio", EVENTS + 37 * k, seed=k, chunk_events=4096,
                         losses=k % 3, header={"hostname": f"db{k % 17}"}))
        for k in range(N_CAPTURES)
    ]


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    from dask.distributed import Client, LocalCluster

    with LocalCluster(n_workers=3, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, silence_logs=50) as lc, Client(lc) as client:
        yield client


def _json(args: list[str]) -> dict[str, Any]:
    """The command's JSON, run in its own process (as a user would: a client process that
    connects to the scheduler over TCP)."""
    exe = Path(sys.executable).parent / "aether-rec"
    r = subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)  # type: ignore[no-any-return]


def test_cli_stats_on_the_cluster_equals_local(fleet: list[str], cluster: Any) -> None:
    local = _json(["stats", "--json", *fleet])
    remote = _json(["stats", "--json", "--scheduler", cluster.scheduler.address, *fleet])
    assert remote == local
    total = sum(EVENTS + 37 * k for k in range(N_CAPTURES))
    assert remote["events"] == total
    # independent check of the percentiles: numpy over every latency
    lat = np.concatenate([aether_rec.open(p).to_numpy(["lat"])["lat"] for p in fleet])
    assert len(lat) == total
    err = relative_error()
    for q in (50, 90, 99, 99.9):
        exact = float(np.percentile(lat, q, method="inverted_cdf"))
        got = remote["latency"][f"p{q:g}".replace(".", "_")]
        assert abs(got - exact) <= err * exact + 1
    assert remote["latency"]["max"] == int(lat.max()) and remote["latency"]["min"] == int(lat.min())


def test_grouped_windowed_stats_equal_local(fleet: list[str], cluster: Any) -> None:
    args = ["stats", "--json", "--by", "source,op", "--interval", "100ms", "--since", "+0.01s",
            "--until", "+0.05s", "-e", "lat > 20us", "--top", "5"]
    local = _json([*args, *fleet[:60]])
    remote = _json([*args, "--scheduler", cluster.scheduler.address, *fleet[:60]])
    assert remote == local
    assert remote["groups"]["rows"] and remote["intervals"]["rows"] and len(remote["top"]) == 5


def test_a_worker_killed_mid_run_does_not_change_the_answer(fleet: list[str], cluster: Any) -> None:
    opts = st.StatsOptions(by=["comm"])
    with_caps = [aether_rec.open(p) for p in fleet]
    try:
        local = st.compute(with_caps, st.StatsOptions(by=["comm"]))
    finally:
        for c in with_caps:
            c.close()
    pids = cluster.run(os.getpid)
    victim = sorted(pids.values())[0]
    killed_at: list[int] = []

    def progress(done: int, total: int) -> None:
        if done == 20 and not killed_at:
            os.kill(victim, signal.SIGKILL)
            killed_at.append(done)
        if killed_at and done < total:
            time.sleep(0.002)  # let the scheduler notice while work remains

    doc = distributed.stats(fleet, opts, scheduler=cluster, partition_events=4096, progress=progress,
                            timeout=600)
    assert killed_at == [20]
    with pytest.raises(ProcessLookupError):
        os.kill(victim, 0)
    assert doc == local


def test_read_dask_partitions_and_pushdown(fleet: list[str], cluster: Any) -> None:
    ddf = distributed.read_dask(fleet[:30], columns=["source", "comm", "lat"], filter="lat > 1ms",
                                partition_events=8192)
    caps = [aether_rec.open(p) for p in fleet[:30]]
    from aether_rec.ops.expr import parse

    parts = distributed.plan(caps, fleet[:30], [parse("lat > 1ms")] * 30, 8192)
    assert ddf.npartitions == len(parts) > 30
    df = ddf.compute()
    lat = np.concatenate([c.to_numpy(["lat"])["lat"] for c in caps])
    for c in caps:
        c.close()
    assert len(df) == int((lat > 1_000_000).sum())
    assert list(df.columns) == ["source", "lat", "comm"]  # schema order
    assert (df["lat"] > 1_000_000).all()
    assert set(df["source"].astype(str)) <= {f"db{k}" for k in range(17)}


def test_unreachable_scheduler_is_one_line(fleet: list[str]) -> None:
    r = CliRunner().invoke(main, ["stats", "--scheduler", "tcp://127.0.0.1:9", fleet[0]])
    assert r.exit_code == 1 and "Dask scheduler" in r.stderr and "Traceback" not in r.output


def test_relative_paths_reach_the_workers(
    fleet: list[str], cluster: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = os.path.dirname(fleet[0])
    monkeypatch.chdir(d)
    rel = [os.path.basename(p) for p in fleet[:5]]
    local = _json(["stats", "--json", *rel])
    remote = _json(["stats", "--json", "--scheduler", cluster.scheduler.address, *rel])
    assert remote == local and remote["inputs"][0]["path"] == rel[0]


def test_groups_lumped_by_partitions_leave_the_largest_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    """Partitions that meet more groups than they track lump the rest into (other); merged,
    that (other) is the largest group of all. The document must still show --max-groups
    real groups (the largest), then one (other) row holding every other event, as the local
    stats does: an (other) ranked among the largest once took a real group's row."""
    from dask.distributed import Client, LocalCluster

    monkeypatch.setattr(st, "MAX_TRACKED_GROUPS", 8)  # the workers are threads of this process
    rng = np.random.default_rng(5)
    paths = []
    for k in range(3):
        path = tmp_path / f"h{k}.aio"
        with CaptureWriter(path, {"clock": [[0, 1_767_225_600_000_000_000]]}, chunk_events=1000) as w:
            for c in range(6):
                n = 1000
                big = rng.integers(1, 5, n)  # tids 1-4: most events
                small = rng.integers(100, 400, n)  # 300 small tids, beyond what a partition tracks
                tid = np.where(rng.random(n) < 0.7, big, small).astype(np.uint32)
                tid[:4] = [1, 2, 3, 4]  # first in every chunk: tracked by every partition
                w.write_events(Chunk.from_columns({
                    "ts": np.arange(n, dtype=np.uint64) * 1000 + c * 10**6 + k,
                    "lat": rng.integers(1, 10**6, n).astype(np.uint64), "tid": tid,
                    "layer": np.ones(n, np.uint8), "op": np.ones(n, np.uint8)}))
        paths.append(str(path))
    opts = st.StatsOptions(by=["tid"], max_groups=4, all_fds=True)
    caps = [aether_rec.open(p) for p in paths]
    try:
        local = st.compute(caps, opts)
    finally:
        for cap in caps:
            cap.close()
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None,
                      silence_logs=50) as lc, Client(lc) as client:
        doc = distributed.stats(paths, opts, scheduler=client, partition_events=1000, timeout=120)
    rows = [(r["key"]["tid"], r["events"]) for r in doc["groups"]["rows"]]
    assert [k for k, _ in rows[:-1]] and rows[-1][0] == "(other)"
    assert sorted(k for k, _ in rows[:-1]) == [1, 2, 3, 4]  # max_groups real rows, the largest
    assert [e for _, e in rows[:-1]] == sorted((e for _, e in rows[:-1]), reverse=True)
    assert sum(e for _, e in rows) == doc["events"] == 18_000
    assert rows[:4] == [(r["key"]["tid"], r["events"]) for r in local["groups"]["rows"]][:4]
