"""What every command shares: opening captures, printing warnings, output choice."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import click

from aether_rec.errors import AetherError, UsageError
from aether_rec.format.reader import Capture
from aether_rec.ops.text import json_safe

# An input capture on the command line: a name, checked by the library when it opens it
# (one line, exit 1 for a missing, unreadable or wrong file), not by click (a usage banner
# and exit 2).
CAPTURE_PATH = click.Path(allow_dash=True, readable=False)


def warn(msg: str) -> None:
    from aether_rec.cli.terminal import echo_err, paint_err

    echo_err(f"aether-rec: {paint_err('warning:', 'warning')} {msg}")


class _Error(click.ClickException):
    """A runtime error, shown as one line with ``Error:`` in colour where colour is on."""

    def show(self, file: Any = None) -> None:
        from aether_rec.cli.terminal import echo_err, paint_err

        echo_err(f"{paint_err('Error:', 'error')} {self.format_message()}")


def note(msg: str) -> None:
    click.echo(f"aether-rec: {msg}", err=True)


def fail(exc: AetherError) -> click.ClickException:
    """The click exception for a domain error (exit 2 for usage errors, else 1)."""
    if isinstance(exc, UsageError):
        err = click.UsageError(str(exc))
        return err
    return _Error(str(exc))


@contextlib.contextmanager
def open_captures(
    paths: Sequence[str], strict: bool = False, progress: bool = False, lazy_index: bool = False
) -> Iterator[list[Capture]]:
    """Open captures for a command ("-" is stdin, once); their warnings go to stderr at the
    end, once each, and nowhere else. With ``progress``, files are read through counters
    that terminal.progress() draws."""
    from aether_rec.cli import terminal

    if list(paths).count("-") > 1:
        raise UsageError("'-' (stdin) can be given only once")
    caps: list[Capture] = []
    with terminal.sources(paths, progress) as srcs:
        try:
            for p, src in zip(paths, srcs):
                caps.append(Capture(sys.stdin.buffer if p == "-" else src, strict=strict,
                                    lazy_index=lazy_index))
            yield caps
        finally:
            for cap in caps:
                for w in cap.warnings:
                    warn(w)
                cap.close()


@contextlib.contextmanager
def open_capture(path: str, strict: bool = False, progress: bool = False,
                 lazy_index: bool = False) -> Iterator[Capture]:
    """One capture, as open_captures opens it."""
    with open_captures([path], strict, progress, lazy_index) as caps:
        yield caps[0]


def echo_json(obj: Any) -> None:
    """Valid JSON whatever a capture's header holds (no NaN/Infinity, bounded nesting)."""
    click.echo(json.dumps(json_safe(obj), indent=2, allow_nan=False))
