"""``aether-rec redact``: no original name survives anywhere in the output, hashes are
stable under one key, events are unchanged, the CLI says what it did."""

from __future__ import annotations

import io
import os
import re
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zstandard
from click.testing import CliRunner
from fuzzing import blocks_of

import aether_rec
from aether_rec.cli import main
from aether_rec.format.blocks import CHNK
from aether_rec.format.chunk import Chunk
from aether_rec.format.synth import generate
from aether_rec.format.writer import CaptureWriter
from aether_rec.ops.redact import Redactor, redact

REPO = Path(__file__).resolve().parents[1]
HOST = "db-prod-secret-7.example.internal"
SECRETS = [
    HOST, "postgres", "nginx", "rsync", "kworker", "/var/lib", "data0.db", "pg_dump", "customersdb",
    "/home/alice", "alice", "secretproj", "Quarterly Report", "system.slice",
]
KEY = b"k" * 32


def _capture(path: Path, seed: int = 1) -> Path:
    generate(str(path), 3000, seed=seed, losses=2, batch=1000, chunk_events=1000, header={
        "hostname": HOST,
        "command": ["aether-rec", "record", "-o", "/home/alice/run.aio", "--", "pg_dump", "customersdb"],
        "filters": {"command": ["pg_dump", "customersdb"], "comm": ["postgres"]},
        "user_note": "secretproj",
    })
    return path


def _extra(path: Path) -> Path:
    """A capture with the metadata a recording has: procs with command lines, fds,
    cgroups, and a path with spaces and unicode."""
    buf = io.BytesIO()
    with CaptureWriter(buf, {"hostname": HOST, "command": ["x", "/home/alice/secretproj/run"]}) as w:
        w.write_meta("procs", [{"pid": 7, "ppid": 1, "comm": "postgres",
                                "cmdline": "pg_dump --dbname=customersdb -f /home/alice/out.sql"}])
        w.write_meta("fds", [{"pid": 7, "fd": 3, "path": "/home/alice/Quarterly Report.xlsx", "flags": 0}])
        w.write_meta("cgroups", [{"id": 9, "path": "/system.slice/postgresql.service"}])
        w.write_meta("devices", [{"dev": 1, "name": "nvme0n1"}])
        n = 10
        w.write_chunk(Chunk.from_columns({
            "ts": np.arange(n, dtype=np.uint64) + 1000, "lat": np.arange(n, dtype=np.uint64),
            "comm": np.array(["postgres", "nginx"] * 5, dtype=object),
            "path": np.array(["/home/alice/Quarterly Report.xlsx", "/var/lib/é/data0.db"] * 5, dtype=object),
            "source": np.array(["alice-laptop"] * n, dtype=object),
        }))
    path.write_bytes(buf.getvalue())
    return path


def _plaintext(data: bytes) -> bytes:
    """Every byte a reader could see: the file and each chunk body decompressed."""
    parts = [data]
    for b in blocks_of(data):
        if b.type == CHNK:
            slen = struct.unpack_from("<I", b.payload)[0]
            body = b.payload[4 + slen :]
            try:
                parts.append(zstandard.ZstdDecompressor().decompress(body))
            except zstandard.ZstdError:
                parts.append(body)
    return b"".join(parts)


@pytest.mark.parametrize("make", [_capture, _extra])
def test_no_original_name_remains_anywhere(tmp_path: Path, make: Any) -> None:
    src = make(tmp_path / "in.aio")
    assert any(s.encode() in _plaintext(src.read_bytes()) for s in SECRETS)
    out = tmp_path / "out.aio"
    redact(str(src), str(out), KEY)
    plain = _plaintext(out.read_bytes())
    for s in SECRETS + ["/é/", "alice-laptop"]:
        assert s.encode() not in plain, s
    assert KEY not in plain
    with aether_rec.open(str(out)) as cap:
        assert cap.header["redacted"] is True
        assert cap.header["redaction"]["scheme"] == "hmac-sha256"
        assert not cap.verify() and not cap.warnings


