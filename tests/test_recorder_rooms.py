"""The rooms around the recording loop, without a kernel: options, file rotation, the
loss ledger and the traced-command launcher (the kernel tests drive them end to end)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

import aether_rec
from aether_rec.errors import UsageError
from aether_rec.format.records import Loss
from aether_rec.format.writer import WriteError
from aether_rec.recorder.fdtable import FdName
from aether_rec.recorder.launcher import TracedCommand, exit_code
from aether_rec.recorder.losses import LossLedger, real_losses
from aether_rec.recorder.options import RecordOptions
from aether_rec.recorder.procinfo import Names
from aether_rec.recorder.program import COUNTERS, LOSS_COUNTERS
from aether_rec.recorder.rotation import OutputFile, RotatingOutput
from aether_rec.recorder.status import RecordResult, summary_line


# -- options ---------------------------------------------------------------------------------
def test_derived_options_and_file_names() -> None:
    plain = RecordOptions(output="/d/run.aio")
    assert not plain.to_stdout and not plain.rotating and not plain.filter_pid
    assert [plain.file_name(i) for i in (1, 2)] == ["/d/run.aio", "/d/run.0002.aio"]  # 2: after a SIGHUP
    timed = RecordOptions(output="/d/run.aio", rotate_time_ns=10**9, pids=(1,))
    assert timed.rotating and timed.filter_pid
    assert timed.file_name(1) == "/d/run.0001.aio"
    assert RecordOptions(output="x", rotate_size=1).rotating
    assert RecordOptions(output="x", command=("true",)).filter_pid
    out = RecordOptions(output="-")
    assert out.to_stdout and out.file_name(1) == "<stdout>" and out.file_name(2) == "<stdout>"


def test_check_parses_the_list_options(tmp_path: Path) -> None:
    got = RecordOptions(output=str(tmp_path / "a.aio"), layers="all", ops="pread,fsync").check()
    assert got.layers == ("syscall", "block", "vfs", "io_uring") and got.layers_explicit
    assert got.ops == frozenset({"pread", "fsync"}) and got.cgroup is None
    default = RecordOptions(output=str(tmp_path / "a.aio")).check()
    assert default.layers == ("syscall", "block", "io_uring") and not default.layers_explicit
    assert default.ops is None
    with pytest.raises(UsageError, match="unknown layer"):
        RecordOptions(output=str(tmp_path / "a.aio"), layers="syscall,nope").check()
    with pytest.raises(UsageError, match="unknown op"):
        RecordOptions(output=str(tmp_path / "a.aio"), ops="pread,nope").check()


def test_check_refuses_the_first_rotated_name_not_output(tmp_path: Path) -> None:
    (tmp_path / "run.0001.aio").write_bytes(b"")
    RecordOptions(output=str(tmp_path / "run.aio")).check()  # run.aio itself is free
    from aether_rec.errors import RecorderError

    with pytest.raises(RecorderError, match=r"run\.0001\.aio: already exists"):
        RecordOptions(output=str(tmp_path / "run.aio"), rotate_size=1 << 20).check()


# -- rotation --------------------------------------------------------------------------------
def _output(tmp_path: Path, **kw: Any) -> tuple[RotatingOutput, Names]:
    names = Names()
    opts = RecordOptions(output=str(tmp_path / "run.aio"), **kw)
    header = lambda index: {"rotation": {"index": index}, "recording_id": "r1"}  # noqa: E731
    return RotatingOutput(opts, header, names), names


def test_rotation_makes_complete_files_that_repeat_the_names(tmp_path: Path) -> None:
    out, names = _output(tmp_path, rotate_time_ns=10**9)
    first = out.open()
    assert isinstance(first, OutputFile) and first.name == str(tmp_path / "run.0001.aio")
    names.procs[42] = {"pid": 42, "ppid": 1, "comm": "db", "cmdline": "db --x"}
    names.fds[42] = {3: FdName("/data/t", 1, 0), 4: FdName("", 0, 0)}  # fd 4 unresolved: not repeated
    names.devices[8] = "sda"
    first.lost["perf_buffer"] = 7
    second = out.create(2)
    old = out.switch(second)
    assert old is first and out.current is second
    out.close(False, "", {"submit_failed": 7}, out=old)
    assert out.files == [first.name, second.name]
    assert out.bytes_closed == os.path.getsize(first.name) > 0
    out.close(True, "signal SIGTERM", {"submit_failed": 7})
    assert out.current is None and out.bytes_total() == out.bytes_closed
    with aether_rec.open(first.name) as cap:
        assert cap.index_stats["stop_reason"] == "rotated" and not cap.index_stats["final"]
        assert cap.index_stats["lost"] == {"perf_buffer": 7} and cap.index_stats["lost_total"] == 7
        assert cap.index_stats["counters"] == {"submit_failed": 7}
        assert cap.header["rotation"] == {"index": 1} and cap.meta("procs") == []
    with aether_rec.open(second.name) as cap:
        assert cap.index_stats["stop_reason"] == "signal SIGTERM" and cap.index_stats["final"]
        assert cap.header["rotation"] == {"index": 2}
        assert cap.meta("procs") == [names.procs[42]]
        assert cap.meta("fds") == [{"pid": 42, "fd": 3, "path": "/data/t", "flags": 0}]
        assert cap.meta("devices") == [{"dev": 8, "name": "sda"}]
    for f in out.files:
        assert os.stat(f).st_mode & 0o777 == 0o600


def test_a_next_file_that_cannot_be_made_leaves_the_current_one(tmp_path: Path) -> None:
    out, _ = _output(tmp_path, rotate_size=1 << 20)
    first = out.open()
    target = tmp_path / "target"
    (tmp_path / "run.0002.aio").symlink_to(target)
    with pytest.raises(WriteError) as exc:
        out.create(2)
    assert exc.value.kind == "symlink" and exc.value.path == str(tmp_path / "run.0002.aio")
    assert out.current is first and out.files == [first.name] and not target.exists()
    assert not out.rotation_due(time.monotonic())  # an empty file is far from 1 MiB
    out.abort()
    assert out.current is None
    with aether_rec.open(first.name) as cap:
        assert not cap.has_index  # aborted: readable, no index


def test_rotation_is_due_by_time(tmp_path: Path) -> None:
    out, _ = _output(tmp_path, rotate_time_ns=10**9)
    first = out.open()
    assert not out.rotation_due(first.opened + 0.5)
    assert out.rotation_due(first.opened + 1.0)
    out.abort()


# -- the loss ledger -------------------------------------------------------------------------
class _Writer:
    def __init__(self) -> None:
        self.losses: list[tuple[int, int, int, int, str]] = []

    def write_loss(self, loss: Loss) -> None:
        self.losses.append((loss.cpu, loss.count, loss.t_first, loss.t_last, loss.kind))


class _Out:
    def __init__(self) -> None:
        self.writer = _Writer()
        self.lost: dict[str, int] = {}


class _Prog:
    def __init__(self) -> None:
        self.values: dict[str, list[int]] = {}

    def percpu_u64(self, name: str, key: int) -> list[int]:
        assert name == "counters"
        return self.values.get(COUNTERS[key], [0, 0])


class _Transport:
    def unreported_losses(self, submit_failed: list[int]) -> list[Loss]:
        return [Loss(cpu, n, 1, 2, "perf_buffer") for cpu, n in enumerate(submit_failed) if n]


def test_the_ledger_writes_counter_deltas_once_per_cpu_and_kind() -> None:
    ledger, out, prog = LossLedger(), _Out(), _Prog()
    ledger.start()
    t0 = ledger.t_tick_ns
    prog.values = {"pid_map_full": [3, 0], "below_min_latency": [50, 50], "syscall_unmatched": [0, 2]}
    ledger.read_counters(out, prog)
    got = {(c, k): n for c, n, _a, _b, k in out.writer.losses}
    assert got == {(0, "pid_map_full"): 3, (1, "unmatched"): 2}  # below_min_latency is no loss
    assert all(a == t0 and b == ledger.t_tick_ns >= t0 for _c, _n, a, b, _k in out.writer.losses)
    assert ledger.counters_total["below_min_latency"] == 100
    prog.values["pid_map_full"] = [5, 1]
    out.writer.losses.clear()
    ledger.read_counters(out, prog)
    assert sorted((c, n, k) for c, n, _a, _b, k in out.writer.losses) == [
        (0, 2, "pid_map_full"), (1, 1, "pid_map_full")]
    assert out.lost == ledger.lost == {"pid_map_full": 6, "unmatched": 2}
    assert real_losses(ledger.lost) == {"pid_map_full": 6}
    ledger.write(out, Loss(1, 4, 10, 20, "ringbuf"))
    assert out.writer.losses[-1] == (1, 4, 10, 20, "ringbuf") and ledger.lost["ringbuf"] == 4
    assert set(LOSS_COUNTERS) <= set(COUNTERS)


def test_the_ledger_asks_the_transport_for_unreported_losses_at_stop() -> None:
    ledger, out, prog = LossLedger(), _Out(), _Prog()
    transport: Any = _Transport()
    ledger.unreported(out, transport)
    assert out.writer.losses == []  # the counters were never read: nothing to compare
    prog.values = {"submit_failed": [0, 9]}
    ledger.read_counters(out, prog)
    assert out.writer.losses == []  # submit_failed itself is reported by the transport
    ledger.unreported(out, transport)
    assert out.writer.losses == [(1, 9, 1, 2, "perf_buffer")] and ledger.lost == {"perf_buffer": 9}


def test_summary_counts_only_real_losses() -> None:
    r = RecordResult(["a.aio"], 10, 1000, 2.0, {"unmatched": 3, "perf_buffer": 2}, {}, 0, "--duration")
    line = summary_line(r)
    assert "lost 2 (perf_buffer 2)" in line and "3 completions without a recorded start" in line
    assert line.endswith("stopped by --duration") and "(100.0 B/event)" in line


# -- the traced command ----------------------------------------------------------------------
def test_the_command_waits_for_its_release(tmp_path: Path) -> None:
    mark = tmp_path / "ran"
    cmd = TracedCommand(("sh", "-c", f"touch {mark}; exit 3"), None, False)
    try:
        time.sleep(0.8)
        assert cmd.running() and not mark.exists()  # held until released
        cmd.release()
        end = time.monotonic() + 10
        while cmd.running():
            assert time.monotonic() < end
            time.sleep(0.02)
    finally:
        if cmd.running():
            cmd.kill(reap=True)
    assert mark.exists() and cmd.poll() == 3
    assert cmd.end_reason() == "command exited with status 3" and exit_code(3) == 3


def test_a_killed_command_is_named_by_its_signal() -> None:
    cmd = TracedCommand(("sleep", "30"), None, False)
    cmd.kill(reap=True)
    assert cmd.end_reason() == "command killed by SIGKILL"
    assert exit_code(-signal.SIGKILL) == 128 + 9


# -- the loader helper's errors --------------------------------------------------------------
def test_loader_errors_keep_their_kind_across_the_helper() -> None:
    import json

    from aether_rec.errors import EnvironmentProblem, RecorderError
    from aether_rec.recorder.loaded import error_reply, reply_error

    def across(exc: BaseException) -> RecorderError:
        return reply_error(json.loads(json.dumps(error_reply(exc))))

    env = across(EnvironmentProblem("bcc is missing: apt-get install python3-bpfcc"))
    assert type(env) is EnvironmentProblem and str(env) == "bcc is missing: apt-get install python3-bpfcc"
    rec = across(RecorderError("the BPF program failed to load (x)"))
    assert type(rec) is RecorderError and str(rec) == "the BPF program failed to load (x)"
    bug = across(KeyError("maps"))
    assert type(bug) is RecorderError and str(bug) == "BPF loader failed: 'maps'"
