"""Recorder pieces that need no kernel: tracefs parsing, feature probes on a fake tracefs,
program assembly, the header tree, bcc discovery, names from /proc, event layout."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from aether_rec.errors import EnvironmentProblem, RecorderError, UsageError
from aether_rec.recorder import bccload, btf, headers, options, output, plan, probes, program, transport
from aether_rec.recorder.procinfo import Names
from aether_rec.recorder.tracefs import TraceFS, parse_format
from aether_rec.schema import FD_KIND_CODE, KERNEL_EVENT_DTYPE, LAYER_CODE, OP_CODE

ROOT = Path(__file__).resolve().parents[1]

PREAD_FORMAT = """name: sys_enter_pread64
ID: 838
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;
\tfield:unsigned int fd;\toffset:16;\tsize:8;\tsigned:0;
\tfield:char * buf;\toffset:24;\tsize:8;\tsigned:0;
\tfield:size_t count;\toffset:32;\tsize:8;\tsigned:0;
\tfield:loff_t pos;\toffset:40;\tsize:8;\tsigned:0;

print fmt: "fd: 0x%08lx", ((unsigned long)(REC->fd))
"""


def _fake_tracefs(root: Path, events: dict[str, list[str]]) -> TraceFS:
    """A tracefs tree whose events/<cat>/<name>/format hold the given field names."""
    for key, fields in events.items():
        d = root / "events" / key
        d.mkdir(parents=True)
        lines = [f"\tfield:long {f};\toffset:{8 + 8 * i};\tsize:8;\tsigned:0;" for i, f in enumerate(fields)]
        (d / "format").write_text("format:\n" + "\n".join(lines) + "\n")
    return TraceFS(root)


def test_parse_format_reads_fields_and_skips_common() -> None:
    f = parse_format(PREAD_FORMAT)
    assert list(f) == ["__syscall_nr", "fd", "buf", "count", "pos"]
    assert f["pos"].offset == 40 and f["pos"].size == 8
    assert f["buf"].decl == "char * buf"


def test_syscall_probe_uses_what_tracefs_has(tmp_path: Path) -> None:
    tfs = _fake_tracefs(
        tmp_path,
        {
            "syscalls/sys_enter_read": ["fd", "count"],
            "syscalls/sys_exit_read": ["ret"],
            "syscalls/sys_enter_pread64": ["fd", "count"],  # no pos: unusable
            "syscalls/sys_exit_pread64": ["ret"],
            "syscalls/sys_enter_fsync": ["fd"],
            "syscalls/sys_exit_fsync": ["ret"],
        },
    )
    plan = probes.probe_syscall(tfs)
    assert plan.available
    assert "-DAETHER_SC_read=1" in plan.defines and "-DAETHER_SC_fsync=1" in plan.defines
    assert "-DAETHER_SC_pread64=1" not in plan.defines
    assert any("pread64" in s and "pos" in s for s in plan.skipped)
    assert {h["hook"] for h in plan.hooks} == {
        "tracepoint:syscalls:sys_enter_read",
        "tracepoint:syscalls:sys_exit_read",
        "tracepoint:syscalls:sys_enter_fsync",
        "tracepoint:syscalls:sys_exit_fsync",
    }
    only = probes.probe_syscall(tfs, frozenset({"fsync"}))
    assert [d for d in only.defines if d.startswith("-DAETHER_SC_")] == ["-DAETHER_SC_fsync=1"]
    none = probes.probe_syscall(_fake_tracefs(tmp_path / "empty", {}))
    assert not none.available and "syscalls:sys_enter" in none.reason


def test_block_probe_keys_and_optional_fields(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without BTF: the classic tracepoints keyed by device and sector (block_tp.c)."""
    base = ["dev", "sector", "nr_sector", "rwbs"]
    tfs = _fake_tracefs(
        tmp_path,
        {
            "block/block_rq_issue": [*base, "bytes"],
            "block/block_rq_complete": [*base, "error"],
        },
    )

    def no_btf(*_a: object) -> None:
        raise btf.BTFError("no kernel BTF")

    monkeypatch.setattr(probes.BTF, "load", no_btf)
    from aether_rec.recorder import progcache

    monkeypatch.setattr(progcache, "cache_dir", lambda: tmp_path / "cache")  # no layout remembered
    plan = probes.probe_block(tfs)
    assert plan.available and plan.sources == ["block_tp.c"] and "no kernel BTF" in plan.reason
    assert "-DBLK_HAS_INSERT=1" not in plan.defines  # no insert: queue time not measured
    assert any("block_rq_insert" in s for s in plan.skipped)
    assert "-DBLK_HAS_BYTES=1" in plan.defines and "-DBLK_HAS_ERROR=1" in plan.defines
    assert all(h["key"] == "dev+sector" for h in plan.hooks)
    ops = probes.probe_block(tfs, frozenset({"write", "flush"}))
    mask = [d for d in ops.defines if d.startswith("-DBLOCK_OP_MASK=")][0]
    assert int(mask.split("=")[1].rstrip("UL"), 16) == (1 << OP_CODE["write"]) | (1 << OP_CODE["flush"])
    assert not probes.probe_block(tfs, frozenset({"pread"})).available
    gone = probes.probe_block(_fake_tracefs(tmp_path / "none", {}))
    assert not gone.available and "block_rq_issue" in gone.reason


