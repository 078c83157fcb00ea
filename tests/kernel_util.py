"""Shared helpers for the real-kernel recorder tests (tests/test_kernel_*.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import aether_rec

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
HELPER = str(HERE / "recorder_helper.py")
# the CLI, run by this interpreter (works from a checkout and an installed package)
CLI = [sys.executable, "-c", "from aether_rec.cli import main; main()"]


def kernel_ready() -> str:
    """Why real-kernel tests cannot run here ("" when they can)."""
    if sys.platform != "linux":
        return "not Linux"
    if os.geteuid() != 0:
        return "needs root"
    from aether_rec.errors import AetherError
    from aether_rec.recorder.bccload import load_bcc

    try:
        load_bcc()
    except AetherError as e:
        return str(e)
    return ""


@pytest.fixture(scope="session")
def kernel() -> None:
    why = kernel_ready()
    if why:
        pytest.skip(f"real-kernel test: {why}")


@dataclass
class Run:
    rc: int
    stdout: str
    stderr: str


def rec(
    args: list[str], timeout: float = 120, env: dict[str, str] | None = None, cwd: str | None = None
) -> Run:
    """Run ``aether-rec ARGS`` to completion."""
    p = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)
    return Run(p.returncode, p.stdout, p.stderr)


def helper(*args: str) -> list[str]:
    return [sys.executable, HELPER, *args]


def helper_doc(stdout: str) -> dict[str, Any]:
    """The helper's JSON line (the last line of its stdout that parses)."""
    for line in reversed(stdout.strip().splitlines()):
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict):
            return doc
    raise AssertionError(f"no helper JSON in {stdout!r}")


def load(path: str | Path) -> tuple[Any, dict[str, np.ndarray]]:
    """(header, columns) of a capture, checking it is complete and indexed."""
    with aether_rec.open(str(path)) as cap:
        assert cap.has_index, f"{path}: no index"
        assert not cap.warnings, cap.warnings
        cols = cap.to_numpy()
        return cap, cols


def capture_info(path: str | Path) -> dict[str, Any]:
    with aether_rec.open(str(path)) as cap:
        return {
            "header": cap.header,
            "has_index": cap.has_index,
            "n_events": cap.n_events,
            "losses": cap.losses(),
            "stats": cap.index_stats,
            "warnings": list(cap.warnings),
            "fds": cap.meta("fds"),
            "procs": cap.meta("procs"),
            "devices": cap.meta("devices"),
            "clock": cap.meta("clock"),
        }


def op_code(name: str) -> int:
    from aether_rec.schema import OP_CODE

    return OP_CODE[name]


def layer_code(name: str) -> int:
    from aether_rec.schema import LAYER_CODE

    return LAYER_CODE[name]


def backing_disk(path: str) -> tuple[int, str] | None:
    """(kernel dev_t, name) of the whole disk holding ``path``, or None if it is not on
    a block device (tmpfs, overlay...). Block tracepoints report the disk, not the
    partition."""
    st = os.stat(path)
    major, minor = os.major(st.st_dev), os.minor(st.st_dev)
    sysdir = Path(f"/sys/dev/block/{major}:{minor}")
    if not sysdir.exists():
        return None
    real = sysdir.resolve()
    if (real / "partition").exists():
        real = real.parent
    maj, mnr = (int(x) for x in (real / "dev").read_text().split(":"))
    return (maj << 20) | mnr, real.name


def block_dir(tmp_path: Path) -> tuple[Path, int, str] | None:
    """A writable directory on a real block device (tmp_path first, then /var/tmp, /work)."""
    for cand in (tmp_path, Path("/var/tmp"), ROOT.parent, ROOT):
        try:
            disk = backing_disk(str(cand))
        except OSError:
            continue
        if disk is not None and os.access(cand, os.W_OK):
            d = cand / f".aether-test-{os.getpid()}" if cand != tmp_path else cand
            d.mkdir(exist_ok=True)
            return d, disk[0], disk[1]
    return None
