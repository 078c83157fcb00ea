"""The offline commands through the real CLI: data on stdout, one-line messages on stderr, and
exit 0 / 1 (runtime) / 2 (usage) for every bad input the issue lists."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from jsonschema_mini import validate
from ops_common import make_capture, read_all

from aether_rec.cli import COMMANDS, main

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((ROOT / "docs" / "stats-json.schema.json").read_text())


@pytest.fixture(scope="module")
def cap(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_capture(tmp_path_factory.mktemp("cli") / "a.aio", 60_000, seed=1, losses=2)


def run(*args: str) -> Result:
    # click >= 8.2 keeps stdout and stderr apart (result.stdout / result.stderr)
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.mark.parametrize("cmd", sorted(COMMANDS))
def test_every_command_has_help_with_examples(cmd: str) -> None:
    r = run(cmd, "--help")
    assert r.exit_code == 0
    assert "Example" in r.stdout and f"aether-rec {cmd}" in r.stdout


def test_stats_text_and_json(cap: Path) -> None:
    r = run("stats", str(cap))
    assert r.exit_code == 0, r.stderr
    assert "latency (percentiles within" in r.stdout and "LOST EVENTS" in r.stdout
    assert "lost" in r.stderr  # the loss warning also goes to stderr
    r = run("stats", str(cap), "--json", "--by", "comm", "--interval", "500ms")
    assert r.exit_code == 0
    doc = json.loads(r.stdout)
    assert validate(doc, SCHEMA) == []
    assert doc["events"] == 60_000 and doc["groups"]["by"] == ["comm"]
    assert "warning" in r.stderr and r.stderr.count("\n") == 1


def test_stats_shortcuts(cap: Path) -> None:
    r = run("stats", str(cap), "--json", "--layer", "block", "--min-latency", "1ms", "--comm", "post*")
    doc = json.loads(r.stdout)
    assert doc["filter"] == 'comm in ("post*") and lat >= 1ms and layer in (block)'
    assert {row["layer"] for row in doc["by_layer_op"]} == {"block"}
    assert doc["latency"]["min"] >= 1_000_000


def test_filter_roundtrip(tmp_path: Path, cap: Path) -> None:
    out = tmp_path / "f.aio"
    r = run("filter", str(cap), "-o", str(out), "lat > 1ms", "--pid", "2201")
    assert r.exit_code == 0, r.stderr
    assert r.stdout == ""
    assert "kept" in r.stderr
    data = read_all(out)
    assert (data["pid"] == 2201).all() and (data["lat"] > 1_000_000).all()
    r = run("filter", str(cap), "-o", str(out), "lat > 1ms")
    assert r.exit_code == 1 and "already exists" in r.stderr
    r = run("filter", str(cap), "-o", str(out), "lat > 1ms", "--force")
    assert r.exit_code == 0


def _bad(args: list[str], code: int, fragment: str) -> Result:
    r = run(*args)
    assert r.exit_code == code, (args, r.exit_code, r.stdout, r.stderr)
    assert fragment in r.stderr, (fragment, r.stderr)
    assert r.stdout == ""
    return r


def test_bad_expressions_exit_2_with_caret(tmp_path: Path, cap: Path) -> None:
    out = str(tmp_path / "o.aio")
    r = _bad(["filter", str(cap), "-o", out, "latt > 5ms"], 2, "unknown field 'latt'")
    assert "  latt > 5ms\n  ^^^^" in r.stderr
    _bad(["filter", str(cap), "-o", out, "lat > 5 kb"], 2, "expected 'and', 'or'")
    _bad(["filter", str(cap), "-o", out, "lat > 5K"], 2, "bad unit 'K'")
    _bad(["filter", str(cap), "-o", out, "(lat > 5ms"], 2, "unbalanced parenthesis")
    _bad(["filter", str(cap), "-o", out, "lat > 5ms)"], 2, "unbalanced parenthesis")
    _bad(["stats", str(cap), "-e", "op in (read, nope)"], 2, "unknown op 'nope'")
    assert not Path(out).exists()


def test_bad_options_exit_2(cap: Path, tmp_path: Path) -> None:
    _bad(["stats", str(cap), "--by", "nope"], 2, "unknown column 'nope'")
    _bad(["stats", str(cap), "--interval", "5xs"], 2, "bad unit 'xs'")
    _bad(["stats", str(cap), "--interval", "1ns"], 2, "coarser interval")
    _bad(["stats", str(cap), "--since", "yesterday"], 2, "bad time 'yesterday'")
    _bad(["stats", str(cap), "--since", "+2s", "--until", "+1s"], 2, "is not after")
    _bad(["stats", str(cap), "--min-latency", "5"], 2, "needs a unit")
    _bad(["filter", str(cap), "-o", str(cap)], 2, "would overwrite the input")


def test_missing_and_damaged_files_exit_1(tmp_path: Path, cap: Path) -> None:
    _bad(["stats", str(tmp_path / "missing.aio")], 1, "no such file")
    not_cap = tmp_path / "junk.aio"
    not_cap.write_bytes(b"this is not a capture at all" * 10)
    r = run("stats", str(not_cap))
    assert r.exit_code == 1 and r.stderr.startswith("Error:") and r.stderr.count("\n") == 1
    # newer major version
    blob = bytearray(cap.read_bytes())
    newer = tmp_path / "newer.aio"
    from aether_rec.format import blocks

    blob[len(blocks.MAGIC)] = blocks.VERSION_MAJOR + 1  # preamble: magic, u16 major, u16 minor
    newer.write_bytes(bytes(blob))
    r = run("stats", str(newer))
    assert r.exit_code == 1 and "version" in r.stderr.lower(), r.stderr


def test_damaged_capture_read_as_far_as_possible(tmp_path: Path) -> None:
    blob = make_capture(tmp_path / "src.aio", 60_000, seed=2, chunk_events=10_000).read_bytes()
    cut = tmp_path / "cut.aio"
    cut.write_bytes(blob[: len(blob) * 2 // 3])
    r = run("stats", str(cut), "--json")
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert 0 < doc["events"] < 60_000
    assert "warning" in r.stderr