def test_block_probe_uses_raw_tracepoints_where_btf_tells_the_layout(tmp_path: Path) -> None:
    if not btf.VMLINUX.exists():
        pytest.skip("this kernel has no BTF")
    base = ["dev", "sector", "nr_sector", "rwbs"]
    tfs = _fake_tracefs(tmp_path, {f"block/block_rq_{e}": base for e in ("issue", "complete", "insert")})
    plan = probes.probe_block(tfs)
    assert plan.available and plan.sources == ["block.c"]
    assert all(h["key"] == "request" and str(h["hook"]).startswith("raw_tracepoint:") for h in plan.hooks)
    defs = dict(d[2:].split("=", 1) for d in plan.defines)
    assert defs["BLK_HAS_INSERT"] == "1" and "BLK_HAS_IO_START" not in defs
    # the offsets are the kernel's: struct request's sector and length differ by 4 bytes or more
    assert int(defs["RQ_OFF_SECTOR"]) != int(defs["RQ_OFF_DATA_LEN"])
    k = btf.BTF.load()
    assert int(defs["KREQ_OP_FLUSH"]) == k.enum_value("REQ_OP_FLUSH")
    assert k.tracepoint_args("block_rq_complete")[int(defs["RQ_ARG_COMPLETE"])] == "struct request *"


def test_vfs_layer_always_has_a_reason(tmp_path: Path) -> None:
    plan = probes.probe_vfs(_fake_tracefs(tmp_path, {}))
    assert not plan.available
    assert "kprobes:" in plan.reason and "fentry:" in plan.reason


def test_parse_layers_and_ops() -> None:
    assert probes.parse_layers(None) == ("syscall", "block", "io_uring")  # io_uring where the kernel has it
    assert probes.parse_layers("all") == ("syscall", "block", "vfs", "io_uring")
    assert probes.parse_layers("block,syscall,block") == ("block", "syscall")
    with pytest.raises(UsageError):
        probes.parse_layers("network")
    assert probes.parse_ops(None) is None
    assert probes.parse_ops("pread, fsync") == frozenset({"pread", "fsync"})
    with pytest.raises(UsageError, match="known ops"):
        probes.parse_ops("pread,teleport")


def _plans(tmp_path: Path) -> dict[str, probes.LayerPlan]:
    tfs = _fake_tracefs(
        tmp_path,
        {
            "syscalls/sys_enter_read": ["fd", "count"],
            "syscalls/sys_exit_read": ["ret"],
            "block/block_rq_insert": ["dev", "sector", "nr_sector", "rwbs", "bytes"],
            "block/block_rq_issue": ["dev", "sector", "nr_sector", "rwbs", "bytes"],
            "block/block_rq_complete": ["dev", "sector", "nr_sector", "rwbs", "error"],
        },
    )
    return probes.probe_layers(tfs, ("syscall", "block", "vfs"))


def test_program_is_parameterised_by_cflags_only(tmp_path: Path) -> None:
    """The recorder's pid and --min-latency are run-time settings (the aether_config map):
    they do not change the compiled object, so one cached object serves every recording."""
    plans = _plans(tmp_path)
    a = program.build_program(plans, program.ProgramOptions(self_tgid=11))
    b = program.build_program(
        plans, program.ProgramOptions(self_tgid=22, filter_pid=True, min_latency_ns=5_000_000)
    )
    assert "-DFILTER_PID=1" in b.cflags and [x for x in b.cflags if x != "-DFILTER_PID=1"] == a.cflags
    c = program.build_program(plans, program.ProgramOptions(self_tgid=33, min_latency_ns=7))
    assert c.text == a.text and c.cflags == a.cflags
    assert "-DAETHER_SC_read=1" in a.cflags and "-DBLK_HAS_INSERT=1" in a.cflags
    # the C text differs only in its first comment, which lists the cflags
    body = [x for x in a.text.split("*/", 1)[1].splitlines()]
    assert body == [x for x in b.text.split("*/", 1)[1].splitlines()]
    assert a.layers == ["syscall", "block"]  # vfs unavailable, not compiled in
    # local headers are inlined once (bcc rewrites map calls only in the main file)
    assert '#include "' not in a.text
    assert a.text.count("struct aether_event {") == 1
    assert a.text.count("/* ---- aether_common.h ---- */") == 1
    assert a.render() == a.text


