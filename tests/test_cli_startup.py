"""`aether-rec --help` and the completion of command names load no command module (so not
numpy): their text comes from cli.SUMMARIES, which must say what each command's help says."""

from __future__ import annotations

import os
import subprocess
import sys

import click
import pytest

from aether_rec.cli import COMMANDS, SUMMARIES, main, summary


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
