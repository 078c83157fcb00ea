"""The kernel matrix's own logic (tests/vm), without booting anything: how a kernel is
picked, when a run counts as failed (never a silent skip), and the guest's vfs-in-syscall
pairing check on hand-made events."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from aether_rec.schema import LAYER_CODE, OP_CODE

VM = Path(__file__).resolve().parent / "vm"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"vm_{name}", VM / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


matrix = _load("matrix")
guest = _load("guest")

NAMES = [
    "linux-image-5.10.0-30-amd64", "linux-image-5.10.0-32-amd64", "linux-image-5.10.0-32-rt-amd64",
    "linux-image-5.10.0-32-amd64-dbg", "linux-image-6.1.0-50-amd64", "linux-image-6.1.0-9-amd64",
    "linux-image-6.12.117+deb13-amd64", "linux-image-6.12.99+deb13-amd64",
    "linux-image-7.2.13+deb14-amd64", "linux-image-7.2.13+deb14-cloud-amd64", "linux-image-amd64",
]


@pytest.mark.parametrize(
    ("series", "want"),
    [("5.10", "5.10.0-32-amd64"), ("6.1", "6.1.0-50-amd64"), ("6.12", "6.12.117+deb13-amd64"),
     ("newest", "7.2.13+deb14-amd64"), ("4.19", None)],
)
def test_pick_release_takes_the_newest_plain_amd64_image(series: str, want: str | None) -> None:
    assert matrix.pick_release(NAMES, series) == want


def _kernel(series: str = "5.10") -> object:
    return matrix.Kernel(series, "5.10.0-32-amd64", Path("/nonexistent"))


DONE = {"check": "done", "status": "pass", "reason": "0 failed"}


def test_judge_passes_only_a_complete_clean_run() -> None:
    rows = [{"check": "cmd", "status": "pass", "reason": "", "layer": "vfs"}, DONE]
    assert matrix.judge(_kernel(), rows, 0, 1.0) == []
    assert "VM exit status 3" in matrix.judge(_kernel(), rows, 3, 1.0)


def test_judge_fails_a_guest_that_did_not_finish() -> None:
    rows = [{"check": "doctor", "status": "pass", "reason": ""}]
    assert any("did not finish" in w for w in matrix.judge(_kernel(), rows, 0, 1.0))
    assert matrix.judge(_kernel(), [], 0, 1.0)  # nothing at all: failed, not skipped


def test_judge_fails_a_failed_check_with_its_reason() -> None:
    rows = [{"check": "loss", "status": "fail", "reason": "captured 5 + lost 1 = 6, expected 7",
             "transport": "ringbuf"}, DONE]
    why = matrix.judge(_kernel(), rows, 0, 1.0)
    assert len(why) == 1 and "expected 7" in why[0]


def test_an_unavailable_layer_fails_unless_the_matrix_expects_it(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [{"check": "available", "status": "unavailable", "layer": "vfs",
             "reason": "kprobes: the kernel is built without CONFIG_KPROBES"}, DONE]
    assert any("vfs unavailable" in w for w in matrix.judge(_kernel(), rows, 0, 1.0))
    monkeypatch.setitem(matrix.EXPECTED_UNAVAILABLE, "5.10", {"vfs": "no kprobes"})
    assert matrix.judge(_kernel(), rows, 0, 1.0) == []
    assert matrix.judge(_kernel("6.1"), rows, 0, 1.0) != []


def _events(rows: list[tuple[int, int, int, int, int]]) -> dict[str, np.ndarray]:
    """(layer, op, tid, ts, lat) rows -> columns, all on one path."""
    a = np.array(rows, dtype=np.int64)
    return {"layer": a[:, 0], "op": a[:, 1], "tid": a[:, 2], "ts": a[:, 3], "lat": a[:, 4],
            "path": np.array(["/d/f"] * len(rows), dtype=object)}


SC, VFS, W = LAYER_CODE["syscall"], LAYER_CODE["vfs"], OP_CODE["write"]


def _nesting(rows: list[tuple[int, int, int, int, int]]) -> list[str]:
    ev = _events(rows)
    g = guest.Guest.__new__(guest.Guest)
    return g._vfs_nesting(ev, ev["layer"] == VFS, Path("/d/f"))


def test_vfs_nesting_accepts_one_vfs_write_inside_each_write_syscall() -> None:
    rows = [(SC, W, 7, 100, 50), (VFS, W, 7, 110, 30), (SC, W, 7, 200, 50), (VFS, W, 7, 205, 40)]
    assert _nesting(rows) == []


@pytest.mark.parametrize(
    "bad",
    [
        [(SC, W, 7, 100, 50), (VFS, W, 8, 110, 30)],  # another thread
        [(SC, W, 7, 100, 50), (VFS, W, 7, 110, 60)],  # ends after its syscall
        [(SC, W, 7, 100, 50), (VFS, W, 7, 90, 20)],  # begins before any syscall
        [(SC, W, 7, 100, 50), (VFS, W, 7, 110, 10), (VFS, W, 7, 130, 10)],  # two in one syscall
        [(SC, W, 7, 100, 50), (SC, W, 7, 200, 50), (VFS, W, 7, 110, 10)],  # a syscall without one
    ],
)
def test_vfs_nesting_rejects_what_a_broken_kprobe_pairing_would_give(
    bad: list[tuple[int, int, int, int, int]]
) -> None:
    assert _nesting(bad) != []
