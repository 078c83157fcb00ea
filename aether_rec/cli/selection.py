"""The selection every offline command shares, on the command line: the options (handed
to the command as one typed SelectionSpec), resolving it for each capture (its warnings
said once on stderr), and ``FILE... [EXPR]`` positional arguments."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

import click

from aether_rec.cli.common import warn
from aether_rec.ops.window import SelectionSpec

F = TypeVar("F", bound=Callable[..., Any])


def selection_options(func: F) -> F:
    """``--where --since --until --pid --comm --min-latency --layer --op``, handed to the
    command as one typed ``selection`` argument (ops.window.SelectionSpec); checking it is
    the library's job (``SelectionSpec.resolve``)."""
    opts = [
        click.option(
            "-e",
            "--where",
            "where",
            multiple=True,
            metavar="EXPR",
            help="Keep events matching EXPR (repeatable; ANDed). See `filter --help`.",
        ),
        click.option(
            "--since",
            metavar="TIME",
            help="Start of the window: +SECONDS from the capture start (+2.5s) or ISO time.",
        ),
        click.option("--until", metavar="TIME", help="End of the window (exclusive), same forms as --since."),
        click.option("--pid", "pids", multiple=True, type=int, help="Only this process id (repeatable)."),
        click.option("--comm", "comms", multiple=True, help="Only this command name or glob (repeatable)."),
        click.option("--min-latency", metavar="DURATION", help="Only I/Os at least this slow (e.g. 5ms)."),
        click.option(
            "--layer", "layers", multiple=True, help="Only these layers (syscall, block, vfs; comma list)."
        ),
        click.option(
            "--op", "ops", multiple=True, help="Only these ops (read, pwrite, fsync...; comma list)."
        ),
    ]

    @functools.wraps(func)
    def with_selection(*args: Any, where: tuple[str, ...], since: str | None, until: str | None,
                       pids: tuple[int, ...], comms: tuple[str, ...], min_latency: str | None,
                       layers: tuple[str, ...], ops: tuple[str, ...], **kw: Any) -> Any:
        kw["selection"] = SelectionSpec(tuple(where), since, until, tuple(pids), tuple(comms),
                                        min_latency, tuple(layers), tuple(ops))
        return func(*args, **kw)

    wrapped: Any = with_selection
    for o in reversed(opts):
        wrapped = o(wrapped)
    return cast(F, wrapped)


def resolved(spec: SelectionSpec, cap: Any) -> Any:
    """``spec`` resolved for ``cap``; what the user may not have meant is said on stderr."""
    return resolved_all(spec, [cap])[0]


def resolved_all(spec: SelectionSpec, caps: Sequence[Any]) -> list[Any]:
    sels = [spec.resolve(cap) for cap in caps]
    for w in dict.fromkeys(w for sel in sels for w in sel.warnings):
        warn(w)
    return sels


def files_and_expression(args: Sequence[str]) -> tuple[list[str], str | None]:
    """``FILE... [EXPR]``: the last argument is the expression when it is not a file (it
    exists, is '-' or ends in .aio), as in `replay a.aio b.aio 'lat > 5ms'`."""
    files = list(args)
    expression = None
    if len(files) > 1 and not is_file_arg(files[-1]):
        expression = files.pop()
    return files, expression


def is_file_arg(arg: str) -> bool:
    return arg == "-" or arg.endswith(".aio") or os.path.exists(arg)
