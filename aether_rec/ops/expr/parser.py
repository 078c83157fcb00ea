"""The recursive-descent parser: tokens to a node tree (grammar in the package docstring).
Nothing is ever ``eval``-ed."""

from __future__ import annotations

import re

from aether_rec.errors import UsageError
from aether_rec.ops.expr.fields import ALIASES, ERRNO_CODE, FIELDS, FLAG_CODE, U64_MAX, enum_code
from aether_rec.ops.expr.lexer import ExprError, Token, tokenize
from aether_rec.ops.expr.nodes import (
    CMP_OPS,
    FLIPPED,
    And,
    Compare,
    Const,
    HasFlags,
    InSet,
    Node,
    Not,
    Or,
    StrMatch,
)
from aether_rec.ops.units import duration_factor, size_factor

# -- parser ---------------------------------------------------------------------------------


ABSOLUTE_TIMES = ("ts", "end")  # instants in ns of the monotonic clock: bare numbers are natural


class Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = tokenize(text)
        self.i = 0
        self.notes: list[str] = []  # warnings: the text parsed, but maybe not as meant

    # helpers
    @property
    def tok(self) -> Token:
        return self.toks[self.i]

    def next(self) -> Token:
        t = self.toks[self.i]
        self.i += 1
        return t

    def error(self, msg: str, tok: Token | None = None) -> ExprError:
        t = tok or self.tok
        return ExprError(msg, self.text, t.start, t.end if t.end > t.start else t.start + 1)

    def is_op(self, *ops: str) -> bool:
        return self.tok.kind == "OP" and self.tok.value in ops

    def is_kw(self, *kws: str) -> bool:
        return self.tok.kind == "KW" and self.tok.value in kws

    def expect_op(self, op: str, what: str) -> Token:
        if not self.is_op(op):
            raise self.error(f"expected {what}" + self._found())
        return self.next()

    def _found(self) -> str:
        t = self.tok
        return ", found end of expression" if t.kind == "END" else f", found {t.text!r}"

    # grammar
    def parse(self) -> Node:
        if self.tok.kind == "END":
            raise self.error("empty expression")
        node = self.or_expr()
        if self.tok.kind != "END":
            if self.is_op(")"):
                raise self.error("unbalanced parenthesis: ')' without '('")
            raise self.error("expected 'and', 'or' or end of expression" + self._found())
        return node

    def or_expr(self) -> Node:
        parts = [self.and_expr()]
        while self.is_kw("or") or self.is_op("||"):
            self.next()
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else Or(parts)

    def and_expr(self) -> Node:
        parts = [self.not_expr()]
        while self.is_kw("and") or self.is_op("&&"):
            self.next()
            parts.append(self.not_expr())
        return parts[0] if len(parts) == 1 else And(parts)

    def not_expr(self) -> Node:
        if self.is_kw("not") or self.is_op("!"):
            self.next()
            return Not(self.not_expr())
        return self.primary()

    def primary(self) -> Node:
        t = self.tok
        if self.is_op("("):
            self.next()
            node = self.or_expr()
            if not self.is_op(")"):
                if self.tok.kind == "END":
                    raise ExprError("unbalanced parenthesis: '(' is never closed", self.text, t.start)
                raise self.error("expected ')'" + self._found())
            self.next()
            return node
        if self.is_kw("true", "false"):
            self.next()
            return Const(t.value == "true")
        if t.kind == "NAME":
            fld = self.field_name(t)
            if fld is not None:
                self.next()
                return self.predicate(fld, t)
        if t.kind == "NAME":
            raise self.unknown_field(t)
        if t.kind in ("NUMBER", "STRING", "DEV") or self.is_op("-"):
            # value CMP field
            vstart = self.i
            self.skip_value()
            if not (self.tok.kind == "OP" and self.tok.value in CMP_OPS | {"="}):
                raise self.error("expected a comparison (==, !=, <, <=, >, >=)" + self._found())
            op = "==" if self.next().value == "=" else self.toks[self.i - 1].value
            ft = self.tok
            fld = self.field_name(ft) if ft.kind == "NAME" else None
            if fld is None:
                if ft.kind == "NAME":
                    raise self.unknown_field(ft)
                raise self.error("expected a field name" + self._found())
            self.next()
            end = self.i
            self.i = vstart
            node = self.comparison(fld, FLIPPED[op], ft)
            self.i = end
            return node
        if t.kind == "END":
            raise self.error("expression ends too early: expected a field, 'not' or '('")
        if self.is_op(")"):
            raise self.error("unbalanced parenthesis: ')' without '('")
        raise self.error(f"expected a field, 'not' or '(', found {t.text!r}")

    def skip_value(self) -> None:
        if self.is_op("-"):
            self.next()
        if self.tok.kind not in ("NUMBER", "STRING", "DEV", "NAME"):
            raise self.error("expected a value" + self._found())
        self.next()

    def field_name(self, t: Token) -> str | None:
        name = ALIASES.get(t.value.lower(), t.value.lower()) if t.kind == "NAME" else None
        return name if name in FIELDS else None

    def unknown_field(self, t: Token) -> ExprError:
        names = ", ".join(sorted(FIELDS))
        return self.error(f"unknown field {t.text!r} (fields: {names})", t)

    def predicate(self, fld: str, ftok: Token) -> Node:
        kind = FIELDS[fld].kind
        if self.is_kw("not"):
            nt = self.next()
            if not self.is_kw("in"):
                raise self.error("expected 'in' after 'not'", nt)
            self.next()
            return Not(self.in_list(fld))
        if self.is_kw("in"):
            self.next()
            return self.in_list(fld)
        if self.is_kw("has"):
            ht = self.next()
            if kind != "flags":
                raise self.error(f"'has' applies to flags, not to {fld}", ht)
            bits = self.flag_value()
            while self.is_op(","):
                self.next()
                bits |= self.flag_value()
            return HasFlags(bits)
        if self.is_op("=~", "!~"):
            ot = self.next()
            if kind != "str":
                raise self.error(f"{ot.text} (regular expression) applies to strings, not to {fld}", ot)
            st = self.tok
            if st.kind != "STRING":
                raise self.error("expected a quoted regular expression" + self._found())
            self.next()
            try:
                node: Node = StrMatch(fld, [st.value], regex=True)
            except re.error as exc:
                raise self.error(f"bad regular expression: {exc}", st) from exc
            return Not(node) if ot.value == "!~" else node
        if self.tok.kind == "OP" and self.tok.value in CMP_OPS | {"="}:
            op = self.next().value
            return self.comparison(fld, "==" if op == "=" else op, ftok)
        raise self.error(f"expected a comparison, 'in' or 'has' after {ftok.text!r}" + self._found())

    def comparison(self, fld: str, op: str, ftok: Token) -> Node:
        kind = FIELDS[fld].kind
        if kind == "str":
            vt = self.tok
            if op not in ("==", "!="):
                raise self.error(f"{fld} is a string: compare it with == or != (globs allowed)", vt)
            s = self.string_value()
            node: Node = StrMatch(fld, [s])
            return Not(node) if op == "!=" else node
        v = self.value(fld)
        return Compare(fld, op, v)

    def in_list(self, fld: str) -> Node:
        open_tok = self.tok
        self.expect_op("(", "'(' after 'in'")
        kind = FIELDS[fld].kind
        strs: list[str] = []
        nums: list[int] = []
        while True:
            if self.is_op(")"):
                if not strs and not nums:
                    raise self.error("empty list")
                break
            if kind == "str":
                strs.append(self.string_value())
            else:
                nums.append(self.value(fld))
            if self.is_op(","):
                self.next()
                continue
            if self.is_op(")"):
                break
            if self.tok.kind == "END":
                raise ExprError("unbalanced parenthesis: '(' is never closed", self.text, open_tok.start)
            raise self.error("expected ',' or ')'" + self._found())
        self.next()
        if kind == "str":
            return StrMatch(fld, strs)
        return InSet(fld, nums)

    def string_value(self) -> str:
        t = self.tok
        if t.kind == "STRING":
            self.next()
            return str(t.value)
        if t.kind in ("NAME", "NUMBER"):
            self.next()
            return t.text
        raise self.error("expected a string" + self._found())

    def flag_value(self) -> int:
        t = self.tok
        if t.kind == "NAME" and t.value.lower() in FLAG_CODE:
            self.next()
            return FLAG_CODE[t.value.lower()]
        if t.kind == "NUMBER":
            return self.number(t, "int")
        raise self.error(f"unknown flag {t.text!r} (flags: {', '.join(FLAG_CODE)})")

    def value(self, fld: str) -> int:
        kind = FIELDS[fld].kind
        neg = False
        if self.is_op("-"):
            self.next()
            neg = True
        t = self.tok
        if t.kind == "NUMBER":
            v = self.number(t, kind)
            if kind == "time" and fld not in ABSOLUTE_TIMES and not t.value[1] and v:
                # the one rule (docs/offline.md, Units): a bare number on a duration field is
                # nanoseconds, the stored unit; said, since "lat > 5" may have meant 5 ms
                self.notes.append(f"{fld} ... {t.text}: a number without a unit is nanoseconds; write "
                                  f"{t.text}ns, {t.text}us or {t.text}ms to say which")
        elif t.kind == "DEV":
            if kind != "dev":
                raise self.error(f"major:minor is a device number; {fld} is not a device", t)
            self.next()
            v = int(t.value)
        elif t.kind in ("NAME", "STRING"):
            v = self.name_value(fld, kind, t)
        elif t.kind == "END":
            raise self.error(f"expected a value for {fld}, found end of expression")
        else:
            raise self.error(f"expected a value for {fld}, found {t.text!r}")
        return -v if neg else v

    def name_value(self, fld: str, kind: str, t: Token) -> int:
        word = str(t.value)
        key = word.lower()
        if kind == "enum":
            try:
                code = enum_code(fld, word)
            except UsageError as exc:
                raise self.error(str(exc), t) from None
            self.next()
            return code
        if kind in ("errno", "size") and fld in ("errno", "result") and word.upper() in ERRNO_CODE:
            self.next()
            return ERRNO_CODE[word.upper()]
        if kind == "flags" and key in FLAG_CODE:
            self.next()
            return FLAG_CODE[key]
        if kind == "dev":
            raise self.error(f"a device is written major:minor (e.g. 8:0), not {word!r}", t)
        if t.kind == "STRING":
            raise self.error(f"{fld} is a number, not a string", t)
        if self.field_name(t) is not None:
            raise self.error(f"comparing two fields is not supported ({fld} vs {word})", t)
        raise self.error(f"expected a number for {fld}, found {word!r}", t)

    def number(self, t: Token, kind: str) -> int:
        raw, unit = t.value
        self.next()
        try:
            base: float | int = (
                int(raw, 16) if raw.lower().startswith("0x") else (int(raw) if raw.isdigit() else float(raw))
            )
        except ValueError as exc:  # pragma: no cover - the tokenizer checked the shape
            raise self.error(f"bad number {raw!r}", t) from exc
        factor = 1
        ut = Token("UNIT", unit, t.start + len(raw), t.end)
        if unit:
            if kind == "time":
                f = duration_factor(unit)
                if f is None:
                    hint = " (that is a size unit)" if size_factor(unit) else ""
                    raise self.error(f"bad unit {unit!r} for a duration{hint}: use ns, us, ms or s", ut)
                factor = f
            elif kind in ("size", "int"):
                f = size_factor(unit)
                if f is None:
                    hint = " (that is a duration unit)" if duration_factor(unit) else ""
                    raise self.error(f"bad unit {unit!r} for a size{hint}: use K, M or G", ut)
                factor = f
            else:
                raise self.error(f"bad unit {unit!r}: this field takes no unit", ut)
        elif isinstance(base, float) and kind not in ("time", "size", "int"):
            raise self.error("expected a whole number", t)
        value = base * factor
        if isinstance(value, float):
            value = round(value)
        if abs(value) > U64_MAX:
            raise self.error("number out of range", t)
        return int(value)
