"""aether-rec: per-I/O latency captures (.aio) recorded with eBPF, analysed anywhere."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from aether_rec.format.reader import Capture, open  # noqa: A004

__all__ = ["Capture", "open", "__version__"]


def __getattr__(name: str) -> Any:
    # Loaded on first use, not at import: `aether-rec --help` and a Ctrl-C in the first
    # moments do not wait for numpy (which the reader needs) to load.
    if name in ("Capture", "open"):
        from aether_rec.format import reader

        return getattr(reader, name)
    raise AttributeError(f"module 'aether_rec' has no attribute {name!r}")
