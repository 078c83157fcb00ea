"""Offline tools you can trust (issue 12): one test per wrong answer, traceback and
leftover found by trying the tools as a new user would, so none can come back."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result
from ops_common import make_capture

import aether_rec
from aether_rec.cli import main
from aether_rec.format.blocks import INDX, frame, pack, trailer
from aether_rec.format.records import Loss
from aether_rec.format.writer import CaptureWriter
from aether_rec.ops.expr import parse
from aether_rec.ops.filter import filter_capture
from aether_rec.ops.replay import replay
from aether_rec.ops.window import Selection, select
from aether_rec.schema import LAYER_CODE

REAL0 = 1_767_225_600_000_000_000
T0 = 10**12


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def one_line_error(r: Result, code: int, fragment: str) -> None:
    assert r.exit_code == code, (r.exit_code, r.stdout, r.stderr)
    assert fragment in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and "Usage:" not in r.stderr, r.stderr
    assert r.stderr.strip().count("\n") == 0, r.stderr


@pytest.fixture(scope="module")
def cap_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_capture(tmp_path_factory.mktemp("trust") / "c.aio", 20_000, seed=5, losses=3,
                        header={"hostname": "vm"})


def small(path: Path, ts: list[int], **cols: list[int]) -> Path:
    with CaptureWriter(str(path), {"clock": [[T0, REAL0]], "hostname": "vm"}) as w:
        data = {"ts": np.array(ts, np.uint64), "lat": np.full(len(ts), 100, np.uint64)}
        data.update({k: np.array(v) for k, v in cols.items()})
        w.write_events(data)
    return path


# -- selection -------------------------------------------------------------------------------------
def test_source_matches_the_name_stats_and_replay_show(cap_path: Path) -> None:
    doc = json.loads(run("stats", str(cap_path), "--by", "source", "--json").stdout)
    assert [r["key"]["source"] for r in doc["groups"]["rows"]] == ["vm"]
    r = run("stats", str(cap_path), "-e", "source == vm", "--json")
    assert json.loads(r.stdout)["events"] == 20_000
    r = run("stats", str(cap_path), "-e", "source != vm", "--json")
    assert json.loads(r.stdout)["events"] == 0


def test_until_is_exclusive_and_since_inclusive(tmp_path: Path) -> None:
    p = small(tmp_path / "s.aio", [T0, T0 + 10**9 - 1, T0 + 10**9, T0 + 2 * 10**9])
    with aether_rec.open(str(p)) as cap:
        until = [int(t) for c in select(cap, [], None, "+1s").chunks(cap) for t in c.column("ts")]
        since = [int(t) for c in select(cap, [], "+1s", None).chunks(cap) for t in c.column("ts")]
    assert until == [T0, T0 + 10**9 - 1]
    assert since == [T0 + 10**9, T0 + 2 * 10**9]


def test_sets_on_one_byte_columns_include_code_zero(tmp_path: Path) -> None:
    p = small(tmp_path / "l.aio", [T0, T0 + 1, T0 + 2], layer=[0, LAYER_CODE["syscall"], LAYER_CODE["block"]])
    with aether_rec.open(str(p)) as cap:
        chunk = next(cap.chunks())
        assert parse("layer in (unknown, syscall)").mask(chunk).tolist() == [True, True, False]
        assert parse("layer in (unknown, block, vfs)").mask(chunk).tolist() == [True, False, True]


# -- replay and export --------------------------------------------------------------------------------
def test_rows_name_errors_by_errno(tmp_path: Path) -> None:
    p = small(tmp_path / "e.aio", [T0, T0 + 1], result=[-5, 4096])
    out = io.StringIO()
    with aether_rec.open(str(p)) as cap:
        replay(cap, out, Selection(), fmt="jsonl")
    assert [json.loads(x)["error"] for x in out.getvalue().splitlines()] == ["EIO", None]


def test_text_replay_places_losses_between_the_events_around_them(tmp_path: Path) -> None:
    p = tmp_path / "loss.aio"
    with CaptureWriter(str(p), {"clock": [[T0, REAL0]]}) as w:
        w.write_events({"ts": np.array([T0, T0 + 10, T0 + 20], np.uint64), "lat": np.ones(3, np.uint64),
                        "pid": np.array([1, 2, 3], np.uint32)})
        w.write_loss(Loss(0, 9, T0 + 15, T0 + 16, "ringbuf"))
    out = io.StringIO()
    with aether_rec.open(str(p)) as cap:
        replay(cap, out, Selection(), fmt="text", header=False)
    kinds = ["loss" if x.startswith("# LOST") else x.split()[1] for x in out.getvalue().splitlines()]
    assert kinds == ["1/0", "2/0", "loss", "3/0"]


def test_paced_replay_places_losses_between_chunks(tmp_path: Path) -> None:
    p = tmp_path / "paced.aio"
    with CaptureWriter(str(p), {"clock": [[T0, REAL0]]}) as w:
        for k in range(2):
            w.write_chunk(aether_rec.format.chunk.Chunk.from_columns(
                {"ts": np.array([T0 + 100 * k, T0 + 100 * k + 10], np.uint64),
                 "pid": np.array([k + 1, k + 1], np.uint32)}))
        w.write_loss(Loss(0, 9, T0 + 50, T0 + 60, "ringbuf"))
    now = [0.0]

    def sleep(d: float) -> None:
        now[0] += d

    out = io.StringIO()
    with aether_rec.open(str(p)) as cap:
        rep = replay(cap, out, Selection(), fmt="text", header=False, speed=1.0, clock=lambda: now[0],
                     sleep=sleep)
    kinds = ["loss" if x.startswith("# LOST") else x.split()[1] for x in out.getvalue().splitlines()]
    assert kinds == ["1/0", "1/0", "loss", "2/0", "2/0"] and rep.losses == 1


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_machine_readable_replay_and_export_say_events_were_lost(cap_path: Path, fmt: str) -> None:
    for cmd in (["replay", str(cap_path), "--format", fmt], ["export", str(cap_path), "--format", fmt]):
        r = run(*cmd)
        assert r.exit_code == 0
        assert "lost" in r.stderr and "warning" in r.stderr, r.stderr
        assert "LOST" not in r.stdout


# -- info -----------------------------------------------------------------------------------------------
def _lying_index(tmp_path: Path) -> Path:
    """A capture whose index claims 2**32 more events in its chunk than the chunk holds."""
    p = small(tmp_path / "i.aio", [T0, T0 + 1, T0 + 2])
    data = p.read_bytes()
    with aether_rec.open(str(p)) as cap:
        info = cap.chunk_infos()[0]
        row = info.to_row()
        off = int.from_bytes(data[-24:-16], "little")  # the trailer's index offset (SPEC section 10)
    row[2] += 2**32
    index = {"chunks": [row], "losses": [], "meta": [], "events": row[2]}
    bad = tmp_path / "lying.aio"
    bad.write_bytes(data[:off] + frame(INDX, pack(index)) + trailer(off))
    return bad


def test_verify_checks_the_index_against_the_chunks(tmp_path: Path) -> None:
    bad = _lying_index(tmp_path)
    r = run("info", "--verify", str(bad))
    assert r.exit_code == 1, r.stdout
    assert "disagrees" in r.stdout and "FAILED" in r.stdout
    with aether_rec.open(str(bad)) as cap:
        assert any("disagrees with its summary (n)" in p for p in cap.verify())


def test_info_counts_the_events_it_can_read(tmp_path: Path) -> None:
    bad = _lying_index(tmp_path)
    """The index's claim is shown next to what can be read (the chunk whose entry lies is
    skipped, SPEC 15.2), and info --scan, stats and replay count the same. Without --scan a
    1.2 capture's info is its SUMM block's description (here the unchanged, true one): it
    reads no index and no chunk, so only --verify (or --scan) finds the lying index."""
    doc = json.loads(run("info", "--json", "--scan", str(bad)).stdout)
    assert doc["events"] == 0 and doc["index_events"] == 3 + 2**32 and not doc["from_summary"]
    assert json.loads(run("stats", "--json", str(bad)).stdout)["events"] == doc["events"]
    assert run("replay", "--format", "jsonl", str(bad)).stdout == ""
    assert f"(the index lists {3 + 2**32:,})" in run("info", "--scan", str(bad)).stdout
    fast = json.loads(run("info", "--json", str(bad)).stdout)
    assert fast["from_summary"] and fast["events"] == fast["index_events"] == 3


def test_info_shows_how_a_derived_capture_was_made(tmp_path: Path, cap_path: Path) -> None:
    out = tmp_path / "f.aio"
    assert run("filter", str(cap_path), "-o", str(out), "lat > 1ms").exit_code == 0
    r = run("info", str(out))
    assert "Derived by" in r.stdout and "filter 'lat > 1ms' of " + str(cap_path) in r.stdout
    assert "(this file)" in r.stdout
    doc = json.loads(run("info", "--json", str(out)).stdout)
    assert doc["derived"]["by"] == "filter" and doc["derived"]["from"][0]["path"] == str(cap_path)


def test_json_output_is_valid_whatever_the_header_holds(tmp_path: Path) -> None:
    p = tmp_path / "nan.aio"
    with CaptureWriter(str(p), {"clock": [[T0, REAL0]], "ncpu": float("inf"), "hooks": [float("nan")]}) as w:
        w.write_events({"ts": np.array([T0], np.uint64)})
        w.flush()
        w.close(stats={"rate": float("-inf")})
    r = run("info", "--json", str(p))
    assert r.exit_code == 0 and "Infinity" not in r.stdout and "NaN" not in r.stdout
    doc = json.loads(r.stdout)
    assert doc["ncpu"] is None and doc["hooks"] == [None] and doc["recorder_stats"] == {"rate": None}


def test_a_deeply_nested_header_is_written_back_pruned(tmp_path: Path) -> None:
    p = tmp_path / "deep.aio"
    import msgpack

    from aether_rec.format import blocks

    with CaptureWriter(str(p), {"clock": [[T0, REAL0]]}) as w:
        w.write_events({"ts": np.array([T0], np.uint64)})
    data = bytearray(p.read_bytes())
    # replace the header block by one whose derived_from nests 1000 deep (msgpack allows it
    # to be read within the limits; writing it back used to raise RecursionError)
    with aether_rec.open(str(p)) as cap:
        header = dict(cap.header)
        first = cap._first_block
    header["derived_from"] = "PLACEHOLDER-1234"
    packed = msgpack.packb(header)  # msgpack itself will not pack 1000 levels: splice them in
    packed = packed.replace(msgpack.packb("PLACEHOLDER-1234"), b"\x91" * 1000 + b"\xc0")
    head = blocks.frame(blocks.HEAD, packed)
    nested = tmp_path / "nested.aio"
    nested.write_bytes(bytes(data[:16]) + head + bytes(data[first:]))
    for cmd in (["filter", str(nested), "-o", str(tmp_path / "f.aio")],
                ["merge", str(nested), "-o", str(tmp_path / "m.aio")],
                ["redact", str(nested), "-o", str(tmp_path / "r.aio")],
                ["info", "--json", str(nested)]):
        r = run(*cmd)
        assert r.exit_code in (0, 1) and "Traceback" not in r.stderr, (cmd, r.stderr)
        assert r.exit_code == 0 or r.stderr.count("\n") == 1


# -- huge timestamps ------------------------------------------------------------------------------------
@pytest.fixture()
def huge(tmp_path: Path) -> Path:
    p = tmp_path / "huge.aio"
    with CaptureWriter(str(p), {"clock": [[T0, REAL0]], "hostname": "vm"}) as w:
        w.write_events({"ts": np.array([T0, 2**63 - 5, 2**63 + 5, 2**64 - 10], np.uint64),
                        "lat": np.array([5, 10, 2**63, 7], np.uint64), "pid": np.arange(4, dtype=np.uint32)})
        w.write_loss(Loss(0, 3, 2**63, 2**64 - 1, "ringbuf"))
    return p


def test_u64_timestamps_never_crash_or_wrap(tmp_path: Path, huge: Path) -> None:
    for cmd in (["stats", str(huge)], ["stats", "--json", str(huge)], ["info", str(huge)],
                ["replay", str(huge)], ["replay", "--format", "jsonl", str(huge)],
                ["export", "--format", "perfetto", str(huge)],
                ["merge", str(huge), "-o", str(tmp_path / "m.aio")],
                ["filter", str(huge), "-o", str(tmp_path / "f.aio"), "end > 5"]):
        r = run(*cmd)
        assert r.exit_code == 0 and "Traceback" not in r.stderr, (cmd, r.stderr)
        assert "1970" not in r.stdout and "1733" not in r.stdout, cmd
    with aether_rec.open(str(tmp_path / "f.aio")) as cap:
        assert cap.n_events == 4
    # ts + lat saturates at 2**64 - 1: it must not wrap to 5 (which this would keep)
    assert run("filter", str(huge), "-o", str(tmp_path / "g.aio"), f"end < {2**64 - 100}").exit_code == 0
    with aether_rec.open(str(tmp_path / "g.aio")) as cap:
        assert sorted(cap.to_numpy(["pid"])["pid"].tolist()) == [0, 1]
    rows = [json.loads(x) for x in run("replay", "--format", "jsonl", str(huge)).stdout.splitlines()]
    assert rows[0]["time"] == "2026-01-01T00:00:00.000000000Z"
    assert [x["time"] for x in rows[1:]] == [None, None, None]  # no wall time, said as such
    doc = json.loads(run("stats", "--json", str(huge)).stdout)
    assert doc["losses"]["records"][0]["last"] is None


def test_a_chunk_entirely_past_2_63_is_summarised(tmp_path: Path) -> None:
    """Found by the fuzzer once it checked answers: stats built an int64 array of the
    chunks' first times and raised OverflowError."""
    p = tmp_path / "late.aio"
    with CaptureWriter(str(p), {"clock": [[T0, REAL0]]}) as w:
        w.write_chunk(aether_rec.format.chunk.Chunk.from_columns({"ts": np.array([T0], np.uint64)}))
        w.write_chunk(aether_rec.format.chunk.Chunk.from_columns({"ts": np.array([2**63 + 1], np.uint64)}))
    for args in (["stats", "--json", str(p)], ["stats", "--json", "--by", "pid", str(p)]):
        r = run(*args)
        assert r.exit_code == 0 and json.loads(r.stdout)["events"] == 2, r.stderr