def test_event_struct_matches_numpy_dtype(tmp_path: Path) -> None:
    """offsetof/sizeof of struct aether_event, compiled from bpf/aether_event.h, equal
    KERNEL_EVENT_DTYPE's offsets and itemsize."""
    cc = shutil.which("gcc") or shutil.which("cc") or shutil.which("clang")
    if cc is None:
        pytest.skip("no C compiler (apt-get install gcc)")
    names = KERNEL_EVENT_DTYPE.names or ()
    src = tmp_path / "layout.c"
    src.write_text(
        textwrap.dedent("""\
        #include <stdio.h>
        #include <stddef.h>
        #include <stdint.h>
        typedef uint64_t u64; typedef int64_t s64; typedef uint32_t u32; typedef int32_t s32;
        typedef uint16_t u16; typedef uint8_t u8;
        #include "aether_event.h"
        int main(void) {
            printf("size %zu\\n", sizeof(struct aether_event));
        """)
        + "".join(
            f'    printf("{n} %zu %zu\\n", offsetof(struct aether_event, {n}), '
            f"sizeof(((struct aether_event *)0)->{n}));\n"
            for n in names
        )
        + "    return 0;\n}\n"
    )
    exe = tmp_path / "layout"
    subprocess.run([cc, f"-I{ROOT / 'bpf'}", "-o", str(exe), str(src)], check=True)
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split("\n")
    got = dict((x.split()[0], tuple(int(v) for v in x.split()[1:])) for x in out if x)
    assert got["size"] == (KERNEL_EVENT_DTYPE.itemsize,)
    for n in names:
        off = KERNEL_EVENT_DTYPE.fields[n][1]  # type: ignore[index]
        size = KERNEL_EVENT_DTYPE.fields[n][0].itemsize  # type: ignore[index]
        assert got[n] == (off, size), n


def test_header_tree_merges_flavour_over_common(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src"
    common = src / "linux-headers-6.1.0-9-common"
    flavour = src / "linux-headers-6.1.0-9-amd64"
    older = src / "linux-headers-5.10.0-1-amd64"
    for d in (
        common / "include/linux",
        common / "arch/x86/include/asm",
        flavour / "include/generated",
        flavour / "arch/x86/include/generated",
        older / "include",
    ):
        d.mkdir(parents=True)
    (common / "include/linux/fs.h").write_text("common fs\n")
    (common / "include/linux/kconfig.h").write_text("common kconfig\n")
    (flavour / "include/linux").mkdir()
    (flavour / "include/linux/kconfig.h").write_text("flavour kconfig\n")
    (flavour / "include/generated/autoconf.h").write_text("auto\n")
    monkeypatch.setattr(headers.platform, "machine", lambda: "x86_64")
    dirs = headers.distro_header_dirs(src)
    assert dirs == [common, flavour]  # newest version; common first
    tree = headers.build_merged_tree(dirs, tmp_path / "cache")
    assert (tree / "include/linux/fs.h").read_text() == "common fs\n"
    assert (tree / "include/linux/kconfig.h").read_text() == "flavour kconfig\n"
    assert (tree / "include/generated/autoconf.h").exists()
    assert (tree / "arch/x86/include/asm").is_dir() and (tree / "arch/x86/include/generated").is_dir()
    assert headers.build_merged_tree(dirs, tmp_path / "cache") == tree  # built once


def test_find_headers_without_any_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BCC_KERNEL_SOURCE", raising=False)
    monkeypatch.setattr(headers, "SRC_DIR", tmp_path)
    monkeypatch.setattr(headers, "KHEADERS", tmp_path / "kheaders.tar.xz")
    with pytest.raises(EnvironmentProblem, match="apt-get install linux-headers"):
        headers.find_headers(release="0.0.0-nonexistent")
    monkeypatch.setenv("BCC_KERNEL_SOURCE", "/somewhere")
    assert headers.find_headers(release="0.0.0-nonexistent").kind == "env"


def test_bcc_missing_or_broken_is_an_environment_problem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bccload, "_cached", None)
    monkeypatch.delitem(sys.modules, "bcc", raising=False)
    monkeypatch.setenv("AETHER_REC_BCC_PATH", str(tmp_path / "none"))
    with pytest.raises(EnvironmentProblem, match="python3-bpfcc"):
        bccload.load_bcc()
    assert bccload.bcc_status()["ok"] is False
    broken = tmp_path / "broken"
    (broken / "bcc").mkdir(parents=True)
    (broken / "bcc" / "__init__.py").write_text("raise OSError('libbcc.so.0: cannot open')\n")
    monkeypatch.setenv("AETHER_REC_BCC_PATH", str(broken))
    with pytest.raises(EnvironmentProblem, match="failed to load"):
        bccload.load_bcc()
    assert "bcc" not in sys.modules or sys.modules["bcc"] is not None


