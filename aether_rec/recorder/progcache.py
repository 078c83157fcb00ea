"""The compiled-program cache: the second recording of a program on a kernel skips clang.

bcc compiles the recorder's C (``bpf/*.c`` with the plan's ``-D`` flags) to BPF
instructions in which each map is named by the descriptor bcc created for it (``ld_imm64``
with ``src_reg = BPF_PSEUDO_MAP_FD``). After a compile, :func:`save` stores the maps' shapes
and every program's instructions and hook; :func:`load` creates the maps again, puts the
new descriptors into the instructions, loads and attaches the programs with the project's
own system calls (``bpfsys``), without importing bcc: milliseconds instead of the seconds
clang takes (minutes under emulation).

An entry is keyed by everything its instructions depend on: the program text and flags,
the kernel (release and build), the headers bcc used and the format of the entry. Only
programs that bcc attaches by tracepoint or raw tracepoint are cached (kprobes need bcc's
kretprobe set-up). The cache lives in ``$AETHER_REC_CACHE/programs`` and is trusted only
when the directory and the entry belong to root and nobody else may write them: loading
instructions from a file is loading code into the kernel.
"""

from __future__ import annotations

import json
import os
import stat
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aether_rec.recorder import bpfsys
from aether_rec.recorder.headers import CACHE_DIR
from aether_rec.recorder.tracefs import find_tracefs

FORMAT = 1
TRACEPOINT, RAW_TRACEPOINT = "tracepoint__", "raw_tracepoint__"
PROG_TYPE = {TRACEPOINT: 5, RAW_TRACEPOINT: 17}  # BPF_PROG_TYPE_TRACEPOINT, _RAW_TRACEPOINT
LD_IMM64, PSEUDO_MAP_FD = 0x18, 1


def cache_dir() -> Path:
    return CACHE_DIR / "programs"


def key(text: str, cflags: list[str]) -> str:
    import hashlib  # here, not at the top: memo runs in the recorder, which need not load OpenSSL

    u = os.uname()
    headers = os.environ.get("BCC_KERNEL_SOURCE", "")
    try:
        headers += f"@{os.stat(headers).st_mtime_ns}" if headers else ""
    except OSError:
        pass
    doc = {"format": FORMAT, "text": text, "cflags": cflags, "release": u.release, "build": u.version,
           "machine": u.machine, "headers": headers}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def _trusted(path: Path) -> bool:
    """Owned by root and writable by nobody else (a file, or the directory holding it)."""
    try:
        st = path.lstat()
    except OSError:
        return False
    return st.st_uid == 0 and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not stat.S_ISLNK(st.st_mode)


def memo(name: str, doc: dict[str, Any], make: Callable[[], Any]) -> Any:
    """``make()``, remembered for this kernel under ``name`` and ``doc`` (what else it
    depends on): e.g. the block layer's offsets, which take a second of parsing the kernel's
    BTF in Python. Not stored when ``make`` raises; not trusted unless root's."""
    u = os.uname()
    full = {"format": FORMAT, "name": name, "release": u.release, "build": u.version, **doc}
    # no cryptographic hash (hashlib would map OpenSSL, 3 MB, into the recorder for good):
    # the name only spreads entries, the stored document is compared before use
    text = json.dumps(full, sort_keys=True).encode()
    k = f"{zlib.crc32(text):08x}{zlib.adler32(text):08x}"
    got = lookup(f"{name}-{k}")
    if got is not None and "value" in got and got.get("doc") == full:
        return got["value"]
    value = make()
    _store(f"{name}-{k}", {"format": FORMAT, "doc": full, "value": value})
    return value


def lookup(k: str) -> dict[str, Any] | None:
    """The entry stored under ``k``, or None (absent, not trusted, unreadable)."""
    d = cache_dir()
    path = d / f"{k}.json"
    if os.geteuid() != 0 or not (_trusted(d) and _trusted(path)):
        return None
    try:
        entry = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return entry if isinstance(entry, dict) and entry.get("format") == FORMAT else None


