"""Terminal manners: progress on stderr only on a terminal (checked under a real pty),
--quiet, colour with NO_COLOR/--color, and the stats formatting fixes."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from ops_common import make_capture

from aether_rec.cli import main
from aether_rec.ops.report import BOX_WIDTH, fmt_iops, loss_box

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_capture(tmp_path_factory.mktemp("term") / "big.aio", 1_500_000, seed=2)


def run_with_pty_stderr(args: list[str], env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run the CLI with stderr on a pseudo-terminal, stdout on a pipe."""
    master, slave = pty.openpty()
    e = dict(os.environ)
    e.pop("NO_COLOR", None)
    e.update(env or {})
    proc = subprocess.Popen([sys.executable, "-c", "from aether_rec.cli import main; main()", *args],
                            stdout=subprocess.PIPE, stderr=slave, env=e)
    os.close(slave)
    err = b""
    out = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        r, _, _ = select.select([master], [], [], 0.1)
        if r:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                chunk = b""
            if not chunk and proc.poll() is not None:
                break
            err += chunk
        elif proc.poll() is not None:
            break
    assert proc.stdout is not None
    out = proc.stdout.read()
    proc.wait()
    os.close(master)
    return proc.returncode, out.decode(), err.decode(errors="replace")


def test_progress_on_a_terminal_and_not_otherwise(big: Path) -> None:
    env = {"AETHER_PROGRESS_DELAY": "0"}  # draw at once, however fast this machine is
    args = ["stats", str(big), "--no-histogram", "--top", "0", "--by", "comm,pid,tid"]
    code, out, err = run_with_pty_stderr(args, env)
    assert code == 0, err
    assert "events" in out
    assert "stats" in err and "%" in err and "MiB/s" in err and " of " in err  # label, percent, bytes, rate
    assert "100%" in err
    code, out, err = run_with_pty_stderr([*args, "--quiet"], env)
    assert code == 0 and "%" not in err and "events" in out
    # the default delay: work shorter than a second draws nothing
    code, out, err = run_with_pty_stderr(["stats", str(FIXTURES / "mixed.aio"), "--top", "0"])
    assert code == 0 and "%" not in err
    # stderr not a terminal (CliRunner): nothing but the data
    r = CliRunner().invoke(main, ["stats", str(big), "--no-histogram", "--top", "0"])
    assert r.exit_code == 0 and r.stderr == ""


BAR = re.compile(r"\[[#-]+\]\s+\d+%")  # click's bar: [####----]  42%
MIXED = str(FIXTURES / "mixed.aio")

# Every offline command that reads whole captures: (name, its arguments given the big capture and
# a fresh output directory). Each must draw the bar on a terminal and nothing otherwise.
READERS: list[tuple[str, Callable[[str, Path], list[str]]]] = [
    ("info", lambda c, d: ["info", c]),
    ("stats", lambda c, d: ["stats", c, "--no-histogram", "--top", "0"]),
    ("export", lambda c, d: ["export", c, "--format", "csv", "-o", str(d / "x.csv")]),
    ("export", lambda c, d: ["export", c, MIXED, "--format", "jsonl", "-o", str(d / "x.jsonl")]),
    ("filter", lambda c, d: ["filter", c, "-o", str(d / "f.aio"), "lat > 1ms"]),
    ("filter", lambda c, d: ["filter", c, MIXED, "-o", str(d / "f.aio"), "lat > 1ms"]),
    ("merge", lambda c, d: ["merge", c, MIXED, "-o", str(d / "m.aio")]),
    ("replay", lambda c, d: ["replay", c, "lat > 100s", "--format", "csv"]),
    ("report", lambda c, d: ["report", c, "-o", str(d / "r.html")]),
    ("plot", lambda c, d: ["plot", "heatmap", c, "-o", str(d / "h.png")]),
    ("diff", lambda c, d: ["diff", c, MIXED]),
    ("recover", lambda c, d: ["recover", c, "-o", str(d / "r.aio")]),
    ("redact", lambda c, d: ["redact", c, "-o", str(d / "r.aio")]),
    ("sql", lambda c, d: ["sql", "SELECT count(*) AS n FROM events", c]),
]


@pytest.mark.parametrize("label,argv", READERS, ids=[f"{r[0]}-{i}" for i, r in enumerate(READERS)])
def test_every_reading_command_shows_progress_only_on_a_terminal(
    label: str, argv: Callable[[str, Path], list[str]], big: Path, tmp_path: Path
) -> None:
    if label == "plot":
        pytest.importorskip("matplotlib")
    if label == "sql":
        pytest.importorskip("duckdb")
    env = {"AETHER_PROGRESS_DELAY": "0"}
    dirs = [tmp_path / d for d in ("tty", "quiet", "pipe")]
    for d in dirs:
        d.mkdir()
    code, _, err = run_with_pty_stderr(argv(str(big), dirs[0]), env)
    assert code == 0, err
    assert BAR.search(err) and label in err and "100%" in err, err
    code, _, err = run_with_pty_stderr([*argv(str(big), dirs[1]), "--quiet"], env)
    assert code == 0 and not BAR.search(err), err
    # stderr a pipe: no bar, and the command's own messages unchanged
    cli = [sys.executable, "-c", "from aether_rec.cli import main; main()"]
    proc = subprocess.run([*cli, *argv(str(big), dirs[2])], capture_output=True, env={**os.environ, **env},
                          timeout=120)
    err = proc.stderr.decode(errors="replace")
    assert proc.returncode == 0 and not BAR.search(err) and "\r" not in err, err


def test_status_line() -> None:
    from aether_rec.cli.terminal import status

    assert status(50 << 20, 100 << 20, 2.0) == "50.0 MiB of 100.0 MiB  25.0 MiB/s  ETA 0:02"
    assert status(100, 100, 1.0) == "100 B of 100 B  100 B/s"