def test_bcc_is_loaded_alone_from_its_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "site"
    (fake / "bcc").mkdir(parents=True)
    (fake / "bcc" / "__init__.py").write_text("__version__ = '9.9'\nBPF = object\n")
    (fake / "other_pkg").mkdir()
    (fake / "other_pkg" / "__init__.py").write_text("")
    monkeypatch.setattr(bccload, "_cached", None)
    monkeypatch.delitem(sys.modules, "bcc", raising=False)
    monkeypatch.setenv("AETHER_REC_BCC_PATH", str(fake))
    before = list(sys.path)
    info = bccload.load_bcc()
    assert info.version == "9.9" and info.location == str(fake)
    assert sys.path == before  # nothing else of that directory became importable
    monkeypatch.setattr(bccload, "_cached", None)
    sys.modules.pop("bcc", None)  # the fake must not serve later tests (monkeypatch restores a real one)


def test_names_resolve_fds_devices_and_open_flags(tmp_path: Path) -> None:
    f = tmp_path / "x.bin"
    f.write_bytes(b"x" * 4096)
    fd = os.open(f, os.O_RDONLY | getattr(os, "O_DIRECT", 0))
    try:
        ev = np.zeros(3, KERNEL_EVENT_DTYPE)
        ev["pid"] = os.getpid()
        ev["layer"] = [LAYER_CODE["syscall"], LAYER_CODE["syscall"], LAYER_CODE["block"]]
        ev["fd"] = [fd, -1, -1]
        ev["dev"] = [0, 0, (7 << 20) | 0]
        names = Names()
        codes, words, flags, kinds = names.annotate(ev)
        paths = [words[c] for c in codes]
        assert paths[0] == str(f) and paths[1] == ""
        assert kinds.tolist() == [FD_KIND_CODE["file"], 0, 0]
        assert paths[2] in ("loop0", "7:0")
        if getattr(os, "O_DIRECT", 0):
            assert flags[0] & (1 << 5)
        new = names.take_new()
        assert new["fds"][0]["path"] == str(f)
        assert new["procs"][0]["pid"] == os.getpid()
        assert names.take_new() == {}  # nothing new the second time
        names.annotate(ev)
        assert names.take_new() == {}
    finally:
        os.close(fd)


def test_losses_are_merged_per_cpu_and_kind() -> None:
    L = transport.Loss
    merged = transport._merge_losses(
        [L(0, 5, 10, 20, "perf_buffer"), L(1, 1, 12, 13, "perf_buffer"), L(0, 7, 5, 30, "perf_buffer")]
    )
    got = {(x.cpu, x.kind): (x.count, x.t_first, x.t_last) for x in merged}
    assert got == {(0, "perf_buffer"): (12, 5, 30), (1, "perf_buffer"): (1, 12, 13)}


def test_rotated_names() -> None:
    assert output.rotated_name("run.aio", 1) == "run.0001.aio"
    assert output.rotated_name("/a/b/day", 12) == "/a/b/day.0012.aio"


