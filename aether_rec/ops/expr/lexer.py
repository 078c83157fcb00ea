"""Tokens of the expression language, and its error (a summary line, then the expression
with a caret under the bad token)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from aether_rec.errors import UsageError

# -- errors ---------------------------------------------------------------------------------


class ExprError(UsageError):
    """A malformed expression. ``str()`` is a summary line, then the expression with a caret."""

    def __init__(self, message: str, text: str, start: int, end: int | None = None) -> None:
        self.summary = message
        self.text = text
        self.start = max(0, min(start, len(text)))
        self.end = max(self.start + 1, end if end is not None else self.start + 1)
        one_line = text.replace("\n", " ").replace("\t", " ")
        caret = " " * self.start + "^" * max(1, min(self.end, len(one_line) + 1) - self.start)
        super().__init__(f"bad expression: {message}\n  {one_line}\n  {caret}")


# -- tokens ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Token:
    kind: str  # NAME NUMBER STRING DEV OP END
    text: str
    start: int
    end: int
    value: Any = None


_KEYWORDS = {"and", "or", "not", "in", "has", "true", "false"}
_OPS = ("==", "!=", "<=", ">=", "=~", "!~", "&&", "||", "<", ">", "=", "!", "(", ")", ",", "-")
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_NUM_RE = re.compile(r"(0[xX][0-9a-fA-F]+|(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)([A-Za-zµ]*)")
_DEV_RE = re.compile(r"(\d+):(\d+)")


def tokenize(text: str) -> list[Token]:
    toks: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        if ch in "\"'":
            j = i + 1
            buf: list[str] = []
            while j < n and text[j] != ch:
                if text[j] == "\\" and j + 1 < n:
                    buf.append(text[j + 1])
                    j += 2
                    continue
                buf.append(text[j])
                j += 1
            if j >= n:
                raise ExprError("unterminated string", text, i, n)
            toks.append(Token("STRING", text[i : j + 1], i, j + 1, "".join(buf)))
            i = j + 1
            continue
        m = _DEV_RE.match(text, i)
        if m:
            major, minor = int(m.group(1)), int(m.group(2))
            if major >= 1 << 12 or minor >= 1 << 20:
                raise ExprError("device number out of range", text, i, m.end())
            toks.append(Token("DEV", m.group(0), i, m.end(), (major << 20) | minor))
            i = m.end()
            continue
        if ch.isdigit() or (ch == "." and i + 1 < n and text[i + 1].isdigit()):
            m = _NUM_RE.match(text, i)
            assert m is not None
            toks.append(Token("NUMBER", m.group(0), i, m.end(), (m.group(1), m.group(2))))
            i = m.end()
            continue
        m = _NAME_RE.match(text, i)
        if m:
            word = m.group(0)
            kind = "KW" if word.lower() in _KEYWORDS else "NAME"
            toks.append(Token(kind, word, i, m.end(), word.lower() if kind == "KW" else word))
            i = m.end()
            continue
        for op in _OPS:
            if text.startswith(op, i):
                toks.append(Token("OP", op, i, i + len(op), op))
                i += len(op)
                break
        else:
            raise ExprError(f"unexpected character {ch!r}", text, i)
    toks.append(Token("END", "", n, n))
    return toks
