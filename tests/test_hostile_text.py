"""Strings from a hostile capture never reach the terminal as control characters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from click.testing import CliRunner

from aether_rec.cli import main
from aether_rec.format.writer import CaptureWriter

EVIL_COMM = "evil\x1b]0;pwned\x07"
EVIL_PATH = "/tmp/x\x1b[2J\nFAKE LINE"


def _capture(path: Path) -> None:
    n = 3
    with CaptureWriter(str(path), {"hostname": "host\x1b[31m"}) as w:
        w.write_events({
            "ts": np.arange(n, dtype=np.uint64) * 1000 + 10**9,
            "lat": np.full(n, 5000, np.uint64),
            "pid": np.full(n, 7, np.uint32),
            "tid": np.full(n, 7, np.uint32),
            "layer": np.ones(n, np.uint8),
            "op": np.ones(n, np.uint8),
            "fd": np.full(n, 3, np.int32),
            "comm": np.array([EVIL_COMM] * n, dtype=object),
            "path": np.array([EVIL_PATH] * n, dtype=object),
        })


def test_text_outputs_escape_control_characters(tmp_path: Path) -> None:
    cap = tmp_path / "evil.aio"
    _capture(cap)
    runner = CliRunner()
    for args in (["stats", str(cap)], ["replay", str(cap)], ["replay", "--format", "csv", str(cap)],
                 ["info", str(cap)]):
        res = runner.invoke(main, args)
        assert res.exit_code == 0, (args, res.stderr)
        assert "\x1b" not in res.stdout and "\x07" not in res.stdout, args
        assert "FAKE LINE" not in res.stdout.splitlines()[-1:], args
    replay = runner.invoke(main, ["replay", str(cap)]).stdout
    assert "evil\\x1b]0;pwned" in replay  # COMM is cut to 16 columns
    assert "/tmp/x\\x1b[2J\\nFAKE LINE" in replay
    # json keeps the exact strings, escaped by JSON itself
    js = runner.invoke(main, ["replay", "--format", "jsonl", str(cap)]).stdout
    assert "\\u001b]0;pwned\\u0007" in js and "\x1b" not in js
