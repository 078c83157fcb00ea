"""Kernel type information from BTF (``/sys/kernel/btf/vmlinux``): struct member offsets
and enum values, read by this small parser so that BPF programs can read kernel
structures at the running kernel's offsets.

bcc compiles against kernel headers, and on many machines the only headers are a
distribution's generic ones for another kernel version: a ``struct request`` read through
them can be at the wrong offsets. The block layer's raw tracepoints hand over a
``struct request *``; its fields are read with ``bpf_probe_read_kernel`` at the offsets
found here and passed as ``-D`` flags (see :func:`block_request_layout`), which is what
CO-RE relocations do in libbpf programs.

Format: Documentation/bpf/btf.rst (a header, a type section of ``struct btf_type``
records each followed by kind-specific data, a string section).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

VMLINUX = Path("/sys/kernel/btf/vmlinux")

_MAGIC = 0xEB9F
# kinds (include/uapi/linux/btf.h)
_INT, _PTR, _ARRAY, _STRUCT, _UNION, _ENUM, _FWD, _TYPEDEF = 1, 2, 3, 4, 5, 6, 7, 8
_VOLATILE, _CONST, _RESTRICT, _FUNC, _FUNC_PROTO, _VAR, _DATASEC = 9, 10, 11, 12, 13, 14, 15
_FLOAT, _DECL_TAG, _TYPE_TAG, _ENUM64 = 16, 17, 18, 19
_MODIFIERS = (_TYPEDEF, _VOLATILE, _CONST, _RESTRICT, _TYPE_TAG)


class BTFError(Exception):
    """The BTF blob is missing, damaged, or lacks a type we need."""


@dataclass(frozen=True)
class Member:
    name: str
    type_id: int
    bit_offset: int
    bitfield_size: int  # 0: not a bitfield


@dataclass(frozen=True)
class _Type:
    kind: int
    name: str
    size_or_type: int
    members: tuple[Member, ...] = ()
    enum: tuple[tuple[str, int], ...] = ()
    params: tuple[int, ...] = ()  # FUNC_PROTO: parameter type ids


class BTF:
    """The types of one BTF blob, by id; structs, unions and enums by name."""

    def __init__(self, data: bytes) -> None:
        if len(data) < 24:
            raise BTFError("BTF blob too short")
        magic, _version, _flags, hdr_len = struct.unpack_from("<HBBI", data, 0)
        if magic != _MAGIC:
            raise BTFError("not a little-endian BTF blob")
        type_off, type_len, str_off, str_len = struct.unpack_from("<IIII", data, 8)
        base = hdr_len
        if base + max(type_off + type_len, str_off + str_len) > len(data):
            raise BTFError("BTF sections run past the end of the blob")
        self._strings = data[base + str_off : base + str_off + str_len]
        self.types: list[_Type] = [_Type(0, "void", 0)]
        self._by_name: dict[tuple[int, str], int] = {}
        self._parse(data[base + type_off : base + type_off + type_len])

    @classmethod
    def load(cls, path: Path = VMLINUX) -> BTF:
        try:
            return cls(path.read_bytes())
        except OSError as e:
            raise BTFError(f"cannot read {path}: {e.strerror}") from None

    def _str(self, off: int) -> str:
        end = self._strings.find(b"\0", off)
        return self._strings[off : end if end >= 0 else len(self._strings)].decode("ascii", "replace")

    def _parse(self, sec: bytes) -> None:
        pos = 0
        n = len(sec)
        while pos + 12 <= n:
            name_off, info, size_or_type = struct.unpack_from("<III", sec, pos)
            pos += 12
            kind = (info >> 24) & 0x1F
            vlen = info & 0xFFFF
            kind_flag = info >> 31
            name = self._str(name_off) if kind in (_STRUCT, _UNION, _ENUM, _ENUM64, _TYPEDEF, _INT) else ""
            members: tuple[Member, ...] = ()
            enum: tuple[tuple[str, int], ...] = ()
            params: tuple[int, ...] = ()
            if kind in (_INT, _VAR, _DECL_TAG):
                pos += 4
            elif kind == _ARRAY:
                pos += 12
            elif kind in (_STRUCT, _UNION):
                ms = []
                for _ in range(vlen):
                    m_name, m_type, m_off = struct.unpack_from("<III", sec, pos)
                    pos += 12
                    bits, size = (m_off & 0xFFFFFF, m_off >> 24) if kind_flag else (m_off, 0)
                    ms.append(Member(self._str(m_name), m_type, bits, size))
                members = tuple(ms)
            elif kind == _ENUM:
                es = []
                for _ in range(vlen):
                    e_name, e_val = struct.unpack_from("<Ii", sec, pos)
                    pos += 8
                    es.append((self._str(e_name), e_val))
                enum = tuple(es)
            elif kind == _ENUM64:
                es = []
                for _ in range(vlen):
                    e_name, lo, hi = struct.unpack_from("<III", sec, pos)
                    pos += 12
                    es.append((self._str(e_name), lo | (hi << 32)))
                enum = tuple(es)
            elif kind == _FUNC_PROTO:
                params = tuple(struct.unpack_from("<I", sec, pos + 8 * i + 4)[0] for i in range(vlen))
                pos += 8 * vlen
            elif kind == _DATASEC:
                pos += 12 * vlen
            elif kind not in (_PTR, _FWD, _TYPEDEF, _VOLATILE, _CONST, _RESTRICT, _FUNC, _FLOAT, _TYPE_TAG):
                raise BTFError(f"unknown BTF kind {kind}")
            tid = len(self.types)
            self.types.append(_Type(kind, name, size_or_type, members, enum, params))
            if name and kind in (_STRUCT, _UNION, _ENUM, _ENUM64, _TYPEDEF):
                group = _STRUCT if kind in (_STRUCT, _UNION) else kind if kind == _TYPEDEF else _ENUM
                # the first complete definition wins (modules may repeat names)
                self._by_name.setdefault((group, name), tid)

    def struct(self, name: str) -> _Type:
        tid = self._by_name.get((_STRUCT, name))
        if tid is None:
            raise BTFError(f"struct {name} not in BTF")
        return self.types[tid]

    def _resolve(self, tid: int) -> _Type:
        t = self.types[tid]
        while t.kind in _MODIFIERS:
            t = self.types[t.size_or_type]
        return t

    def member(self, struct_name: str, path: str) -> tuple[int, int]:
        """Byte offset and size of ``a.b.c`` in ``struct struct_name`` (anonymous unions
        and structs are looked through)."""
        t = self.struct(struct_name)
        offset = 0
        size = 0
        for part in path.split("."):
            found = self._find(t, part)
            if found is None:
                raise BTFError(f"struct {struct_name} has no member {path}")
            bit_off, m = found
            if m.bitfield_size:
                raise BTFError(f"{struct_name}.{path} is a bitfield")
            offset += bit_off // 8
            t = self._resolve(m.type_id)
            size = self._size(t)
        return offset, size

    def has_member(self, struct_name: str, path: str) -> bool:
        try:
            self.member(struct_name, path)
            return True
        except BTFError:
            return False

    def _find(self, t: _Type, name: str) -> tuple[int, Member] | None:
        for m in t.members:
            if m.name == name:
                return m.bit_offset, m
            if not m.name:
                inner = self._resolve(m.type_id)
                if inner.kind in (_STRUCT, _UNION):
                    hit = self._find(inner, name)
                    if hit is not None:
                        return m.bit_offset + hit[0], hit[1]
        return None

    def _size(self, t: _Type) -> int:
        if t.kind in (_INT, _STRUCT, _UNION, _ENUM, _ENUM64, _FLOAT):
            return t.size_or_type
        if t.kind == _PTR:
            return 8
        return 0

    def tracepoint_args(self, tp: str) -> list[str]:
        """The argument types of raw tracepoint ``tp`` as C-ish names (``struct request *``,
        ``int``...), from the kernel's ``btf_trace_<tp>`` typedef; the first parameter of
        that prototype (the context pointer) is left out, so index i is ``ctx->args[i]``."""
        tid = self._by_name.get((_TYPEDEF, f"btf_trace_{tp}"))
        if tid is None:
            raise BTFError(f"raw tracepoint {tp} not in BTF")
        proto = self._resolve(tid)
        if proto.kind == _PTR:
            proto = self.types[proto.size_or_type]
        if proto.kind != _FUNC_PROTO:
            raise BTFError(f"btf_trace_{tp} is not a function prototype")
        return [self._type_name(p) for p in proto.params[1:]]

    def _type_name(self, tid: int) -> str:
        t = self.types[tid]
        if t.kind == _PTR:
            return self._type_name(t.size_or_type) + " *"
        if t.kind in (_CONST, _VOLATILE, _RESTRICT, _TYPE_TAG):
            return self._type_name(t.size_or_type)
        if t.kind in (_STRUCT, _UNION):
            return ("struct " if t.kind == _STRUCT else "union ") + t.name
        if t.kind in (_ENUM, _ENUM64):
            return "enum " + t.name
        return t.name or "void"

    def enum_value(self, name: str) -> int:
        """The value of enumerator ``name`` in any enum."""
        for t in self.types:
            if t.kind in (_ENUM, _ENUM64):
                for n, v in t.enum:
                    if n == name:
                        return v
        raise BTFError(f"enumerator {name} not in BTF")


#: REQ_OP_* and __REQ_* names -> the -D flag the block program reads
_REQ_OPS = ("READ", "WRITE", "FLUSH", "DISCARD", "SECURE_ERASE", "WRITE_ZEROES")
_REQ_FLAGS = ("SYNC", "META", "FUA", "PREFLUSH", "RAHEAD")


def _arg_index(btf: BTF, tp: str, type_name: str) -> int:
    args = btf.tracepoint_args(tp)
    try:
        return args.index(type_name)
    except ValueError:
        raise BTFError(f"raw tracepoint {tp} has no {type_name} argument ({', '.join(args)})") from None


def block_raw_layout(btf: BTF, io_start: bool, insert: bool) -> list[str]:
    """cflags that tell ``bpf/block.c`` where the running kernel keeps a request's sector,
    length, flags and disk, a bio's flags and disk, and which raw tracepoint argument is
    the request or bio (raw tracepoints hand over pointers, not formatted fields).

    Raises BTFError when something needed is missing (the block layer then falls back to
    the classic tracepoints, bpf/block_tp.c)."""
    defs: dict[str, int] = {}
    defs["RQ_OFF_SECTOR"], _ = btf.member("request", "__sector")
    defs["RQ_OFF_DATA_LEN"], _ = btf.member("request", "__data_len")
    defs["RQ_OFF_CMD_FLAGS"], _ = btf.member("request", "cmd_flags")
    if btf.has_member("request", "rq_disk"):  # up to 5.15
        defs["RQ_OFF_DISK"], _ = btf.member("request", "rq_disk")
    else:
        defs["RQ_OFF_Q"], _ = btf.member("request", "q")
        defs["Q_OFF_DISK"], _ = btf.member("request_queue", "disk")
    defs["DISK_OFF_MAJOR"], _ = btf.member("gendisk", "major")
    defs["DISK_OFF_FIRST_MINOR"], _ = btf.member("gendisk", "first_minor")
    defs["BIO_OFF_OPF"], _ = btf.member("bio", "bi_opf")
    if btf.has_member("bio", "bi_bdev"):  # 5.12+
        defs["BIO_OFF_BDEV"], _ = btf.member("bio", "bi_bdev")
        defs["BDEV_OFF_DISK"], _ = btf.member("block_device", "bd_disk")
    else:
        defs["BIO_OFF_DISK"], _ = btf.member("bio", "bi_disk")
    for op in _REQ_OPS:
        defs[f"KREQ_OP_{op}"] = btf.enum_value(f"REQ_OP_{op}")
    for flag in _REQ_FLAGS:
        defs[f"KREQ_BIT_{flag}"] = btf.enum_value(f"__REQ_{flag}")
    rq = "struct request *"
    defs["RQ_ARG_ISSUE"] = _arg_index(btf, "block_rq_issue", rq)
    defs["RQ_ARG_COMPLETE"] = _arg_index(btf, "block_rq_complete", rq)
    defs["BIO_ARG_QUEUE"] = _arg_index(btf, "block_bio_queue", "struct bio *")
    if insert:
        defs["RQ_ARG_INSERT"] = _arg_index(btf, "block_rq_insert", rq)
        defs["BLK_HAS_INSERT"] = 1
    if io_start:
        defs["RQ_ARG_IO_START"] = _arg_index(btf, "block_io_start", rq)
        defs["BLK_HAS_IO_START"] = 1
    err = btf.tracepoint_args("block_rq_complete")[defs["RQ_ARG_COMPLETE"] + 1]
    if err == "int":  # before 5.11 the tracepoint got an errno, later a blk_status_t
        defs["BLK_ERR_IS_ERRNO"] = 1
    return [f"-D{k}={v}" for k, v in sorted(defs.items())]
