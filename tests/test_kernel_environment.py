"""Real-kernel tests: the environment problems each give one documented line and exit
code, never a traceback; doctor and --ebpf tell the truth."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from kernel_util import (
    CLI,
    ROOT,
    kernel,  # noqa: F401 - the fixture
    rec,
)

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel")]


def _one_line_error(stderr: str) -> str:
    lines = [x for x in stderr.strip().splitlines() if x.strip()]
    assert "Traceback" not in stderr, stderr
    assert lines, "no message"
    return lines[-1]


def _as_nobody() -> list[str] | None:
    for tool in (
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"],
        ["runuser", "-u", "nobody", "--"],
    ):
        if shutil.which(tool[0]):
            return tool
    return None


def test_non_root_is_refused_with_the_fix(tmp_path: Path) -> None:
    drop = _as_nobody()
    assert drop is not None, "need setpriv or runuser to drop privileges"
    os.chmod(tmp_path, 0o777)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HOME": "/"}
    p = subprocess.run(
        [*drop, *CLI, "record", "-o", str(tmp_path / "x.aio"), "--duration", "1s"],
        capture_output=True,
        text=True,
        env=env,
        cwd="/",
        timeout=60,
    )
    assert p.returncode == 1, p.stderr
    msg = _one_line_error(p.stderr)
    assert "needs root" in msg and "sudo" in msg
    assert not (tmp_path / "x.aio").exists()


def test_missing_bcc_says_how_to_install_it(tmp_path: Path) -> None:
    env = {**os.environ, "AETHER_REC_BCC_PATH": str(tmp_path / "nowhere")}
    r = rec(["record", "-o", str(tmp_path / "x.aio"), "--duration", "1s"], env=env)
    assert r.rc == 1
    msg = _one_line_error(r.stderr)
    assert "bcc" in msg and "apt-get install python3-bpfcc" in msg
    d = rec(["doctor"], env=env)
    assert d.rc == 1 and "FAIL bcc" in d.stdout


def test_unavailable_layer_is_an_error_with_the_reason(tmp_path: Path) -> None:
    r = rec(["record", "-o", str(tmp_path / "x.aio"), "--layers", "syscall,vfs", "--duration", "1s"])
    assert r.rc == 1
    msg = _one_line_error(r.stderr)
    assert "layer vfs is unavailable on this kernel" in msg
    assert "--layers syscall" in msg  # the way out
    assert not (tmp_path / "x.aio").exists()


def test_bad_usage_exits_2(tmp_path: Path) -> None:
    for args in (
        ["--layers", "nope"],
        ["--ops", "teleport"],
        ["--min-latency", "fast"],
        ["--buffer-pages", "3"],
    ):
        r = rec(["record", "-o", str(tmp_path / "x.aio"), *args])
        assert r.rc == 2, (args, r.stderr)
        assert "Traceback" not in r.stderr


def test_existing_output_and_symlinks_are_refused(tmp_path: Path) -> None:
    out = tmp_path / "exists.aio"
    out.write_bytes(b"precious")
    r = rec(["record", "-o", str(out), "--duration", "1s"])
    assert r.rc == 1 and "--force" in _one_line_error(r.stderr)
    assert out.read_bytes() == b"precious"
    link = tmp_path / "link.aio"
    link.symlink_to(tmp_path / "target.aio")
    r = rec(["record", "-o", str(link), "--force", "--duration", "1s"])
    assert r.rc == 1 and "symbolic link" in _one_line_error(r.stderr)
    assert not (tmp_path / "target.aio").exists()


def test_output_mode_is_0600(tmp_path: Path) -> None:
    out = tmp_path / "m.aio"
    r = rec(["record", "-o", str(out), "--", "true"])
    assert r.rc == 0, r.stderr
    assert (out.stat().st_mode & 0o777) == 0o600


def test_doctor_reports_layers_and_hooks() -> None:
    r = rec(["doctor", "--json"])
    assert r.rc == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["ok"] is True
    assert rep["bcc"]["ok"] and rep["bcc"]["version"]
    assert rep["layers"]["syscall"]["available"]
    hooks = {h["hook"] for h in rep["layers"]["syscall"]["hooks"]}
    assert "raw_tracepoint:sys_exit:fsync" in hooks  # the raw_syscalls path (x86_64)
    assert rep["layers"]["vfs"]["available"] in (True, False)
    if not rep["layers"]["vfs"]["available"]:
        assert rep["layers"]["vfs"]["reason"]
    text = rec(["doctor"])
    assert text.rc == 0 and "ready to record" in text.stdout


def test_ebpf_prints_exactly_the_program_loaded(tmp_path: Path) -> None:
    out = tmp_path / "e.aio"
    r = rec(["record", "-o", str(out), "--pid", str(os.getpid()), "--min-latency", "1ms", "--ebpf"])
    assert r.rc == 0, r.stderr
    assert not out.exists()
    text = r.stdout
    assert "-DFILTER_PID=1" in text and "MIN_LAT_NS=" not in text  # a run-time setting
    assert "RAW_TRACEPOINT_PROBE(block_rq_issue)" in text  # the block layer where BTF tells the layout
    assert '#include "aether_event.h"' not in text  # local headers are inlined
    # the same text and cflags the session hands to bcc
    code = (
        "import sys, os\n"
        "from aether_rec.recorder import RecordOptions, prepare\n"
        f"o = RecordOptions(output={str(out)!r}, pids=({os.getpid()},), min_latency_ns=1000000)\n"
        "p = prepare(o, log=lambda m: None)\n"
        "sys.stdout.write(p.program.text)\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    # the two processes differ in pid and the program not at all (the pid is a run-time setting)
    assert text == p.stdout