def test_structure_stays_readable(tmp_path: Path) -> None:
    out = tmp_path / "out.aio"
    redact(str(_extra(tmp_path / "in.aio")), str(out), KEY, keep_paths_under=["/system.slice"])
    with aether_rec.open(str(out)) as cap:
        chunk = next(cap.chunks())
        comms = set(chunk.strings("comm"))
        paths = set(chunk.strings("path"))
        procs = cap.meta("procs")
        assert cap.meta("devices") == [{"dev": 1, "name": "nvme0n1"}]
        assert cap.meta("cgroups")[0]["path"] == "/system.slice/postgresql.service"
    assert all(re.fullmatch(r"comm-[0-9a-f]{8}", c) for c in comms) and len(comms) == 2
    assert any(re.fullmatch(r"/p-[0-9a-f]{8}/p-[0-9a-f]{8}/p-[0-9a-f]{8}\.xlsx", p) for p in paths)
    assert any(re.fullmatch(r"(/p-[0-9a-f]{8}){3}/p-[0-9a-f]{8}\.db", p) for p in paths)
    # The same name in a column and in a table hashes the same way: still joinable.
    assert procs[0]["comm"] in comms
    h = "[0-9a-f]{8}"
    assert re.fullmatch(rf"arg-{h} --dbname=arg-{h} -f /p-{h}/p-{h}/p-{h}\.sql", procs[0]["cmdline"])
    with aether_rec.open(str(tmp_path / "in.aio")) as cap:
        assert procs[0]["pid"] == cap.meta("procs")[0]["pid"]


def test_events_latencies_losses_unchanged(tmp_path: Path) -> None:
    src = _capture(tmp_path / "in.aio")
    out = tmp_path / "out.aio"
    rep = redact(str(src), str(out), KEY)
    assert rep.events == 3000 and rep.losses == 2 and not rep.dropped
    with aether_rec.open(str(src)) as a, aether_rec.open(str(out)) as b:
        assert b.has_index and b.n_events == a.n_events
        assert [(x.cpu, x.count, x.t_first, x.t_last) for x in a.losses()] == \
            [(x.cpu, x.count, x.t_first, x.t_last) for x in b.losses()]
        for ca, cb in zip(a.chunks(), b.chunks()):
            assert set(ca.columns) == set(cb.columns)
            for name in ca.columns:  # string columns: the codes are the same
                assert np.array_equal(ca.columns[name], cb.columns[name]), name
            assert ca.dicts.keys() == cb.dicts.keys()
            assert ca.dicts["comm"] != cb.dicts["comm"]
        assert b.header["capture_id"] == a.header["capture_id"]


def test_hashes_are_stable_under_one_key_and_differ_across_keys(tmp_path: Path) -> None:
    src1, src2 = _capture(tmp_path / "a.aio", seed=1), _capture(tmp_path / "b.aio", seed=2)
    outs = {}
    for name, src, key in (("a1", src1, KEY), ("a2", src1, KEY), ("b1", src2, KEY), ("a3", src1, b"z" * 32)):
        redact(str(src), str(tmp_path / f"{name}.out"), key)
        with aether_rec.open(str(tmp_path / f"{name}.out")) as cap:
            outs[name] = (sorted(cap.to_numpy(["comm"])["comm"].tolist()), cap.header["hostname"],
                          cap.header["redaction"]["key_id"])
    assert outs["a1"] == outs["a2"]
    assert set(outs["a1"][0]) == set(outs["b1"][0])  # other capture, same names, same key
    assert outs["a1"][1] == outs["b1"][1] != outs["a3"][1]
    assert outs["a1"][2] != outs["a3"][2]
    # A random key (no key file) is not stored: two runs differ.
    redact(str(src1), str(tmp_path / "r1.out"))
    redact(str(src1), str(tmp_path / "r2.out"))
    with aether_rec.open(str(tmp_path / "r1.out")) as r1, aether_rec.open(str(tmp_path / "r2.out")) as r2:
        assert r1.header["hostname"] != r2.header["hostname"]
        assert r1.header["redaction"]["key"] == "random" and "key_id" not in r1.header["redaction"]


def test_redactor_chunk_keeps_codes_and_columns() -> None:
    chunk = Chunk.from_columns({"ts": np.arange(4, dtype=np.uint64),
                                "comm": np.array(["a", "b", "a", "c"], dtype=object)})
    r = Redactor(KEY)
    out = r.chunk(chunk)
    assert out.columns["comm"] is chunk.columns["comm"] and out.columns["ts"] is chunk.columns["ts"]
    assert out.dicts["comm"] == [r.comm(w) for w in chunk.dicts["comm"]]
    assert r.header({"hostname": "h"})["hostname"] == r.host("h")
    assert r.meta("fds", [{"path": "/a/b.c"}]) == [{"path": r.path("/a/b.c")}]
    assert r.path("pipe:[123]") == "pipe:[123]" and r.path("") == ""
    assert r.path("/a/../b/") .count("/") == 4
    assert len(r.path("/a" * 2000)) <= 4096


