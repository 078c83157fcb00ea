"""Text that is safe to print: strings from a capture (process names, paths, header
fields) come from a file that may be hostile, so control characters (terminal escape
sequences, newlines, NUL...) are shown as escapes, never sent to the terminal."""

from __future__ import annotations

import math
from typing import Any

MAX_DEPTH = 32  # nesting kept of a document read from a file when it is shown or written back
TOO_DEEP = "(nested too deeply)"


def printable(text: str) -> str:
    """``text`` with every non-printable character as a Python-style escape (\\x1b...)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


def printable_doc(obj: Any, depth: int = 0) -> Any:
    """A copy of a JSON-like document with every string (keys too) made printable, for
    rendering it as text (nesting beyond MAX_DEPTH replaced by a note)."""
    if isinstance(obj, str):
        return printable(obj)
    if depth >= MAX_DEPTH and isinstance(obj, (dict, list, tuple)):
        return TOO_DEEP
    if isinstance(obj, dict):
        return {printable_doc(k, depth + 1): printable_doc(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [printable_doc(v, depth + 1) for v in obj]
    return obj


def json_safe(obj: Any, depth: int = 0) -> Any:
    """A copy of a document (from a capture's header, say) that json.dumps can always
    write as valid JSON: non-finite floats become None, bytes become hex, keys become
    strings, nesting beyond MAX_DEPTH is replaced by a note (no RecursionError)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, (bytes, bytearray)):
        return bytes(obj).hex()
    if depth >= MAX_DEPTH and isinstance(obj, (dict, list, tuple)):
        return TOO_DEEP
    if isinstance(obj, dict):
        return {k if isinstance(k, str) else str(k): json_safe(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v, depth + 1) for v in obj]
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    return str(obj)


def pruned(obj: Any, depth: int = MAX_DEPTH) -> Any:
    """A copy of a msgpack document with nesting beyond ``depth`` replaced by a note, so
    that a header read from a hostile file can be written into a new one."""
    if depth <= 0 and isinstance(obj, (dict, list, tuple)):
        return TOO_DEEP
    if isinstance(obj, dict):
        return {k: pruned(v, depth - 1) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [pruned(v, depth - 1) for v in obj]
    return obj
