"""Real-kernel tests of the compiled-program cache (aether_rec/recorder/progcache.py): a
program loaded from the cache records exactly what the compiled one does, its run-time
settings (own pid, --min-latency) and filters (--pid, --comm) hold, and a cache that is
not root's alone, or damaged, is not used.

dd's own counts are the oracle: N direct writes of a file and N reads of /dev/zero."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
from kernel_util import (
    capture_info,
    kernel,  # noqa: F401 - the fixture
    layer_code,
    load,
    op_code,
    rec,
)

from aether_rec.recorder import bpfsys

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel")]

N = 300
SYSCALL, BLOCK = layer_code("syscall"), layer_code("block")


def _env(cache: Path) -> dict[str, str]:
    return dict(os.environ, AETHER_REC_CACHE=str(cache))


def _dd(tmp_path: Path, out: Path, cache: Path, *extra: str) -> tuple[str, dict[str, np.ndarray], str]:
    data = tmp_path / "dd.bin"
    cmd = ["dd", "if=/dev/zero", f"of={data}", "bs=4096", f"count={N}", "status=none"]
    r = rec(["record", "-o", str(out), "--force", *extra, "--", *cmd], env=_env(cache), timeout=300)
    assert r.rc == 0, r.stderr
    cap, cols = load(out)
    return cap.header["recorder"]["program"], cols, r.stderr


def _counts(cols: dict[str, np.ndarray], data: Path) -> tuple[int, int]:
    path = np.array(cols["path"], dtype=object)
    sc = (cols["layer"] == SYSCALL) & (cols["result"] == 4096)
    writes = int((sc & (cols["op"] == op_code("write")) & (path == str(data))).sum())
    reads = int((sc & (cols["op"] == op_code("read")) & (path == "/dev/zero")).sum())
    return writes, reads


def test_the_cached_program_records_what_the_compiled_one_does(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first, c1, _ = _dd(tmp_path, tmp_path / "a.aio", cache)
    second, c2, _ = _dd(tmp_path, tmp_path / "b.aio", cache)
    assert (first, second) == ("compiled", "cache")
    assert _counts(c1, tmp_path / "dd.bin") == _counts(c2, tmp_path / "dd.bin") == (N, N)
    # the recorder's own pid is a setting of the cached object, not compiled in: its own
    # writes (the capture) are never recorded
    for cols in (c1, c2):
        assert not (np.array(cols["comm"], dtype=object) == "aether-rec").any()
    entries = list((cache / "programs").glob("*.json"))
    assert entries and all(e.stat().st_mode & 0o777 == 0o600 for e in entries)
    # on this kernel the syscalls in flight live in task storage: the cache created that
    # map itself, with the BTF the kernel asks of it (bpfsys.btf_load)
    maps = [m for e in entries for m in json.loads(e.read_text()).get("maps", [])]
    assert any(m["type"] == bpfsys.BPF_MAP_TYPE_TASK_STORAGE and m["name"] == "sc_task" for m in maps)


def test_settings_and_filters_of_a_cached_program_hold(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    _dd(tmp_path, tmp_path / "warm.aio", cache, "--min-latency", "1s")  # compiles this object
    src, cols, _ = _dd(tmp_path, tmp_path / "slow.aio", cache, "--min-latency", "1s")
    assert src == "cache"
    assert len(cols["ts"]) == 0 or (cols["lat"] >= 1_000_000_000).all()  # --min-latency 1s kept
    below = capture_info(tmp_path / "slow.aio")["stats"]["counters"]
    assert sum(v for k, v in below.items() if "min_lat" in k) >= N  # dropped in the kernel, counted
    # system-wide: the recorder's own pid (a setting) keeps its own writes out of the capture
    for name in ("sw1", "sw2"):
        out = tmp_path / f"{name}.aio"
        r = rec(["record", "-o", str(out), "--force", "--duration", "2.5s", "--layers", "syscall"],
                env=_env(cache), timeout=300)
        assert r.rc == 0, r.stderr
        cap, cols = load(out)
        assert len(cols["ts"]) > 0  # the machine is never silent for 2.5 s (this test's own I/O)
        assert not (cols["pid"] == cap.header["recorder"]["pid"]).any()
    assert cap.header["recorder"]["program"] == "cache"
    # a -- CMD filter (the pid map): only dd recorded
    _dd(tmp_path, tmp_path / "w2.aio", cache)
    src, cols, _ = _dd(tmp_path, tmp_path / "cmd.aio", cache)
    assert src == "cache" and set(np.array(cols["comm"], dtype=object).tolist()) <= {"dd"}


def test_a_cache_others_can_write_or_a_damaged_entry_is_not_used(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    _dd(tmp_path, tmp_path / "a.aio", cache)
    progs = cache / "programs"
    os.chmod(progs, 0o777)  # anyone could put code there: not trusted
    src, cols, _ = _dd(tmp_path, tmp_path / "b.aio", cache)
    assert src == "compiled" and _counts(cols, tmp_path / "dd.bin") == (N, N)
    os.chmod(progs, 0o700)
    for entry in progs.glob("*.json"):
        doc = json.loads(entry.read_text())
        if "progs" in doc:  # a compiled program: break one instruction's map reference
            doc["maps"] = doc["maps"][1:]
            entry.write_text(json.dumps(doc))
    src, cols, err = _dd(tmp_path, tmp_path / "c.aio", cache)
    assert src == "compiled" and "cached BPF program did not load" in err
    assert _counts(cols, tmp_path / "dd.bin") == (N, N)
    src, _, _ = _dd(tmp_path, tmp_path / "d.aio", cache)  # the entry was replaced
    assert src == "cache"


def test_the_task_storage_probe_is_the_verifiers_answer() -> None:
    """has_task_storage loads a real program: on this kernel (6.18) it passes; the same
    program given an array map where the task-storage map belongs is refused, so the probe
    answers what the verifier says, and a map without the BTF it needs cannot be made."""
    assert bpfsys.has_task_storage()
    arr = bpfsys.map_create(2, 4, 8, 1, 0, "aether_test")  # BPF_MAP_TYPE_ARRAY
    try:
        with pytest.raises(bpfsys.BpfError):
            bpfsys.prog_load(bpfsys.BPF_PROG_TYPE_RAW_TRACEPOINT, bpfsys.task_storage_probe(arr), "GPL", "t")
    finally:
        os.close(arr)
    attr = bpfsys._attr(128)  # the same map request without BTF: the kernel refuses it
    struct.pack_into("<5I", attr, 0, bpfsys.BPF_MAP_TYPE_TASK_STORAGE, 4, 8, 0, bpfsys.BPF_F_NO_PREALLOC)
    with pytest.raises(bpfsys.BpfError):
        bpfsys._call(bpfsys.BPF_MAP_CREATE, attr, "task storage without BTF")
    fd = bpfsys.map_create(bpfsys.BPF_MAP_TYPE_TASK_STORAGE, 4, 40, 0, bpfsys.BPF_F_NO_PREALLOC, "t")
    os.close(fd)
