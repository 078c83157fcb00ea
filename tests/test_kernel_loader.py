"""Real-kernel tests of the loader helper: the recorder holds the attached programs but
never loads bcc, clang or LLVM itself, with either transport (aether_rec/recorder/loaded.py).
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from kernel_util import CLI, helper, kernel  # noqa: F401 - the fixture

from aether_rec.errors import RecorderError

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel")]


def _fd_kinds(pid: int) -> list[str]:
    kinds = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            kinds.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            pass
    return kinds


@pytest.mark.parametrize("transport", ["ringbuf", "perf"])
def test_compiler_stays_out_of_the_recorder(tmp_path: Path, transport: str) -> None:
    data = tmp_path / "data.bin"
    data.write_bytes(b"x" * 65536)
    out = tmp_path / "x.aio"
    p = subprocess.Popen(
        [*CLI, "record", "-o", str(out), "--transport", transport, "--",
         *helper("loop", "--file", str(data), "--seconds", "3", "--interval", "0.01")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not out.exists() or out.stat().st_size == 0:
            assert p.poll() is None, p.stderr.read() if p.stderr else ""
            assert time.monotonic() < deadline, "recording did not start"
            time.sleep(0.05)
        time.sleep(0.3)
        maps = Path(f"/proc/{p.pid}/maps").read_text()
        kinds = _fd_kinds(p.pid)
    finally:
        _, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    assert "anon_inode:bpf-prog" in kinds and "anon_inode:bpf-map" in kinds
    assert kinds.count("anon_inode:[perf_event]") >= 2  # the attached tracepoints
    assert "libbcc" not in maps and "libLLVM" not in maps and "libclang" not in maps


def test_a_program_that_does_not_compile_is_one_line(capfd: pytest.CaptureFixture[str]) -> None:
    from aether_rec.recorder.loaded import load_remote

    with pytest.raises(RecorderError) as exc:
        load_remote("int broken(void) { return ; ", [], ["events"], {})
    msg = str(exc.value)
    assert "\n" not in msg and "the BPF program failed to load" in msg
    assert "Traceback" not in capfd.readouterr().err


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # bcc's, about str function names
def test_the_vfs_program_passes_the_verifier() -> None:
    """This kernel has no kprobes, so the vfs layer cannot attach here; its programs must
    still compile and pass the kernel's verifier (loaded as kprobe programs, unattached)."""
    from aether_rec.recorder.bccload import load_bcc
    from aether_rec.recorder.headers import apply_headers, find_headers
    from aether_rec.recorder.probes import LayerPlan
    from aether_rec.recorder.program import ProgramOptions, build_program

    apply_headers(find_headers())
    plans = {"vfs": LayerPlan("vfs", True, sources=["vfs.c"])}
    prog = build_program(plans, ProgramOptions(self_tgid=os.getpid()))
    bcc = load_bcc().module
    assert bcc is not None
    # rename the probes so that bcc does not try to attach them
    cflags = [*prog.cflags, "-DVFS_ENTRY(fn)=aether_entry_##fn", "-DVFS_RETURN(fn)=aether_return_##fn"]
    b = bcc.BPF(text=prog.text, cflags=cflags)
    try:
        for fn in ("vfs_read", "vfs_write", "vfs_fsync_range"):
            for kind in ("entry", "return"):
                f = b.load_func(f"aether_{kind}_{fn}", bcc.BPF.KPROBE)
                assert f.fd >= 0
    finally:
        b.cleanup()