def test_usage_errors_before_touching_the_kernel(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        plan.prepare(options.RecordOptions(output="-", rotate_size=10))
    with pytest.raises(UsageError):
        plan.prepare(options.RecordOptions(output=str(tmp_path / "x"), buffer_pages=3))
    existing = tmp_path / "e.aio"
    existing.write_bytes(b"")
    from aether_rec.errors import RecorderError

    with pytest.raises(RecorderError, match="--force"):
        plan.prepare(options.RecordOptions(output=str(existing)))
    with pytest.raises(RecorderError, match="not found"):
        plan.prepare(options.RecordOptions(output=str(tmp_path / "y"), command=("no-such-cmd-xyz",)))


@pytest.mark.parametrize(
    "args, message",
    [
        (["--max-events", "0"], "--max-events must be positive"),
        (["--pid", "0"], "--pid 0: not a process id"),
        (["--wakeup-events", "0"], "--wakeup-events must be at least 1"),
        (["--duration", "0"], "--duration must be positive"),
        (["--rotate-size", "0K"], "--rotate-size must be positive"),
        (["--buffer-pages", "3"], "--buffer-pages must be a power of two"),
    ],
)
def test_record_ranges_are_checked_once_by_the_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    """The CLI only parses; RecordOptions.check() holds each range rule: a usage error
    (exit 2) before anything touches the kernel."""
    from aether_rec.cli import main
    from aether_rec.errors import RecorderError

    def reached() -> None:
        raise RecorderError("the environment checks were reached")  # never record here

    monkeypatch.setattr(plan, "check_privileges", reached)
    r = CliRunner().invoke(main, ["record", "-o", str(tmp_path / "x.aio"), *args])
    assert r.exit_code == 2, r.output
    assert message in r.output
    assert not (tmp_path / "x.aio").exists()


def test_record_and_doctor_have_help_with_examples() -> None:
    from aether_rec.cli.record import doctor, record

    for cmd in (record, doctor):
        r = CliRunner().invoke(cmd, ["--help"])
        assert r.exit_code == 0
        assert "Examples:" in r.output
    r = CliRunner().invoke(record, ["--help"])
    for opt in (
        "--pid",
        "--comm",
        "--cgroup",
        "--min-latency",
        "--ops",
        "--duration",
        "--max-events",
        "--max-size",
        "--rotate-size",
        "--rotate-time",
        "--ebpf",
        "--transport",
        "--force",
    ):
        assert opt in r.output


def test_perf_records_parse_in_bulk_and_with_lost_records_between() -> None:
    """perfbuf._parse: a run of samples is one strided copy; a PERF_RECORD_LOST among them
    is counted; a record cut at the end of what was read is left for the next read."""
    import struct

    from aether_rec.recorder import perfbuf

    def sample(i: int) -> bytes:
        ev = np.zeros(1, KERNEL_EVENT_DTYPE)
        ev["ts"], ev["pid"] = 1000 + i, i
        head = struct.pack("<IHHI", perfbuf.PERF_RECORD_SAMPLE, 0, perfbuf.SAMPLE, 100)
        return head + ev.tobytes() + b"\0" * 4

    lost = struct.pack("<IHHQQ", perfbuf.PERF_RECORD_LOST, 0, 24, 7, 123)
    plain = b"".join(sample(i) for i in range(5))
    events, n_lost, used = perfbuf._parse(np.frombuffer(plain, np.uint8))
    assert events is not None and n_lost == 0 and used == len(plain)
    got = np.ascontiguousarray(events).reshape(-1).view(KERNEL_EVENT_DTYPE)
    assert got["pid"].tolist() == [0, 1, 2, 3, 4] and got["ts"].tolist() == [1000, 1001, 1002, 1003, 1004]
    mixed = sample(0) + lost + sample(1) + sample(2)[:50]
    events, n_lost, used = perfbuf._parse(np.frombuffer(mixed, np.uint8))
    assert events is not None and n_lost == 123 and used == 2 * perfbuf.SAMPLE + 24
    got = np.ascontiguousarray(events).reshape(-1).view(KERNEL_EVENT_DTYPE)
    assert got["pid"].tolist() == [0, 1]


def test_every_c_constant_matches_its_python_twin() -> None:
    """The codes the BPF programs write (bpf/aether_event.h, aether_common.h) are the ones
    the schema and the recorder read: layers, ops, flags, name-record kinds, counters."""
    from aether_rec.recorder.program import COUNTERS
    from aether_rec.schema import FLAGS, LAYERS, NAME_KINDS, OPS

    text = (ROOT / "bpf" / "aether_event.h").read_text() + (ROOT / "bpf" / "aether_common.h").read_text()

    def defines(prefix: str) -> dict[str, str]:
        return dict(re.findall(rf"^#define {prefix}(\w+)\s+(.+?)\s*(?:/\*.*)?$", text, re.M))

    assert {int(v): k.lower() for k, v in defines("AETHER_LAYER_").items() if v.isdigit()} == {
        k: v for k, v in LAYERS.items() if k
    }
    ops = {int(v): k.lower() for k, v in defines("AETHER_OP_").items()}
    assert ops == {k: v for k, v in OPS.items() if k}
    flags = {}
    for k, v in defines("AETHER_F_").items():
        m = re.fullmatch(r"\(1u << (\d+)\)", v)
        assert m, (k, v)
        flags[1 << int(m.group(1))] = k.lower()
    assert flags == FLAGS
    assert {int(v): k.lower() for k, v in defines("AETHER_NAME_").items()} == NAME_KINDS
    from aether_rec.recorder.filters import CONFIG_LAYOUT

    m = re.search(r"struct aether_config \{(.*?)\};", text, re.S)
    assert m, "struct aether_config not in aether_common.h"
    fields = re.findall(r"(u32|u64)\s+(\w+);", m.group(1))
    assert "<" + "".join({"u32": "I", "u64": "Q"}[t] for t, _ in fields) == CONFIG_LAYOUT
    assert [n for _, n in fields] == ["self_tgid", "pad", "min_lat_ns"]
    counters = {int(v): k for k, v in defines("AETHER_C_").items()}
    assert len(counters) == len(COUNTERS) == int(defines("AETHER_")["NCOUNTERS"])
    style = {"sc_": "syscall_", "blk_": "block_", "uring_": "io_uring_", "_start_full": "_start_map_full",
             "_min_lat": "_min_latency"}
    for idx, name in enumerate(COUNTERS):  # the names differ in style, the order must not
        c = counters[idx].lower()
        for a, b in style.items():
            c = c.replace(a, b)
        assert c == name, (idx, counters[idx], name)
    from aether_rec.recorder.ringbuf import RingBufTransport

    assert RingBufTransport().drop_counter == COUNTERS.index("submit_failed")


def test_a_tracefs_only_root_may_read_is_one_line_not_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    """doctor as a user: tracefs exists but is root-only; the environment problem says so."""
    from aether_rec.recorder import tracefs as tf

    def denied(_d: Path) -> bool:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tf, "_is_tracefs", denied)
    with pytest.raises(EnvironmentProblem, match="readable only by root"):
        tf.find_tracefs()


