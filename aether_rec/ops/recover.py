"""``recover``: rebuild a clean, indexed capture from a damaged or unfinished one.

Good chunks are copied as they are (not re-encoded); the index is rebuilt from the
summaries every chunk carries, and (format 1.2) the writer decompresses each chunk once for
its latency histograms. What could not be kept is reported.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from typing import Any, BinaryIO

from aether_rec.errors import DamagedCaptureError
from aether_rec.format.blocks import HEAD, Damage, unpack
from aether_rec.format.copy import CopyReport, Source, copy_blocks, scan_file, source_name
from aether_rec.format.output import refuse_same_file
from aether_rec.format.writer import CaptureWriter


@dataclass
class RecoverReport(CopyReport):
    header_rebuilt: bool = False

    @property
    def damaged(self) -> list[str]:
        """What was dropped: damaged blocks, a cut tail, unknown block types."""
        return self.dropped


def recover(src: Source, dst: str | os.PathLike[str] | BinaryIO,
            overwrite: bool = False) -> RecoverReport:
    report = RecoverReport()
    refuse_same_file(dst, [src])
    with scan_file(src) as blocks:
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
        out_header["recovered_from"] = {"file": os.path.basename(source_name(src))}
        writer = CaptureWriter(dst, out_header, overwrite=overwrite, atomic=True)
        try:
            copy_blocks(itertools.chain(pending, blocks), writer, report)
            writer.close(stats={**(report.index_stats or {}), "recovered": True, "damaged": report.damaged})
        except BaseException:
            writer.abort()
            raise
    return report
