"""aether-rec: per-I/O latency captures (.aio) recorded with eBPF, analysed anywhere."""

from __future__ import annotations

__version__ = "0.1.0"

from aether_rec.format.reader import Capture, open  # noqa: E402,A004

__all__ = ["Capture", "open", "__version__"]