UNISTD_64 = Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h")  # linux-libc-dev


@pytest.mark.skipif(not UNISTD_64.exists(), reason="no x86_64 asm/unistd_64.h (linux-libc-dev)")
def test_raw_syscall_numbers_are_the_kernel_headers() -> None:
    """The x86_64 numbers the raw_syscalls programs switch on are the kernel's own
    (its uapi header), for every traced syscall and every fd-naming call."""
    from aether_rec.recorder.probes import NAME_HOOKS, NAME_NR_X86_64, SYSCALL_HOOKS

    text = UNISTD_64.read_text()
    nr = {m.group(1): int(m.group(2)) for m in re.finditer(r"#define __NR_(\w+) (\d+)", text)}
    for h in SYSCALL_HOOKS:
        name = "sendfile" if h.name == "sendfile64" else h.name  # tracefs calls it sendfile64
        assert nr[name] == h.nr_x86_64, h.name
    assert set(NAME_NR_X86_64) == set(NAME_HOOKS)
    for name, n in NAME_NR_X86_64.items():
        assert nr[name] == n, name


@pytest.mark.parametrize("n", [0, 1, 5, 4095, 4097, 20000])
def test_split_columns_is_each_field_copied(n: int) -> None:
    """The blocked transposition gives every field of the kernel's records exactly."""
    from aether_rec.recorder.columnar import split_columns

    ev = np.random.default_rng(n).integers(0, 256, n * 112, dtype=np.uint8).view(KERNEL_EVENT_DTYPE)
    names = list(KERNEL_EVENT_DTYPE.names or ())
    got = split_columns(ev, names)
    for k in names:
        assert got[k].dtype == KERNEL_EVENT_DTYPE[k] and got[k].flags.c_contiguous, k
        assert np.array_equal(got[k], ev[k]), k


@pytest.mark.parametrize("distinct", [1, 3, 16, 17, 500])
def test_fd_groups_are_every_position_of_each_key(distinct: int) -> None:
    """annotate's grouping of (pid, fd) keys: each group is all positions of one key, in
    order; both ways (few keys, many) give the same groups as a stable sort."""
    from aether_rec.recorder.procinfo import _groups

    keys = np.random.default_rng(distinct).integers(0, distinct, 5000).astype(np.uint64) << np.uint64(32)
    got = {int(keys[g[0]]): g.tolist() for g in _groups(keys)}
    want = {int(k): np.flatnonzero(keys == k).tolist() for k in np.unique(keys)}
    assert got == want