def test_unknown_column_types_are_dropped(tmp_path: Path) -> None:
    src = REPO / "format" / "vectors" / "008-unknown-columns.aio"
    assert src.exists(), "format/vectors/008-unknown-columns.aio is part of the repository"
    out = tmp_path / "out.aio"
    rep = redact(str(src), str(out), KEY)
    with aether_rec.open(str(src)) as a, aether_rec.open(str(out)) as b:
        assert b.n_events == a.n_events == rep.events
        assert not b.verify()


def test_damaged_input_is_redacted_as_far_as_it_reads(tmp_path: Path) -> None:
    data = _capture(tmp_path / "in.aio").read_bytes()
    cut = tmp_path / "cut.aio"
    cut.write_bytes(data[: len(data) * 2 // 3])
    rep = redact(str(cut), str(tmp_path / "out.aio"), KEY)
    assert rep.dropped and 0 < rep.events < 3000
    with aether_rec.open(str(tmp_path / "out.aio")) as cap:
        assert cap.n_events == rep.events and cap.has_index


# -- the command line ---------------------------------------------------------------------
def test_cli_redact(tmp_path: Path) -> None:
    src = _capture(tmp_path / "in.aio")
    keyf = tmp_path / "k"
    keyf.write_bytes(os.urandom(32))
    r = CliRunner().invoke(main, ["redact", str(src), "-o", str(tmp_path / "o.aio"), "--key-file", str(keyf)])
    assert r.exit_code == 0, r.output
    assert r.stdout == ""
    assert "redacted 3,000 events in 3 chunks" in r.stderr and "key id" in r.stderr
    assert (os.stat(tmp_path / "o.aio").st_mode & 0o777) == 0o600
    r = CliRunner().invoke(main, ["info", str(tmp_path / "o.aio")])
    assert "Redacted:" in r.stdout and HOST not in r.stdout

    # the output exists: exit 1, one line; --force overwrites
    r = CliRunner().invoke(main, ["redact", str(src), "-o", str(tmp_path / "o.aio")])
    assert r.exit_code == 1 and "already exists" in r.stderr and "Traceback" not in r.stderr
    r = CliRunner().invoke(main, ["redact", str(src), "-o", str(tmp_path / "o.aio"), "--force"])
    assert r.exit_code == 0 and "random key" in r.stderr

    # to stdout
    r = CliRunner().invoke(main, ["redact", str(src), "-o", "-"])
    assert r.exit_code == 0 and r.stdout_bytes[:4] == b"\x89AIO"


@pytest.mark.parametrize("args, code, msg", [
    (["MISSING", "-o", "OUT"], 1, "cannot open"),
    (["IN", "-o", "OUT", "--key-file", "SHORTKEY"], 2, "at least 16 bytes"),
    (["IN", "-o", "OUT", "--key-file", "NOKEY"], 2, "cannot read the key file"),
    (["NOTCAP", "-o", "OUT"], 1, "not an .aio capture"),
    (["IN"], 2, "Missing option"),
])
def test_cli_redact_errors(tmp_path: Path, args: list[str], code: int, msg: str) -> None:
    src = _capture(tmp_path / "in.aio")
    (tmp_path / "short").write_bytes(b"abc\n")
    (tmp_path / "notcap").write_bytes(b"hello world, not a capture at all")
    subst = {"IN": str(src), "OUT": str(tmp_path / "o.aio"), "MISSING": str(tmp_path / "nope.aio"),
             "SHORTKEY": str(tmp_path / "short"), "NOKEY": str(tmp_path / "nokey"),
             "NOTCAP": str(tmp_path / "notcap")}
    r = CliRunner().invoke(main, ["redact", *[subst.get(a, a) for a in args]])
    assert r.exit_code == code, (r.stdout, r.stderr)
    assert msg in r.stderr and "Traceback" not in r.stderr
    # one line, or click's usage block for a missing option
    assert len(r.stderr.strip().splitlines()) == (4 if "Missing" in msg else 1)
    if code == 1:
        assert not (tmp_path / "o.aio").exists() or (tmp_path / "o.aio").stat().st_size == 0


def test_header_for_a_recording_fills_in_and_hashes_this_machine() -> None:
    """record --redact: the writer would add this machine's hostname; header(local=True)
    adds it first and hashes it. Redacting a file never adds the redacting machine's."""
    import socket

    r = Redactor(KEY)
    h = r.header({"command": ["aether-rec", "record", "-o", "/srv/x.aio"],
                  "recorder": {"bcc_location": "/home/alice/venv/site-packages", "bcc_version": "0.26"}},
                 local=True)
    assert h["hostname"] == r.host(socket.gethostname()) and h["redacted"] is True
    assert h["recorder"]["bcc_version"] == "0.26" and "alice" not in h["recorder"]["bcc_location"]
    assert Redactor(KEY).header({})["hostname"] is None
