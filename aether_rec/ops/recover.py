"""``recover``: rebuild a clean, indexed capture from a damaged or unfinished one.

Good chunks are copied as they are (not decompressed); the index is rebuilt from the
summaries every chunk carries. What could not be kept is reported.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from aether_rec.errors import CaptureError, DamagedCaptureError
from aether_rec.format.blocks import (
    CHNK,
    HEAD,
    LOSS,
    META,
    PREAMBLE_SIZE,
    Damage,
    check_preamble,
    frame,
    scan,
    unpack,
)
from aether_rec.format.chunk import ChunkInfo
from aether_rec.format.columns import read_summary
from aether_rec.format.reader import parse_loss
from aether_rec.format.writer import CaptureWriter


@dataclass
class RecoverReport:
    chunks: int = 0
    events: int = 0
    losses: int = 0
    metas: int = 0
    damaged: list[str] = field(default_factory=list)
    header_rebuilt: bool = False
    had_index: bool = False


def recover(src: str | os.PathLike[str], dst: str | os.PathLike[str] | BinaryIO,
            overwrite: bool = False) -> RecoverReport:
    report = RecoverReport()
    try:
        f = open(src, "rb")  # noqa: SIM115
    except OSError as exc:
        raise CaptureError(f"{src}: cannot open ({exc.strerror or exc})") from None
    with f:
        check_preamble(f.read(PREAMBLE_SIZE))
        blocks = scan(f, PREAMBLE_SIZE, seekable=True)
        header: dict[str, Any] | None = None
        first = next(blocks, None)
        if isinstance(first, Damage) or first is None or first.type != HEAD:
            report.header_rebuilt = True
            report.damaged.append("header block missing or damaged: wrote a minimal header")
            pending = [first] if first is not None else []
        else:
            try:
                header = unpack(first.payload, "header")
            except DamagedCaptureError as exc:
                report.header_rebuilt = True
                report.damaged.append(f"header: {exc}")
            pending = []
        out_header: dict[str, Any] = dict(header) if isinstance(header, dict) else {"recovered_header": True}
        out_header["recovered_from"] = {"file": os.path.basename(os.fspath(src))}
        writer = CaptureWriter(dst, out_header, overwrite=overwrite)
        try:
            for item in [*pending, *blocks]:
                _copy(item, writer, report)
            writer.close(stats={"recovered": True, "damaged": report.damaged})
        except BaseException:
            writer.abort()
            raise
    return report


def _copy(item: Any, writer: CaptureWriter, report: RecoverReport) -> None:
    if isinstance(item, Damage):
        report.damaged.append(f"offset {item.offset}: {item.reason}")
        return
    try:
        if item.type == CHNK:
            summary, _ = read_summary(item.payload)
            info = ChunkInfo.from_summary(summary, -1, 0)
            writer.copy_chunk_block(frame(CHNK, item.payload), info)
            report.chunks += 1
            report.events += info.n
        elif item.type == LOSS:
            loss = parse_loss(unpack(item.payload, "loss block"), item.offset)
            writer.write_loss(loss.cpu, loss.count, loss.t_first, loss.t_last, loss.kind)
            report.losses += 1
        elif item.type == META:
            d = unpack(item.payload, "meta block")
            writer.write_meta(str(d["table"]), list(d["rows"]))
            report.metas += 1
        elif item.type not in (HEAD, b"INDX", b"TRLR"):
            report.damaged.append(f"offset {item.offset}: unknown block type {item.type!r} not copied")
        else:
            report.had_index = report.had_index or item.type == b"INDX"
    except (DamagedCaptureError, KeyError, TypeError, ValueError) as exc:
        report.damaged.append(f"offset {item.offset}: malformed block skipped ({exc})")