def save(bpf: Any, k: str) -> None:
    """Store bcc's compiled program (``bpf``: its BPF object, every probe attached). Best
    effort: a program that cannot be cached is simply compiled again next time."""
    import ctypes

    from bcc.libbcc import lib  # the loader helper has bcc loaded already

    # libbcc functions bcc's Python does not declare (C: size_t id, void *program)
    for fn, res in (("bpf_num_tables", ctypes.c_size_t), ("bpf_table_name", ctypes.c_char_p),
                    ("bpf_table_fd_id", ctypes.c_int), ("bpf_table_key_size_id", ctypes.c_size_t),
                    ("bpf_table_leaf_size_id", ctypes.c_size_t)):
        getattr(lib, fn).restype = res
        getattr(lib, fn).argtypes = [ctypes.c_void_p] + ([] if fn == "bpf_num_tables" else [ctypes.c_size_t])
    mod = bpf.module
    maps = []
    for i in range(lib.bpf_num_tables(mod)):
        maps.append({
            "name": lib.bpf_table_name(mod, i).decode(), "fd": int(lib.bpf_table_fd_id(mod, i)),
            "type": int(lib.bpf_table_type_id(mod, i)), "key": int(lib.bpf_table_key_size_id(mod, i)),
            "value": int(lib.bpf_table_leaf_size_id(mod, i)),
            "max": int(lib.bpf_table_max_entries_id(mod, i)), "flags": int(lib.bpf_table_flags_id(mod, i)),
        })
    progs = []
    for i in range(lib.bpf_num_functions(mod)):
        name = lib.bpf_function_name(mod, i).decode()
        kind = next((p for p in PROG_TYPE if name.startswith(p)), None)
        if kind is None:
            return  # a kprobe (or another kind): not cached
        progs.append({"name": name, "kind": kind, "insns": bpf.dump_func(name.encode()).hex()})
    _store(k, {"format": FORMAT, "license": lib.bpf_module_license(mod).decode(), "maps": maps,
               "progs": progs})


def _store(k: str, entry: dict[str, Any]) -> None:
    d = cache_dir()
    if os.geteuid() != 0:
        return
    try:
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not _trusted(d):
            return
        tmp = d / f".{k}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(entry, f)
        os.rename(tmp, d / f"{k}.json")
    except OSError:
        pass


def _patched(insns: bytes, fds: dict[int, int]) -> bytes:
    """The instructions with each map descriptor of the compile replaced by ours."""
    b = bytearray(insns)
    for off in range(0, len(b) - 15, 8):
        if b[off] == LD_IMM64 and b[off + 1] >> 4 == PSEUDO_MAP_FD:
            old = int.from_bytes(b[off + 4 : off + 8], "little", signed=True)
            if old not in fds:
                raise bpfsys.BpfError(f"instruction {off // 8} names an unknown map descriptor {old}")
            b[off + 4 : off + 8] = fds[old].to_bytes(4, "little", signed=True)
    return bytes(b)


class Loaded:
    """What :func:`load` made: maps and programs by name, attachment descriptors."""

    def __init__(self) -> None:
        self.maps: dict[str, int] = {}
        self.progs: dict[str, int] = {}
        self.links: list[int] = []
        self.attached_ns = 0
        self.attach_s = 0.0

    def close(self) -> None:
        for fd in [*self.links, *self.progs.values(), *self.maps.values()]:
            try:
                os.close(fd)
            except OSError:
                pass


def load(entry: dict[str, Any], prepare: Any) -> Loaded:
    """Create the maps, load the programs, call ``prepare(maps)`` (filters, perf outputs:
    before the first probe), then attach every program. Raises bpfsys.BpfError; nothing
    is left attached or open then."""
    out = Loaded()
    try:
        old_to_new: dict[int, int] = {}
        for m in entry["maps"]:
            fd = bpfsys.map_create(m["type"], m["key"], m["value"], m["max"], m["flags"], m["name"])
            out.maps[m["name"]] = fd
            old_to_new[int(m["fd"])] = fd
        lic = str(entry["license"])
        for p in entry["progs"]:
            insns = _patched(bytes.fromhex(p["insns"]), old_to_new)
            out.progs[p["name"]] = bpfsys.prog_load(PROG_TYPE[p["kind"]], insns, lic, p["name"])
        prepare(out.maps)
        tracefs = find_tracefs()
        out.attached_ns = time.monotonic_ns()
        for p in sorted(entry["progs"], key=lambda p: bpfsys.attach_rank(str(p["name"]))):
            fd, name = out.progs[p["name"]], p["name"]
            if p["kind"] == RAW_TRACEPOINT:
                out.links.append(bpfsys.raw_tracepoint_open(name[len(RAW_TRACEPOINT) :], fd))
            else:
                category, _, event = name[len(TRACEPOINT) :].partition("__")
                if tracefs is None:
                    raise bpfsys.BpfError("tracefs is not mounted")
                tp_id = int((tracefs / "events" / category / event / "id").read_text())
                out.links.append(bpfsys.attach_tracepoint(tp_id, fd))
        out.attach_s = (time.monotonic_ns() - out.attached_ns) / 1e9
    except (bpfsys.BpfError, OSError, KeyError, ValueError, TypeError):
        out.close()
        raise
    return out
