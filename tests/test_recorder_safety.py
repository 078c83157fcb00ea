"""Recorder safety without the kernel: how output files are created (0600, exclusive, no
symbolic links, --force by name), dropping privileges (as root, in a child process), and
the perf buffer's unreported losses."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from kernel_util import CLI, ROOT

from aether_rec.format import (
    output,  # where the output-creation rule lives
    writer,
)
from aether_rec.format.writer import WriteError, create_output
from aether_rec.recorder.perfbuf import PerfMmapTransport
from aether_rec.recorder.privileges import credentials, resolve_user


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o277])
def test_outputs_are_0600_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        with create_output(str(tmp_path / "a.aio")) as f:
            f.write(b"x")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "a.aio") == 0o600


def test_an_existing_file_is_refused_without_force(tmp_path: Path) -> None:
    p = tmp_path / "a.aio"
    p.write_text("keep me")
    with pytest.raises(WriteError, match="already exists"):
        create_output(str(p))
    assert p.read_text() == "keep me"


def test_force_replaces_the_name_not_the_file(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious")
    os.chmod(victim, 0o644)
    p = tmp_path / "a.aio"
    os.link(victim, p)
    with create_output(str(p), force=True) as f:
        f.write(b"new")
    assert victim.read_text() == "precious" and _mode(victim) == 0o644
    assert p.read_bytes() == b"new" and _mode(p) == 0o600
    assert p.stat().st_ino != victim.stat().st_ino


@pytest.mark.parametrize("force", [False, True])
@pytest.mark.parametrize("dangling", [False, True])
def test_a_symlink_is_never_followed(tmp_path: Path, force: bool, dangling: bool) -> None:
    target = tmp_path / "target"
    if not dangling:
        target.write_text("precious")
    link = tmp_path / "a.aio"
    link.symlink_to(target)
    with pytest.raises(WriteError, match="symbolic link"):
        create_output(str(link), force=force)
    assert link.is_symlink()
    if dangling:
        assert not target.exists()  # O_CREAT through a dangling link would have made it
    else:
        assert target.read_text() == "precious"


def test_a_symlink_planted_after_the_check_is_refused_by_the_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "target"
    target.write_text("precious")
    link = tmp_path / "a.aio"
    real = output.refusal
    calls = []

    def racy(path: str, force: bool) -> WriteError | None:
        calls.append(path)
        if len(calls) == 1:  # the check passes, then the attacker is quicker
            link.symlink_to(target)
            return None
        return real(path, force)

    monkeypatch.setattr(output, "refusal", racy)
    with pytest.raises(WriteError, match="symbolic link"):
        create_output(str(link))
    assert target.read_text() == "precious"


def test_force_refuses_what_is_not_a_regular_file(tmp_path: Path) -> None:
    d = tmp_path / "dir.aio"
    d.mkdir()
    fifo = tmp_path / "fifo.aio"
    os.mkfifo(fifo)
    for p in (d, fifo):
        with pytest.raises(WriteError, match="not a regular file"):
            create_output(str(p), force=True)
        assert p.exists()


def test_write_errors_carry_path_reason_and_kind(tmp_path: Path) -> None:
    """Callers decide on the kind and reword with the reason, never by searching text."""
    p = tmp_path / "a.aio"
    p.write_text("x")
    link = tmp_path / "l.aio"
    link.symlink_to(p)
    d = tmp_path / "d.aio"
    d.mkdir()
    cases = [(str(p), False, "exists"), (str(link), True, "symlink"), (str(d), True, "not_regular"),
             (str(tmp_path / "no" / "x.aio"), False, "create")]
    for path, force, kind in cases:
        with pytest.raises(WriteError) as exc:
            create_output(path, force=force)
        assert (exc.value.path, exc.value.kind) == (path, kind)
        assert str(exc.value) == f"{path}: {exc.value.reason}" and exc.value.reason
        assert kind in output.WRITE_ERROR_KINDS
    r, w = os.pipe()
    os.close(r)
    with os.fdopen(w, "wb", buffering=0) as out:
        with pytest.raises(WriteError) as exc:
            writer.CaptureWriter(out)
    assert exc.value.kind == "broken_pipe" and exc.value.reason == "reader went away (broken pipe)"


def _record(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "record", *args], capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_record_refuses_an_existing_output_or_a_symlink_before_loading(tmp_path: Path) -> None:
    existing = tmp_path / "old.aio"
    existing.write_text("old capture")
    r = _record(["-o", str(existing), "--duration", "1s"])
    assert r.returncode == 1 and "already exists (use --force" in r.stderr, r.stderr
    assert existing.read_text() == "old capture"
    target = tmp_path / "target"
    target.write_text("precious")
    link = tmp_path / "link.aio"
    link.symlink_to(target)
    for extra in ([], ["--force"]):
        r = _record(["-o", str(link), "--duration", "1s", *extra])
        assert r.returncode == 1 and "is a symbolic link" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr
    assert target.read_text() == "precious"
    # a rotated recording checks its first numbered name the same way
    (tmp_path / "rot.0001.aio").symlink_to(target)
    r = _record(["-o", str(tmp_path / "rot.aio"), "--rotate-time", "1h", "--force"])
    assert r.returncode == 1 and "rot.0001.aio: is a symbolic link" in r.stderr, r.stderr


def test_record_redact_key_file_errors_are_usage_errors(tmp_path: Path) -> None:
    short = tmp_path / "short.key"
    short.write_bytes(b"tiny")
    r = _record(["-o", str(tmp_path / "x.aio"), "--redact-key-file", str(short)])
    assert r.returncode == 2 and "at least 16 bytes" in r.stderr, r.stderr
    r = _record(["-o", str(tmp_path / "x.aio"), "--redact-key-file", str(tmp_path / "missing")])
    assert r.returncode == 2 and "cannot read the key file" in r.stderr, r.stderr


def test_resolve_user() -> None:
    u = resolve_user("nobody")
    assert u.name == "nobody" and u.uid > 0 and u.gid in u.groups
    assert resolve_user(str(u.uid)).name == "nobody"
    from aether_rec.errors import UsageError

    with pytest.raises(UsageError, match="no such user"):
        resolve_user("no-such-user-zz")


def test_credentials_reads_this_process() -> None:
    c = credentials()
    assert c["uid"][1] == os.geteuid() and c["gid"][1] == os.getegid()
    assert {"capeff", "capprm", "capbnd", "groups"} <= set(c)


DROP = (
    "import json, os\n"
    "from aether_rec.recorder.privileges import drop_privileges, resolve_user\n"
    "creds = drop_privileges(resolve_user('nobody'))\n"
    "try:\n"
    "    os.setuid(0)\n"
    "    back = True\n"
    "except PermissionError:\n"
    "    back = False\n"
    "print(json.dumps({'creds': creds, 'back': back}))\n"
)


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
def test_drop_privileges_leaves_nothing_behind() -> None:
    r = subprocess.run([sys.executable, "-c", DROP], capture_output=True, text=True, timeout=60, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    u = resolve_user("nobody")
    c = doc["creds"]
    assert c["uid"] == [u.uid] * 4 and c["gid"] == [u.gid] * 4
    assert c["groups"] == sorted(u.groups)
    assert c["capeff"] == c["capprm"] == c["capamb"] == c["capbnd"] == 0
    assert c["no_new_privs"] == 1
    assert doc["back"] is False  # root cannot be taken back


def test_perf_losses_the_kernel_never_reported_are_counted() -> None:
    t = PerfMmapTransport(1)
    t.lost_by_cpu = {0: 100}
    got = t.unreported_losses([130, 7])
    assert [(x.cpu, x.count, x.kind) for x in got] == [(0, 30, "perf_buffer"), (1, 7, "perf_buffer")]
    assert t.unreported_losses([130, 7]) == []  # counted once
