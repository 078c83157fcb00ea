"""What every command shares: opening captures, printing warnings, output choice."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from typing import Any

import click

from aether_rec.errors import AetherError, UsageError
from aether_rec.format.reader import Capture


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
def open_capture(path: str, strict: bool = False, progress: bool = False) -> Iterator[Capture]:
    """Open a capture for a command ("-" is stdin); its warnings go to stderr at the end.
    With ``progress``, it is read through a counter that terminal.progress() draws."""
    from aether_rec.cli import terminal

    src: Any = sys.stdin.buffer if path == "-" else terminal.source(path, progress)
    try:
        cap = Capture(src, strict=strict)
    except BaseException:
        terminal.close_tracked()
        raise
    try:
        yield cap
    finally:
        for w in cap.warnings:
            warn(w)
        cap.close()
        terminal.close_tracked()


def echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, default=str))
