"""`aether-rec --help` and the completion of command names load no command module (so not
numpy): their text comes from cli.SUMMARIES, which must say what each command's help says.
`info` of a 1.2 capture reads the header, the trailer and the SUMM block, and loads no numpy
either (issue 13: 0.2 s whatever the capture's size)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from aether_rec.cli import COMMANDS, SUMMARIES, main, summary

VECTORS = Path(__file__).resolve().parents[1] / "format" / "vectors"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_summary_is_the_commands_own_short_help(name: str) -> None:
    cmd = main.get_command(click.Context(main), name)
    assert cmd is not None
    for limit in (30, 45, 60, 74, 200):
        assert summary(name, limit) == cmd.get_short_help_str(limit)
    assert set(SUMMARIES) == set(COMMANDS)


PROBE = (
    "import sys\n"
    "from aether_rec.console import main\n"
    "sys.argv[0] = 'aether-rec'\n"
    "try:\n"
    "    main()\n"
    "except SystemExit:\n"
    "    pass\n"
    "sys.stderr.write('LOADED ' + ' '.join(sorted(m for m in sys.modules if m == 'numpy' or "
    "m.startswith('aether_rec.cli.') or m.startswith('aether_rec.ops'))))\n"
)


def _loaded(argv: list[str], env: dict[str, str] | None = None) -> tuple[str, set[str]]:
    r = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True,
                       env={**os.environ, **(env or {})}, timeout=60)
    line = [x for x in r.stderr.splitlines() if x.startswith("LOADED")][-1]
    return r.stdout, set(line.split()[1:])


def test_help_loads_no_command_module() -> None:
    out, loaded = _loaded(["--help"])
    assert loaded == set()
    for name in COMMANDS:
        assert f"  {name} " in out


def test_command_name_completion_loads_no_command_module() -> None:
    out, loaded = _loaded([], {"_AETHER_REC_COMPLETE": "zsh_complete", "COMP_WORDS": "aether-rec st",
                               "COMP_CWORD": "1"})
    assert loaded == set()
    assert out.split("\n")[:3] == ["plain", "stats", summary("stats")]


INFO_PROBE = (
    "import sys\n"
    "from aether_rec.cli import main\n"
    "main(['info', *sys.argv[1:]], prog_name='aether-rec', standalone_mode=False)\n"
    "sys.stderr.write('NUMPY ' + str('numpy' in sys.modules))\n"
)


def _info(args: list[str]) -> tuple[str, bool]:
    """``aether-rec info ARGS`` in a fresh interpreter: its stdout, and whether numpy was loaded."""
    r = subprocess.run([sys.executable, "-c", INFO_PROBE, *args], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout, r.stderr.splitlines()[-1] == "NUMPY True"


@pytest.fixture(scope="module")
def capture_1_2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from aether_rec.format.synth import generate

    path = tmp_path_factory.mktemp("info") / "run.aio"
    generate(str(path), 20_000, seed=5, losses=2, chunk_events=3000)
    return path


def test_info_of_a_1_2_capture_loads_no_numpy(capture_1_2: Path) -> None:
    out, numpy = _info([str(capture_1_2)])
    assert not numpy
    assert "Events:               20,000" in out and "Events by layer and op:" in out
    out, numpy = _info(["--json", str(capture_1_2)])
    doc = json.loads(out)
    assert not numpy
    assert doc["from_summary"] and doc["events"] == 20_000 and doc["start"].startswith("20")
    assert sum(e["events"] for e in doc["by_layer_op"]) == 20_000 and doc["loss_blocks"] == 2


@pytest.mark.parametrize("args", [["--verify"], ["--scan", "--json"]], ids=["verify", "scan"])
def test_info_that_reads_chunks_still_works_with_numpy(capture_1_2: Path, args: list[str]) -> None:
    """What reads chunks (--verify, --scan) loads numpy where it needs it: the probe sees it."""
    out, numpy = _info([*args, str(capture_1_2)])
    assert numpy
    assert "Verify:               ok" in out if args == ["--verify"] else json.loads(out)["events"] == 20_000


def test_info_of_a_1_1_capture_counts_from_the_chunks() -> None:
    out, numpy = _info(["--json", str(VECTORS / "015-version-1.1.aio")])
    doc = json.loads(out)
    assert numpy and not doc["from_summary"] and doc["format_version"] == "1.1"
    assert sum(e["events"] for e in doc["by_layer_op"]) == doc["events"] > 0
