"""The C allocator setting of the offline commands (aether_rec/allocator.py), checked by the
kernel's own count of page faults (getrusage's ru_minflt), not by anything of ours."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import aether_rec.allocator
from aether_rec.cli import main

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

# What an offline command does per chunk: 1 MiB columns concatenated and gathered, freed,
# again. Prints the minor page faults of the loop (after one warm-up round).
CHUNK_LOOP = """
import json, resource, sys
import numpy as np
from aether_rec.allocator import tune_allocator
applied = tune_allocator() if sys.argv[1] == "tuned" else False
rng = np.random.default_rng(0)
a, b = rng.integers(0, 2**40, 131072).astype(np.uint64), rng.integers(0, 2**40, 131072).astype(np.uint64)
perm = np.argsort(np.concatenate([a, b]), kind="stable")
def chunk():
    return int(np.take(np.concatenate([a, b]), perm)[-1])
chunk()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(40):
    chunk()
print(json.dumps({"applied": applied, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""


def chunk_loop(mode: str, **env: str) -> dict[str, Any]:
    clean = {k: v for k, v in os.environ.items()
             if k not in aether_rec.allocator.USER_SETTINGS and k != "GLIBC_TUNABLES"}
    out = subprocess.run([sys.executable, "-c", CHUNK_LOOP, mode], env={**clean, **env},
                         capture_output=True, text=True, check=True)
    return dict(json.loads(out.stdout))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_freed_chunk_memory_is_reused_not_faulted_in_again() -> None:
    default = chunk_loop("default")
    tuned = chunk_loop("tuned")
    assert tuned["applied"] is True
    # glibc's default: each round's 4 MiB (two 2 MiB arrays) handed back and faulted in
    # again, 1,024 pages a round; tuned: the heap keeps them
    assert default["faults"] >= 40 * 400, default
    assert tuned["faults"] <= default["faults"] // 20, (tuned, default)


def test_the_users_allocator_settings_are_left_alone() -> None:
    for env in ({"MALLOC_TRIM_THRESHOLD_": "1000000"}, {"MALLOC_MMAP_THRESHOLD_": "65536"},
                {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1000000"}):
        assert chunk_loop("tuned", **env)["applied"] is False, env


def test_bulk_commands_tune_the_allocator_and_record_does_not(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(aether_rec.allocator, "tune_allocator", lambda: calls.append(1) or True)
    runner = CliRunner()
    res = runner.invoke(main, ["stats", str(FIXTURES / "mixed.aio")])
    assert res.exit_code == 0, res.output
    assert calls == [1]
    for cmd in (["record", "--help"], ["doctor", "--help"]):
        res = runner.invoke(main, cmd)
        assert res.exit_code == 0, res.output
        assert calls == [1], cmd
    res = runner.invoke(main, ["replay", "--format", "csv", str(FIXTURES / "mixed.aio")])
    assert res.exit_code == 0, res.output
    assert calls == [1, 1]