def test_tracked_progress_counts_the_whole_file(big: Path) -> None:
    from aether_rec.cli import terminal
    from aether_rec.cli.offline import open_captures
    from aether_rec.ops.stats import compute

    with open_captures([str(big)], progress=True) as caps:
        tracked = list(terminal.SETTINGS.tracked)
        assert len(tracked) == 1
        with terminal.progress("t"):
            compute(caps)
        t = tracked[0]
        # every chunk was read once: nearly the whole file (all but header, index, trailer)
        assert 0.9 * t.size < t.done <= t.size
    assert terminal.SETTINGS.tracked == []


def test_no_color_and_color_option(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    losses = str(FIXTURES / "losses.aio")
    r = CliRunner().invoke(main, ["stats", losses, "--color", "always"])
    assert r.exit_code == 0 and ANSI.search(r.stdout)
    banner = [ln for ln in r.stdout.splitlines() if "LOST EVENTS" in ln]
    assert banner and "\x1b[31" in banner[0]  # red
    assert re.search(r"\|\x1b\[36m\*+", r.stdout)  # cyan histogram bars
    r = CliRunner().invoke(main, ["stats", losses, "--color", "never"])
    assert r.exit_code == 0 and not ANSI.search(r.output)
    monkeypatch.setenv("NO_COLOR", "1")
    r = CliRunner().invoke(main, ["stats", losses])
    assert not ANSI.search(r.output)
    r = CliRunner().invoke(main, ["stats", losses, "--color", "auto"])
    assert not ANSI.search(r.output)
    r = CliRunner().invoke(main, ["stats", losses, "--color", "always"])
    assert ANSI.search(r.stdout)


def test_no_color_under_a_pty(big: Path) -> None:
    code, _, err = run_with_pty_stderr(["stats", str(FIXTURES / "losses.aio")], {"NO_COLOR": "1"})
    assert code == 0 and "lost" in err and not ANSI.search(err)
    code, _, err = run_with_pty_stderr(["stats", str(FIXTURES / "losses.aio")], {"NO_COLOR": ""})
    assert code == 0 and ANSI.search(err)  # the loss warning in red on a terminal


def test_iops_one_format() -> None:
    assert [fmt_iops(v) for v in (3758.0, 11_612.4, 0.88, 1_234_567.0)] == [
        "3,758.0", "11,612.4", "0.9", "1,234,567.0"]
    r = CliRunner().invoke(main, ["stats", str(FIXTURES / "mixed.aio"), "--no-histogram"])
    rows = [ln.split() for ln in r.stdout.splitlines() if ln.startswith(("  syscall", "  block"))]
    iops = [row[3] for row in rows]
    assert iops and all(re.fullmatch(r"\d{1,3}(,\d{3})*\.\d", v) for v in iops), iops


def test_loss_banner_stays_in_its_box() -> None:
    r = CliRunner().invoke(main, ["stats", str(FIXTURES / "losses.aio")])
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("!")]
    assert len(lines) >= 4 and all(len(ln) == BOX_WIDTH for ln in lines)
    assert all(ln.endswith("!!") for ln in lines)
    long = loss_box(["x" * 300, "a " * 100])
    assert all(len(ln) == BOX_WIDTH for ln in long)
    assert "".join(ln[3:-3].strip() for ln in long[1:-1]).count("x") == 300


@pytest.mark.parametrize("unit,head,div", [("ns", "nsecs", 1), ("us", "usecs", 1000), ("ms", "msecs", 10**6)])
def test_stats_histogram_unit(unit: str, head: str, div: int) -> None:
    r = CliRunner().invoke(main, ["stats", str(FIXTURES / "mixed.aio"), "--unit", unit, "--top", "0"])
    assert r.exit_code == 0
    assert head in r.stdout
    # the last row of the block histogram covers the block max in that unit
    text = r.stdout.split("latency histogram: block")[1]
    rows = re.findall(r"^\s+(\d+) -> (\d+)\s+: (\d+)", text, re.M)
    assert rows
    lo, hi = int(rows[-1][0]), int(rows[-1][1])
    r2 = CliRunner().invoke(main, ["stats", str(FIXTURES / "mixed.aio"), "--layer", "block", "--json"])
    import json

    mx = json.loads(r2.stdout)["latency"]["max"] / div
    assert lo <= mx <= hi + 1
    r = CliRunner().invoke(main, ["stats", str(FIXTURES / "mixed.aio"), "--unit", "s"])
    assert r.exit_code == 2


def test_errors_warnings_and_verdicts_in_colour(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["stats", str(tmp_path / "missing.aio"), "--color", "always"])
    assert r.exit_code == 1 and "\x1b[31m" in r.stderr and "no such file" in r.stderr
    r = CliRunner().invoke(main, ["stats", str(tmp_path / "missing.aio"), "--color", "never"])
    assert r.exit_code == 1 and not ANSI.search(r.stderr) and r.stderr.startswith("Error: ")
    r = CliRunner().invoke(main, ["stats", str(FIXTURES / "losses.aio"), "--color", "always"])
    assert re.search(r"\x1b\[33m\x1b\[1mwarning:", r.stderr)
    fast, slow = str(FIXTURES / "rotated.0001.aio"), str(FIXTURES / "losses.aio")
    r = CliRunner().invoke(main, ["diff", fast, slow, "--color", "always"])
    assert r.exit_code == 0
    ends = ("slower\x1b[0m", "faster\x1b[0m")
    verdicts = [ln for ln in r.stdout.splitlines() if ln.rstrip().endswith(ends)]
    assert verdicts
    r = CliRunner().invoke(main, ["diff", fast, slow])
    assert not ANSI.search(r.output)
