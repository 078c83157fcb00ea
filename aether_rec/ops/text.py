"""Text that is safe to print: strings from a capture (process names, paths, header
fields) come from a file that may be hostile, so control characters (terminal escape
sequences, newlines, NUL...) are shown as escapes, never sent to the terminal."""

from __future__ import annotations

from typing import Any


def printable(text: str) -> str:
    """``text`` with every non-printable character as a Python-style escape (\\x1b...)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


def printable_doc(obj: Any) -> Any:
    """A copy of a JSON-like document with every string (keys too) made printable, for
    rendering it as text."""
    if isinstance(obj, str):
        return printable(obj)
    if isinstance(obj, dict):
        return {printable_doc(k): printable_doc(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [printable_doc(v) for v in obj]
    return obj
