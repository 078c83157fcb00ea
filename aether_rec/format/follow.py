"""Following a capture as a recorder appends to it (``replay --follow``, like ``tail -f``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

from aether_rec.errors import DamagedCaptureError
from aether_rec.format.blocks import CHNK, INDX, LOSS, META, TRLR, Damage, read_block, unpack
from aether_rec.format.chunk import Chunk, ChunkInfo
from aether_rec.format.codecs import Codec
from aether_rec.format.columns import decode_chunk, read_summary
from aether_rec.format.records import Loss, Meta


def follow_capture(
    cap: Any, f: BinaryIO, first_block: int, codecs: dict[str, Codec],
    stop: Callable[[], bool], poll: float = 0.25, meta: bool = False,
) -> Iterator[Chunk | Loss | Meta]:
    """Chunks and losses (and with ``meta`` metadata blocks) of ``cap``'s file ``f`` in file
    order from ``first_block``, until the trailer is written or ``stop()`` is true."""
    offset = first_block
    while not stop():
        f.seek(offset)
        try:
            block = read_block(f, offset)
        except (EOFError, Damage) as exc:
            if isinstance(exc, Damage) and not exc.truncated:
                raise DamagedCaptureError(f"{exc.reason} at offset {offset}", cap.name) from None
            time.sleep(poll)
            continue
        offset += block.length
        if block.type == CHNK:
            summary, _ = read_summary(block.payload)
            info = ChunkInfo.from_summary(summary, block.offset, block.length)
            yield decode_chunk(block.payload, info, codecs)
        elif block.type == LOSS:
            yield Loss.from_doc(unpack(block.payload, "loss block"), block.offset)
        elif block.type == META and meta:
            yield Meta.from_doc(unpack(block.payload, "meta block"), block.offset)
        elif block.type in (INDX, TRLR):
            return
