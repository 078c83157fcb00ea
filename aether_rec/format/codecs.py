"""Compression, and every decompression of file content: the codecs of chunk bodies
(format/SPEC.md, section 5), each frame bounded by the size the chunk's checked summary
declares, and ``decompress_limited`` for the other zstd frames (the latency histograms of
the index and the SUMM block, SPEC 9.1), bounded by a limit of format/limits.py. Needs no
numpy: reading a SUMM block (``info``) goes through here.
"""

from __future__ import annotations

from collections.abc import Callable

import zstandard

from aether_rec.errors import DamagedCaptureError


class Codec:
    """A compression codec for chunk bodies, named in the header and in each chunk."""

    name = "none"

    def compress(self, data: bytes) -> bytes:
        return data

    def decompress(self, data: bytes, raw_size: int) -> bytes:
        if len(data) != raw_size:
            raise DamagedCaptureError("uncompressed chunk body has the wrong size")
        return data


class ZstdCodec(Codec):
    name = "zstd"

    def __init__(self, level: int = 1, threads: int = 0) -> None:
        # threads: zstd's own workers for each chunk (-1: one per CPU); the GIL is released
        self._c = zstandard.ZstdCompressor(level=level, threads=threads, write_content_size=True)
        self._d = zstandard.ZstdDecompressor()

    def compress(self, data: bytes) -> bytes:
        return self._c.compress(data)

    def decompress(self, data: bytes, raw_size: int) -> bytes:
        try:
            declared = zstandard.frame_content_size(data)
        except zstandard.ZstdError as exc:
            raise DamagedCaptureError(f"chunk body is not a zstd frame ({exc})") from None
        if declared != raw_size:
            raise DamagedCaptureError("zstd frame size disagrees with the chunk summary")
        try:
            out = self._d.decompress(data, max_output_size=raw_size)
        except zstandard.ZstdError as exc:
            raise DamagedCaptureError(f"chunk body does not decompress ({exc})") from None
        if len(out) != raw_size:
            raise DamagedCaptureError("chunk body decompressed to the wrong size")
        return out


CODECS: dict[str, Callable[..., Codec]] = {"zstd": ZstdCodec, "none": Codec}


def get_codec(name: str, level: int | None = None, threads: int = 0) -> Codec:
    """The codec ``name``; ``level`` and ``threads`` (compression workers, -1: one per
    CPU) apply to codecs that have them."""
    factory = CODECS.get(name)
    if factory is None:
        raise DamagedCaptureError(
            f"capture uses codec {name!r}, which this reader does not know "
            f"(known: {', '.join(sorted(CODECS))})"
        )
    if factory is ZstdCodec:
        return ZstdCodec(1 if level is None else level, threads)
    return factory()


def decompress_limited(data: bytes, limit: int, what: str) -> bytes:
    """A zstd frame from a file that is not a chunk body (the index's histograms, SPEC 9.1),
    decompressed to at most ``limit`` bytes; anything else -> DamagedCaptureError."""
    try:
        out = zstandard.ZstdDecompressor().decompress(data, max_output_size=limit)
    except zstandard.ZstdError as exc:
        raise DamagedCaptureError(f"{what} undecodable ({exc})") from None
    if len(out) > limit:
        raise DamagedCaptureError(f"{what} too large")
    return bytes(out)