def test_cached_program_attaches_the_task_hooks_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The task hooks (fork/exit: which children --pid follows) are attached before any
    hook that makes events, whatever order the cache lists the programs in; the compile
    path sorts by the same bpfsys.attach_rank."""
    from aether_rec.recorder import bpfsys, progcache

    for ev in ("sched/sched_process_fork", "io_uring/io_uring_complete"):
        (tmp_path / "events" / ev).mkdir(parents=True)
        (tmp_path / "events" / ev / "id").write_text("7\n")
    order: list[str] = []
    monkeypatch.setattr(progcache, "find_tracefs", lambda: tmp_path)
    monkeypatch.setattr(bpfsys, "map_create", lambda *a: 3)
    monkeypatch.setattr(bpfsys, "prog_load", lambda kind, insns, lic, name: name)
    monkeypatch.setattr(bpfsys, "raw_tracepoint_open", lambda tp, fd: order.append(fd) or 9)
    monkeypatch.setattr(bpfsys, "attach_tracepoint", lambda tp_id, fd: order.append(fd) or 9)
    names = ["raw_tracepoint__block_rq_issue", "raw_tracepoint__sys_enter",
             "tracepoint__io_uring__io_uring_complete", "tracepoint__sched__sched_process_fork"]
    entry = {"maps": [], "license": "GPL",
             "progs": [{"name": n, "kind": "raw_tracepoint__" if n.startswith("raw") else "tracepoint__",
                        "insns": ""} for n in names]}
    progcache.load(entry, lambda maps: None)
    assert order[0] == "tracepoint__sched__sched_process_fork"
    assert sorted(order) == sorted(names)
    assert [bpfsys.attach_rank(n) for n in names] == [1, 1, 1, 0]


@pytest.mark.parametrize(("n", "k"), [(0, 1), (100, 3), (50000, 1), (50000, 16), (50000, 17), (50000, 5000)])
def test_distinct_is_numpy_unique(n: int, k: int) -> None:
    """distinct (a sample's values tried first) equals np.unique, also when the sample
    misses a value that occurs once."""
    from aether_rec.format.chunk import distinct

    arr = np.random.default_rng(n + k).integers(0, k, n).astype(np.uint32)
    if n:
        arr[n // 2 + 1] = 999_999  # a value the strided sample does not see
    assert np.array_equal(distinct(arr), np.unique(arr))


def test_raw_syscalls_where_the_kernel_runs_them_unpreempted(tmp_path: Path) -> None:
    """auto: raw_syscalls up to RAW_SYSCALLS_NEWEST, classic on newer kernels (whose raw
    syscall programs may be preempted and skip calls) and without raw_syscalls in tracefs;
    raw forces them where the machine can, and is an error where it cannot."""
    events = {"raw_syscalls/sys_enter": ["id"], "raw_syscalls/sys_exit": ["id", "ret"]}
    tfs = _fake_tracefs(tmp_path, events)
    if os.uname().machine != "x86_64":
        pytest.skip("raw_syscalls are used on x86_64 only")
    assert probes.use_raw_syscalls(tfs, "auto", "6.18.44-fc") == (True, "")
    assert probes.use_raw_syscalls(tfs, "auto", "5.10.0-32-amd64") == (True, "")
    raw, why = probes.use_raw_syscalls(tfs, "auto", "7.2.13+deb14-amd64")
    assert not raw and "preempt" in why and "7.2.13" in why
    assert probes.use_raw_syscalls(tfs, "auto", "6.19.0")[0] is False
    assert probes.use_raw_syscalls(tfs, "raw", "7.2.13+deb14-amd64") == (True, "")
    assert probes.use_raw_syscalls(tfs, "tracepoint", "6.1.0")[0] is False
    none = _fake_tracefs(tmp_path / "none", {})
    assert probes.use_raw_syscalls(none, "auto", "6.1.0")[0] is False
    with pytest.raises(RecorderError):
        probes.use_raw_syscalls(none, "raw", "6.1.0")
    with pytest.raises(UsageError):
        probes.use_raw_syscalls(tfs, "fast", "6.1.0")
    assert probes.kernel_series("6.18.44-fc-v1045") == (6, 18)
    assert probes.kernel_series("7.2.13+deb14-amd64") == (7, 2)
    assert probes.kernel_series("garbage") == (0, 0)


def test_syscalls_in_flight_in_task_storage_where_the_kernel_can() -> None:
    """--inflight: auto keeps the syscall layer's calls in flight in task storage when the
    kernel probe says it can, else in the hash; task-storage where it cannot is an error."""
    from aether_rec.recorder.syscalls import inflight_defines

    task = ["-DAETHER_SC_TASK_STORAGE=1"]
    assert inflight_defines("auto", lambda: True) == task
    assert inflight_defines("auto", lambda: False) == []
    assert inflight_defines("task-storage", lambda: True) == task
    with pytest.raises(RecorderError, match="5.12"):
        inflight_defines("task-storage", lambda: False)

    def never() -> bool:
        raise AssertionError("hash needs no probe")

    assert inflight_defines("hash", never) == []
    with pytest.raises(UsageError):
        inflight_defines("fast", lambda: True)


def test_names_and_cgroups_are_cached_only_with_task_storage_and_their_hooks(tmp_path: Path) -> None:
    from aether_rec.recorder.syscalls import who_cache_defines

    task = ["-DAETHER_SC_TASK_STORAGE=1"]
    both = _fake_tracefs(tmp_path / "a", {"task/task_rename": [], "cgroup/cgroup_attach_task": []})
    rename = _fake_tracefs(tmp_path / "b", {"task/task_rename": []})
    neither = _fake_tracefs(tmp_path / "c", {"sched/sched_process_exec": []})
    assert who_cache_defines(both, task) == ["-DAETHER_COMM_CACHE=1", "-DAETHER_CGROUP_CACHE=1"]
    assert who_cache_defines(both, []) == []  # the hash keeps no slot to cache in
    assert who_cache_defines(rename, task) == ["-DAETHER_COMM_CACHE=1"]
    assert who_cache_defines(neither, task) == []  # no way to know a value changed


@pytest.mark.skipif(os.geteuid() != 0, reason="the cache is root's")
def test_a_remembered_value_is_used_only_for_the_same_document(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """progcache.memo (e.g. the block layer's offsets from the kernel's BTF) names entries
    by a short checksum and keeps the document they depend on: a value is reused for that
    document only, so that two documents with one name (a collision) never share a value."""
    import json

    from aether_rec.recorder import progcache

    monkeypatch.setattr(progcache, "CACHE_DIR", tmp_path)
    calls: list[int] = []

    def make() -> dict[str, int]:
        calls.append(1)
        return {"offset": 40 + len(calls)}

    assert progcache.memo("t", {"btf": ["/x", 1, 2]}, make) == {"offset": 41}
    assert progcache.memo("t", {"btf": ["/x", 1, 2]}, make) == {"offset": 41}  # remembered
    assert len(calls) == 1
    assert progcache.memo("t", {"btf": ["/x", 1, 3]}, make) == {"offset": 42}  # another kernel file
    (entry,) = [p for p in (tmp_path / "programs").glob("t-*.json")
                if json.loads(p.read_text())["doc"]["btf"] == ["/x", 1, 2]]
    stored = json.loads(entry.read_text())
    stored["doc"]["btf"] = ["/y", 1, 2]  # as if another document had this name
    entry.write_text(json.dumps(stored))
    assert progcache.memo("t", {"btf": ["/x", 1, 2]}, make) == {"offset": 43}
    assert len(calls) == 3


def test_work_done_in_a_forked_child_comes_back_and_its_memory_does_not() -> None:
    """run_forked: the first recording on a kernel parses its BTF (about 40 MB that the
    allocators keep) in a child, so that the recorder does not carry it for its whole run."""
    from aether_rec.recorder.btf import BTFError
    from aether_rec.recorder.forked import run_forked

    def rss_kb() -> int:
        return int(re.search(r"VmRSS:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))  # type: ignore[union-attr]

    def big() -> list[object]:
        blob = bytearray(200 << 20)  # 200 MB touched in the child
        blob[::4096] = b"x" * len(blob[::4096])
        return ["-DX=1", blob.count(b"x"), {"k": None}]

    before = rss_kb()
    assert run_forked(big) == ["-DX=1", (200 << 20) // 4096, {"k": None}]
    assert rss_kb() - before < 50 << 10  # the 200 MB stayed in the child

    def no_btf() -> None:
        raise BTFError("struct request has no member q")

    with pytest.raises(BTFError, match="struct request has no member q"):
        run_forked(no_btf, errors=(BTFError,))
    with pytest.raises(RecorderError, match="BTFError: struct request"):
        run_forked(no_btf)  # not an expected error: a RecorderError, never a traceback
    with pytest.raises(RecorderError, match="more than"):
        run_forked(lambda: "y" * (2 << 20))
