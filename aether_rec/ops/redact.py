"""``redact``: a capture safe for a public bug report, with names replaced by keyed hashes.

Process names become ``comm-3f9a1c2b``, file paths are hashed one component at a time so
that depth and (short) extensions stay readable (``/p-1a2b3c4d/p-9c8d7e6f.db``), the
hostname becomes ``host-…`` and command lines are hashed argument by argument (options
such as ``-o`` or ``--duration`` stay). Every hash is HMAC-SHA256 under one key, so the
same name hashes the same way in every capture redacted with that key: captures of one
incident can still be joined. Without a key file the key is random and not stored.

What is rewritten:
  * chunks: the dictionaries of every string column (``comm``, ``path``, and any other,
    e.g. ``source``): only the dictionary lists change, event codes and every other
    column are copied byte for byte, without decoding them; columns of a type this
    version does not know (which could hold anything) are dropped;
  * the header: hostname, command, and every string under keys that are not known to be
    harmless (filters, recovered_from, later additions...); ``redacted: true`` and a
    ``redaction`` map (scheme, what was redacted, a key id when a key file is used;
    never the key) are added;
  * metadata tables (procs, fds, cgroups, ...): comm, paths and command lines by their
    key; any other string except device names; numbers are kept;
  * loss blocks are copied, the index is rebuilt (recorder statistics are kept, their
    strings hashed), blocks of unknown types are dropped.

The per-piece API (``Redactor``, aether_rec/redaction.py) is what ``record --redact`` uses on
the way out.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from aether_rec.errors import DamagedCaptureError, UsageError
from aether_rec.format.blocks import HEAD, Damage, unpack
from aether_rec.format.codecs import CODECS, Codec
from aether_rec.format.copy import CopyReport, Source, copy_blocks, scan_file, source_name
from aether_rec.format.output import refuse_same_file
from aether_rec.format.writer import CaptureWriter
from aether_rec.redaction import Redactor

__all__ = ["RedactReport", "Redactor", "load_key", "redact"]

def load_key(path: str) -> bytes:
    """The redaction key from a file (its bytes, a trailing newline ignored)."""
    try:
        with open(path, "rb") as f:
            key = f.read(1 << 16)
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the key file ({exc.strerror or exc})") from None
    key = key.rstrip(b"\r\n")
    if len(key) < 16:
        raise UsageError(f"{path}: a redaction key needs at least 16 bytes (e.g. head -c 32 /dev/urandom)")
    return key


# -- whole files -----------------------------------------------------------------------------
@dataclass
class RedactReport(CopyReport):
    header: dict[str, Any] = field(default_factory=dict)
    random_key: bool = False


def redact(
    src: Source,
    dst: str | os.PathLike[str] | BinaryIO,
    key: bytes | None = None,
    *,
    keep_paths_under: Sequence[str] = (),
    overwrite: bool = False,
) -> RedactReport:
    """Write a redacted copy of capture ``src`` to ``dst``, block by block (one chunk in
    memory at a time). ``key`` None: a random key, not stored anywhere. Damaged blocks
    are left out and listed in the report, like ``recover``."""
    refuse_same_file(dst, [src])
    report = RedactReport(random_key=key is None)
    r = Redactor(os.urandom(32) if key is None else key, keep_paths_under,
                 key_source="random" if key is None else "key-file")
    with scan_file(src) as blocks:
        first = next(blocks, None)
        if isinstance(first, Damage) or first is None or first.type != HEAD:
            raise DamagedCaptureError(
                f"{source_name(src)}: header block missing or damaged; run `aether-rec recover` first")
        header = unpack(first.payload, "header")
        if not isinstance(header, dict):
            raise DamagedCaptureError("header is not a map", source_name(src))
        codec = header.get("codec")
        codecs: dict[str, Codec] = {}
        # The header goes first but lists what was redacted: what every capture has
        # is listed up front; per-file extras (other string columns) land in the index.
        report.header = r.header(header)
        writer = CaptureWriter(dst, report.header, overwrite=overwrite, atomic=True,
                               codec=codec if isinstance(codec, str) and codec in CODECS else "zstd")
        try:
            copy_blocks(blocks, writer, report, chunk=lambda p: r.chunk_payload(p, codecs), meta=r.meta)
            stats = r.stats(report.index_stats) if report.index_stats else {}
            stats["redaction"] = {"fields": sorted(r.redacted)}
            writer.close(stats=stats)
        except BaseException:
            writer.abort()
            raise
    return report
