"""The capture commands through click's CliRunner: info, recover, generate, and bad input.
stdout, stderr and the exit code are checked separately."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import aether_rec
from aether_rec.cli import main

VECTORS = Path(__file__).resolve().parent.parent / "format" / "vectors"


def run(*args: str, input: bytes | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


def v(name: str) -> str:
    return str(VECTORS / f"{name}.aio")


def one_line_error(result: Result, *parts: str) -> None:
    assert result.exit_code == 1, (result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    assert "Traceback" not in result.stderr
    for part in parts:
        assert part in lines[0], (part, lines[0])


# -- info -----------------------------------------------------------------------------------------------
def test_info_text() -> None:
    r = run("info", v("002-several-chunks"))
    assert r.exit_code == 0 and r.stderr == ""
    out = r.stdout
    assert "Format version:       1.0  (indexed)" in out
    assert "Capture id:           ae700000000000000000000000000002" in out
    assert "Synthetic:            yes" in out
    assert "Recorded on:          vectors.example  kernel 6.1.0-vectors  x86_64  2 CPUs" in out
    assert "First event:          2026-01-01T00:00:00.000100Z" in out
    assert "Events:               10" in out
    assert "Chunks:               3  codec zstd" in out
    assert "LOST EVENTS:          17 (cpu1: 17; perf_buffer: 17)" in out
    assert "Lost between:         2026-01-01T00:00:00.000132Z and 2026-01-01T00:00:00.000149Z" in out
    assert "  syscall  pread" in out and "  block    flush" in out


def test_info_json() -> None:
    r = run("info", "--json", v("002-several-chunks"))
    assert r.exit_code == 0 and r.stderr == ""
    d = json.loads(r.stdout)
    assert d["schema"] == "aether-rec/info" and d["format_version"] == "1.0"
    assert (d["events"], d["chunks"], d["indexed"], d["lost"]) == (10, 3, True, 17)
    assert d["hostname"] == "vectors.example" and d["codec"] == "zstd"
    assert d["start"] == "2026-01-01T00:00:00.000100Z"
    by = {(e["layer"], e["op"]): e["events"] for e in d["by_layer_op"]}
    assert by[("syscall", "pread")] == 1 and by[("block", "write")] == 2 and sum(by.values()) == 10
    assert d["warnings"] == [] and "verify" not in d


def test_info_json_of_several_files_is_a_list() -> None:
    r = run("info", "--json", v("001-minimal"), v("003-no-index"))
    assert r.exit_code == 0
    docs = json.loads(r.stdout)
    assert [d["events"] for d in docs] == [3, 10] and [d["indexed"] for d in docs] == [True, False]


def test_info_verify_ok() -> None:
    r = run("info", "--verify", v("002-several-chunks"))
    assert r.exit_code == 0 and r.stderr == ""
    assert "Verify:               ok: every checksum and chunk checks out" in r.stdout
    r = run("info", "--verify", "--json", v("002-several-chunks"))
    assert json.loads(r.stdout)["verify"] == {"ok": True, "problems": []}


def test_info_verify_finds_a_bad_checksum() -> None:
    r = run("info", "--verify", v("005-bad-checksum"))
    assert r.exit_code == 1
    assert "Verify:               FAILED" in r.stdout
    assert "bad checksum in CHNK block" in r.stdout
    assert "aether-rec: warning:" in r.stderr and "bad checksum" in r.stderr
    assert r.stderr.strip().splitlines()[-1] == "Error: verification found problems (see above)"


def test_info_verify_reports_a_missing_index() -> None:
    r = run("info", "--verify", "--json", v("003-no-index"))
    assert r.exit_code == 1
    problems = json.loads(r.stdout)["verify"]["problems"]
    assert len(problems) == 1 and "no index" in problems[0] and "recover" in problems[0]


def test_info_reads_stdin() -> None:
    r = run("info", "--json", "-", input=(VECTORS / "001-minimal.aio").read_bytes())
    assert r.exit_code == 0 and json.loads(r.stdout)["events"] == 3


# -- bad input ---------------------------------------------------------------------------------------------
def test_missing_file(tmp_path: Path) -> None:
    one_line_error(run("info", str(tmp_path / "nope.aio")), "nope.aio", "no such file")


def test_directory_given_as_file(tmp_path: Path) -> None:
    one_line_error(run("info", str(tmp_path)), str(tmp_path), "is a directory")


def test_not_a_capture() -> None:
    r = run("info", v("010-not-a-capture"))
    one_line_error(r, "not an .aio capture (bad magic)")
    assert r.stderr.strip() == f"Error: {v('010-not-a-capture')}: not an .aio capture (bad magic)"


def test_empty_file_is_not_a_capture(tmp_path: Path) -> None:
    p = tmp_path / "empty.aio"
    p.write_bytes(b"")
    one_line_error(run("info", str(p)), "not an .aio capture (bad magic)")


def test_newer_major_version_names_both_versions() -> None:
    one_line_error(run("info", v("009-major-version")), "2.0", "(1.", "newer than this reader")


def test_truncated_file_warns_and_succeeds() -> None:
    r = run("info", v("004-truncated"))
    assert r.exit_code == 0
    assert "Events:               4" in r.stdout and "(no index)" in r.stdout
    (warning,) = r.stderr.strip().splitlines()
    assert warning.startswith("aether-rec: warning: ") and "cut short" in warning
    assert "recovered 1 chunks, 4 events" in warning


def test_truncated_file_is_an_error_with_strict() -> None:
    one_line_error(run("info", "--strict", v("004-truncated")), "cut short")


def test_header_cut_short_is_one_line(tmp_path: Path) -> None:
    p = tmp_path / "cut.aio"
    p.write_bytes((VECTORS / "002-several-chunks.aio").read_bytes()[:100])
    one_line_error(run("info", str(p)), "header block damaged")


# -- recover -------------------------------------------------------------------------------------------------
def test_recover(tmp_path: Path) -> None:
    out = tmp_path / "fixed.aio"
    r = run("recover", v("005-bad-checksum"), "-o", str(out))
    assert r.exit_code == 0 and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert any(ln.startswith("aether-rec: warning: ") and "dropped" in ln and "bad checksum" in ln
               for ln in lines)
    assert lines[-1] == ("aether-rec: recovered 6 events in 2 chunks, 1 loss blocks, 4 metadata blocks; "
                         "dropped 1 damaged pieces")
    r = run("info", "--verify", "--json", str(out))
    d = json.loads(r.stdout)
    assert r.exit_code == 0 and d["events"] == 6 and d["indexed"] and d["verify"]["ok"]


def test_recover_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    out = tmp_path / "fixed.aio"
    out.write_bytes(b"keep me")
    one_line_error(run("recover", v("004-truncated"), "-o", str(out)), "already exists", "--force")
    assert out.read_bytes() == b"keep me"
    r = run("recover", v("004-truncated"), "-o", str(out), "--force")
    assert r.exit_code == 0
    with aether_rec.open(out) as cap:
        assert cap.n_events == 4 and cap.has_index


def test_recover_to_stdout() -> None:
    r = run("recover", v("003-no-index"), "-o", "-")
    assert r.exit_code == 0 and r.stdout_bytes[:8] == b"\x89AIO\r\n\x1a\n"
    assert "recovered 10 events in 3 chunks" in r.stderr
    r2 = run("info", "--json", "-", input=r.stdout_bytes)
    assert json.loads(r2.stdout)["indexed"] is True


@pytest.mark.parametrize("name,message", [
    ("010-not-a-capture", "not an .aio capture (bad magic)"),
    ("009-major-version", "newer than this reader"),
])
def test_recover_bad_input(tmp_path: Path, name: str, message: str) -> None:
    one_line_error(run("recover", v(name), "-o", str(tmp_path / "x.aio")), message)
    assert not (tmp_path / "x.aio").exists()


def test_recover_missing_input(tmp_path: Path) -> None:
    one_line_error(run("recover", str(tmp_path / "nope.aio"), "-o", str(tmp_path / "x.aio")),
                   "nope.aio", "cannot open")
    assert not (tmp_path / "x.aio").exists()


# -- generate ----------------------------------------------------------------------------------------------
def test_generate(tmp_path: Path) -> None:
    out = tmp_path / "syn.aio"
    r = run("generate", "-n", "5000", "--seed", "3", "--losses", "2", "-o", str(out))
    assert r.exit_code == 0 and r.stdout == "" and r.stderr == ""
    r = run("info", "--json", str(out))
    d = json.loads(r.stdout)
    assert d["synthetic"] is True and d["events"] == 5000 and d["loss_blocks"] == 2 and d["lost"] > 0
    assert "Synthetic:            yes (generated, not recorded)" in run("info", str(out)).stdout
    with aether_rec.open(out) as cap:
        assert cap.header["generator"]["seed"] == 3


def test_generate_is_deterministic_and_refuses_existing_output(tmp_path: Path) -> None:
    a, b = tmp_path / "a.aio", tmp_path / "b.aio"
    assert run("generate", "-n", "1000", "-o", str(a)).exit_code == 0
    assert run("generate", "-n", "1000", "-o", str(b)).exit_code == 0
    with aether_rec.open(a) as ca, aether_rec.open(b) as cb:
        assert ca.to_numpy()["lat"].tolist() == cb.to_numpy()["lat"].tolist()
    one_line_error(run("generate", "-n", "10", "-o", str(a)), "already exists")


def test_generate_to_stdout() -> None:
    r = run("generate", "-n", "100", "-o", "-")
    assert r.exit_code == 0 and r.stdout_bytes[:8] == b"\x89AIO\r\n\x1a\n"
    d = json.loads(run("info", "--json", "-", input=r.stdout_bytes).stdout)
    assert d["events"] == 100 and d["indexed"]