def test_a_capture_without_clock_mapping_is_a_bad_file_for_merge(tmp_path: Path, cap_path: Path) -> None:
    p = tmp_path / "noclock.aio"
    with CaptureWriter(str(p), {"clock": None, "hostname": "x"}) as w:
        w.write_events({"ts": np.array([T0], np.uint64)})
    one_line_error(run("merge", str(cap_path), str(p), "-o", str(tmp_path / "m.aio")), 1, "no clock mapping")


# -- outputs ---------------------------------------------------------------------------------------------
def test_a_strict_failure_leaves_no_output(tmp_path: Path, cap_path: Path) -> None:
    blob = bytearray(cap_path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF  # damage one chunk
    bad = tmp_path / "bad.aio"
    bad.write_bytes(bytes(blob))
    for cmd in (["filter", str(bad), "-o", str(tmp_path / "out.aio"), "--strict"],
                ["filter", str(bad), "-o", str(tmp_path / "out.aio"), "--strict", "lat > 0"]):
        r = run(*cmd)
        assert r.exit_code == 1, (cmd, r.stderr)
        assert not (tmp_path / "out.aio").exists()
    assert sorted(os.listdir(tmp_path)) == ["bad.aio"]  # no temporary file either


@pytest.mark.parametrize("expr", ["", "lat > 1ms"])  # whole chunks copied / decoded and re-encoded
def test_an_interrupted_filter_leaves_nothing(tmp_path: Path, cap_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              expr: str) -> None:
    from aether_rec.format import writer

    real = writer.CaptureWriter._write
    calls = {"n": 0}

    def interrupted(self: writer.CaptureWriter, data: bytes) -> None:
        calls["n"] += 1
        if calls["n"] == 6:  # some blocks written, then Ctrl-C
            raise KeyboardInterrupt
        real(self, data)

    monkeypatch.setattr(writer.CaptureWriter, "_write", interrupted)
    with aether_rec.open(str(cap_path)) as cap, pytest.raises(KeyboardInterrupt):
        filter_capture(cap, str(tmp_path / "out.aio"), Selection(parse(expr)))
    assert calls["n"] == 6
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("cmd", ["recover", "redact", "filter", "export"])
def test_no_tool_writes_over_its_input(tmp_path: Path, cap_path: Path, cmd: str) -> None:
    copy = tmp_path / "in.aio"
    copy.write_bytes(cap_path.read_bytes())
    args = [cmd, str(copy), "-o", str(copy), "--force"] + (["--format", "jsonl"] if cmd == "export" else [])
    one_line_error(run(*args), 2, "would overwrite the input")
    assert copy.read_bytes() == cap_path.read_bytes()


def test_export_follows_the_output_rule(tmp_path: Path, cap_path: Path) -> None:
    target = tmp_path / "target"
    target.write_text("precious")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    one_line_error(run("export", str(cap_path), "--format", "jsonl", "-o", str(link), "--force"), 1,
                   "symbolic link")
    dangling = tmp_path / "dangling.json"
    dangling.symlink_to(tmp_path / "nowhere")
    one_line_error(run("export", str(cap_path), "--format", "jsonl", "-o", str(dangling)), 1, "symbolic link")
    assert not (tmp_path / "nowhere").exists() and target.read_text() == "precious"
    one_line_error(run("export", str(cap_path), "--format", "csv", "-o", str(tmp_path / "no" / "x.csv")), 1,
                   "cannot create")
    one_line_error(run("export", str(cap_path), "--format", "csv", "-o", str(tmp_path)), 1, "exists")
    out = tmp_path / "ok.csv"
    assert run("export", str(cap_path), "--format", "csv", "-o", str(out)).exit_code == 0
    assert out.stat().st_mode & 0o777 == 0o600 and out.read_text().count("\n") == 20_001


# -- Ctrl-C --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_capture(tmp_path_factory.mktemp("big") / "big.aio", 1_500_000, seed=9)


def _cpu_seconds(pid: int) -> float:
    """CPU time a process has used (user + system), from /proc: unlike wall time it does not
    depend on how busy the machine is."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("inf")  # gone
    if fields[0] == "Z":
        return float("inf")  # finished (not reaped yet)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# after this much CPU time (the interpreter's own start-up takes about 0.05 s of it): while
# click and then numpy load, and well into the work
@pytest.mark.parametrize("delay", [0.15, 0.3, 0.8])
@pytest.mark.parametrize("cmd", [["filter", "{big}", "-o", "{out}", "lat > 1us"],
                                 ["merge", "{big}", "{big2}", "-o", "{out}", "--offset", "{big2}=+1s"],
                                 ["stats", "{big}", "--by", "comm"]])
def test_every_tool_stops_within_a_second_of_sigint(tmp_path: Path, big: Path, cmd: list[str],
                                                     delay: float) -> None:
    """At any moment (imports included): exit 130 or a one-line message, no traceback, no
    output left behind, within a second."""
    import signal
    import subprocess
    import sys
    import time

    big2 = big.parent / "big2.aio"
    if not big2.exists():  # another recording (a copy would be skipped as a duplicate)
        make_capture(big2, 1_500_000, seed=10)
    args = [a.format(big=big, big2=big2, out=tmp_path / "out.aio") for a in cmd]
    exe = Path(sys.executable).parent / "aether-rec"  # the console script, as users run it
    p = subprocess.Popen([str(exe), *args], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    deadline = time.monotonic() + 30
    while _cpu_seconds(p.pid) < delay and time.monotonic() < deadline:  # (no poll: it would reap)
        time.sleep(0.005)
    cpu_at_signal = min(_cpu_seconds(p.pid), delay)
    os.kill(p.pid, signal.SIGINT)  # (not p.send_signal: it polls, which would reap a finished child)
    t0 = time.monotonic()
    status, usage = 0, None
    while time.monotonic() - t0 < 10:  # a hang (a thread waiting for ever) fails here
        pid, status, usage = os.wait4(p.pid, os.WNOHANG)
        if pid:
            break
        time.sleep(0.01)
    else:
        p.kill()
        raise AssertionError("still running 10 s after SIGINT")
    p.returncode = os.waitstatus_to_exitcode(status)
    assert p.stderr is not None
    err = p.stderr.read()
    # "within a second": the work done after the signal, in CPU time, so that a busy shared
    # machine (which stretches wall time) cannot fail it and a slow stop cannot pass it
    assert usage is not None and usage.ru_utime + usage.ru_stime - cpu_at_signal < 1.0
    assert "Traceback" not in err, err
    # 130: stopped by the handler; 1: click's "Aborted!" (Ctrl-C inside its own parsing);
    # -SIGINT: the signal landed while the interpreter was already exiting; 0: it had finished
    assert p.returncode in (0, 1, 130, -signal.SIGINT), (p.returncode, err)
    out = tmp_path / "out.aio"
    if out.exists():  # only a finished output (renamed into place whole), never a partial one
        with aether_rec.open(str(out)) as done:
            assert done.has_index and not done.warnings, (p.returncode, err)
    assert [f for f in os.listdir(tmp_path) if f.endswith(".part")] == []


@pytest.mark.parametrize("module", ["click", "numpy"])
def test_ctrl_c_while_the_cli_loads_is_one_line(tmp_path: Path, cap_path: Path, module: str) -> None:
    """Ctrl-C landing inside an import (click, or numpy for the command) is deterministic
    here: the import itself raises KeyboardInterrupt."""
    import subprocess
    import sys

    code = (
        "import builtins, sys\n"
        "real = builtins.__import__\n"
        "def imp(name, *a, **k):\n"
        f"    if name == {module!r}:\n"
        "        raise KeyboardInterrupt\n"
        "    return real(name, *a, **k)\n"
        "builtins.__import__ = imp\n"
        f"sys.argv = ['aether-rec', 'stats', {str(cap_path)!r}]\n"
        "from aether_rec.console import main\n"
        "main()\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode in (1, 130) and r.stderr.strip().count("\n") <= 1, (r.returncode, r.stderr)


# -- times and units ----------------------------------------------------------------------------------------
def test_times_follow_one_rule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ISO without a zone is UTC whatever TZ says; a time of day as replay prints it is
    accepted; relative times need a unit; a bound outside the capture is said."""
    p = small(tmp_path / "t.aio", [T0, T0 + 10**9, T0 + 2 * 10**9, T0 + 3 * 10**9])
    import time

    for tz in ("UTC", "America/New_York", "Asia/Tokyo"):
        monkeypatch.setenv("TZ", tz)
        time.tzset()
        r = run("stats", "--json", str(p), "--since", "2026-01-01T00:00:01")
        assert json.loads(r.stdout)["events"] == 3, tz
    monkeypatch.delenv("TZ")
    time.tzset()
    first_line = run("replay", str(p), "--no-header").stdout.splitlines()[1]
    tod = first_line.split()[0]  # 00:00:01.000000, as replay prints it
    assert tod == "00:00:01.000000"
    assert json.loads(run("stats", "--json", str(p), "--since", tod).stdout)["events"] == 3
    assert json.loads(run("stats", "--json", str(p), "--until", "00:00:02").stdout)["events"] == 2
    r = run("stats", str(p), "--since", "+1")
    one_line_error(r, 2, "needs a unit")
    one_line_error(run("stats", str(p), "--min-latency", "5"), 2, "needs a unit")
    r = run("stats", "--json", str(p), "--since", "+100s")
    assert r.exit_code == 0 and json.loads(r.stdout)["events"] == 0
    assert "after the capture's last event" in r.stderr
    r = run("stats", "--json", str(p), "-e", "lat > 5")
    assert r.exit_code == 0 and "without a unit is nanoseconds" in r.stderr
    assert "without a unit" not in run("stats", "--json", str(p), "-e", "lat > 5ms").stderr
    assert "without a unit" not in run("stats", "--json", str(p), "-e", f"ts > {T0}").stderr


# -- several files -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def two_hosts(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("hosts")
    a = make_capture(d / "db1.aio", 3000, seed=1, start_ns=5 * 10**12,
                     header={"hostname": "db1", "clock": [[5 * 10**12, REAL0]]})
    b = make_capture(d / "db2.aio", 2000, seed=2, start_ns=9 * 10**9,
                     header={"hostname": "db2", "clock": [[9 * 10**9, REAL0 + 5_000_000]]})
    return a, b


def test_replay_several_files_merges_them_on_the_wall_clock(two_hosts: tuple[Path, Path]) -> None:
    a, b = two_hosts
    r = run("replay", str(a), str(b), "--format", "jsonl", "lat > 1ms")
    assert r.exit_code == 0, r.stderr
    rows = [json.loads(x) for x in r.stdout.splitlines()]
    single = [json.loads(x) for p in (a, b) for x in run("replay", str(p), "--format", "jsonl",
                                                         "lat > 1ms").stdout.splitlines()]
    assert len(rows) == len(single) > 0
    assert {x["source"] for x in rows} == {"db1", "db2"}
    assert [x["time"] for x in rows] == sorted(x["time"] for x in rows)
    assert sorted(x["time"] for x in rows) == sorted(x["time"] for x in single)  # same wall times
    one_line_error(run("replay", str(a), str(b), "--follow"), 2, "one capture")


def test_export_and_filter_take_several_files(tmp_path: Path, two_hosts: tuple[Path, Path]) -> None:
    a, b = two_hosts
    out = tmp_path / "both.jsonl"
    assert run("export", str(a), str(b), "--format", "jsonl", "-o", str(out)).exit_code == 0
    assert len(out.read_text().splitlines()) == 5000
    merged = tmp_path / "slow.aio"
    r = run("filter", str(a), str(b), "-o", str(merged), "lat > 1ms")
    assert r.exit_code == 0, r.stderr
    want = sum(json.loads(run("stats", "--json", str(p), "-e", "lat > 1ms").stdout)["events"] for p in (a, b))
    doc = json.loads(run("stats", "--json", "--by", "source", str(merged)).stdout)
    assert doc["events"] == want and {r["key"]["source"] for r in doc["groups"]["rows"]} == {"db1", "db2"}
    assert json.loads(run("info", "--json", str(merged)).stdout)["derived"]["filter"] == "lat > 1ms"
    one_line_error(run("export", str(a), str(b), "--format", "perfetto"), 2, "merge them first")


def test_an_unreadable_input_is_the_library_s_one_line_error(tmp_path: Path, cap_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """click used to check readability itself (exit 2 with its usage banner); the library
    opens the file and says why it cannot (exit 1, one line). As root nothing is unreadable,
    so os.access is made to say no: the commands must not ask it."""
    monkeypatch.setattr(os, "access", lambda *a, **k: False)
    for cmd in (["info", str(cap_path)], ["stats", str(cap_path)], ["recover", str(cap_path), "-o",
                str(tmp_path / "r.aio")], ["redact", str(cap_path), "-o", str(tmp_path / "x.aio")],
                ["merge", str(cap_path), "-o", str(tmp_path / "m.aio")]):
        r = run(*cmd)
        assert r.exit_code == 0 and "Usage:" not in r.stderr, (cmd, r.stderr)
    d = tmp_path / "adir"
    d.mkdir()
    one_line_error(run("recover", str(d), "-o", str(tmp_path / "y.aio")), 1, "Is a directory")
