"""Terminal manners shared by the commands: progress on stderr, colour, ``--quiet``/``--color``.

Progress: a long offline command reads its captures through :class:`Tracked` files that count
the bytes read; a helper thread draws click's progress bar on stderr from those counters (bytes
done of the capture sizes, rate, ETA). Nothing is drawn when stderr is not a terminal, with
``--quiet``, when the data itself goes to the terminal, or for work that ends within a second.

Colour: ``--color=auto`` (the default) colours only a terminal, and the ``NO_COLOR`` environment
variable (https://no-color.org) turns auto off; ``always``/``never`` force it.
"""

from __future__ import annotations

import builtins
import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

ROLES = {
    "loss": {"fg": "red", "bold": True},
    "error": {"fg": "red", "bold": True},
    "warning": {"fg": "yellow", "bold": True},
    "bar": {"fg": "cyan"},
    "slower": {"fg": "red", "bold": True},
    "faster": {"fg": "green", "bold": True},
    "ok": {"fg": "green"},
}
# seconds of work before a progress bar appears (AETHER_PROGRESS_DELAY changes it, for tests)
PROGRESS_DELAY = float(os.environ.get("AETHER_PROGRESS_DELAY") or 1.0)


@dataclass
class Settings:
    color: str = "auto"  # auto, always, never
    quiet: bool = False
    tracked: list[Tracked] = field(default_factory=list)


SETTINGS = Settings()


def color_enabled(stream: IO[Any] | None = None) -> bool:
    """Should text for ``stream`` (default stdout) be coloured?"""
    mode = SETTINGS.color
    if mode == "always":
        return True
    if mode == "never" or os.environ.get("NO_COLOR"):
        return False
    s = stream if stream is not None else sys.stdout
    try:
        return bool(s.isatty())
    except (AttributeError, ValueError):
        return False


def styler(stream: IO[Any] | None = None) -> Callable[[str, str], str] | None:
    """``style(text, role)`` for ``stream``, or None when colour is off."""
    if not color_enabled(stream):
        return None

    def style(text: str, role: str) -> str:
        return click.style(text, **ROLES.get(role, {}))  # type: ignore[arg-type]

    return style


def paint_err(text: str, role: str) -> str:
    """``text`` coloured for stderr when colour is on there."""
    s = styler(sys.stderr)
    return s(text, role) if s else text


def echo_err(text: str) -> None:
    """A line on stderr, keeping its colour when colour is on there."""
    click.echo(text, err=True, color=color_enabled(sys.stderr))


def _set_color(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    SETTINGS.color = value or "auto"


def _set_quiet(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    SETTINGS.quiet = bool(value)


def terminal_options(func: F) -> F:
    """``--quiet`` and ``--color`` for a command."""
    func = click.option(
        "--color",
        type=click.Choice(["auto", "always", "never"]),
        default=None,
        expose_value=False,
        callback=_set_color,
        is_eager=True,
        help="Colour the output: auto (terminals only, off when NO_COLOR is set), always, never.",
    )(func)
    func = click.option(
        "-q",
        "--quiet",
        is_flag=True,
        expose_value=False,
        callback=_set_quiet,
        is_eager=True,
        help="No progress bar on stderr.",
    )(func)
    return func


# -- progress ---------------------------------------------------------------------------------


class Tracked:
    """A read-only file that counts the bytes read through it (after ``start()``)."""

    def __init__(self, path: str) -> None:
        self._f = builtins.open(path, "rb")
        self.name = path
        self.size = os.fstat(self._f.fileno()).st_size
        self.done = 0
        self._counting = False

    def start(self) -> None:
        self.done = 0
        self._counting = True

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        if self._counting:
            self.done += len(data)
        return data

    def readinto(self, b: Any) -> int:
        got = self._f.readinto(b)
        if self._counting and got:
            self.done += got
        return got

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._f.fileno()

    def close(self) -> None:
        self._f.close()

    @property
    def closed(self) -> bool:
        return self._f.closed


def progress_wanted(streams_to_stdout: bool = False) -> bool:
    if SETTINGS.quiet:
        return False
    try:
        if not sys.stderr.isatty():
            return False
        if streams_to_stdout and sys.stdout.isatty():
            return False  # the data itself goes to the terminal: a bar would garble it
    except (AttributeError, ValueError):
        return False
    return True


def source(path: str, wanted: bool) -> Any:
    """What to hand to ``Capture``: ``path`` itself, or a :class:`Tracked` file when progress
    is wanted (failures to open are left to ``Capture``, which words them)."""
    if not wanted or path == "-":
        return path
    try:
        if not os.path.isfile(path):
            return path
        t = Tracked(path)
    except OSError:
        return path
    SETTINGS.tracked.append(t)
    return t


def close_tracked() -> None:
    while SETTINGS.tracked:
        SETTINGS.tracked.pop().close()


@contextlib.contextmanager
def sources(paths: Sequence[str], wanted: bool) -> Iterator[list[Any]]:
    """What to hand to the readers of ``paths``, one :func:`source` each; the tracked files
    are closed when the block ends."""
    try:
        yield [source(p, wanted) for p in paths]
    finally:
        close_tracked()


@contextlib.contextmanager
def reading(paths: Sequence[str], label: str, streams_to_stdout: bool = False) -> Iterator[list[Any]]:
    """:func:`sources` for a command that reads whole files itself (recover, redact, sql), with
    the progress bar drawn while the block runs, as for the commands that open Captures."""
    with sources(paths, progress_wanted(streams_to_stdout)) as srcs, progress(label):
        yield srcs


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""  # pragma: no cover


def status(done: int, total: int, elapsed: float) -> str:
    """``63.0 MiB of 120.0 MiB  66.1 MiB/s  ETA 0:01``: bytes done, rate, time left."""
    rate = done / elapsed if elapsed > 0 else 0.0
    text = f"{_size(done)} of {_size(total)}  {_size(rate)}/s"
    if rate > 0 and total * 0.02 <= done < total:
        left = int((total - done) / rate + 0.5)
        text += f"  ETA {left // 60}:{left % 60:02d}"
    return text


@contextlib.contextmanager
def progress(label: str) -> Iterator[None]:
    """Draw a progress bar for the tracked files while the block runs (see module docs)."""
    files = list(SETTINGS.tracked)
    if not files:
        yield
        return
    for f in files:
        f.start()
    total = max(1, sum(f.size for f in files))
    stop = threading.Event()
    finished = threading.Event()
    t0 = time.monotonic()

    def done_now() -> int:
        return total if finished.is_set() else min(total, sum(f.done for f in files))

    def run() -> None:
        if stop.wait(PROGRESS_DELAY):
            return
        bar: Any
        with click.progressbar(
            length=total,
            label=label,
            file=sys.stderr,
            show_eta=False,
            show_percent=True,
            width=24,
            item_show_func=lambda _: status(done_now(), total, time.monotonic() - t0),
        ) as bar:
            shown = 0
            while True:
                done = done_now()
                bar.update(done - shown, done)
                shown = done
                if stop.wait(0.2):
                    break
            if finished.is_set():
                bar.update(total - shown, total)

    th = threading.Thread(target=run, name="aether-progress", daemon=True)
    th.start()
    try:
        yield
        finished.set()
    finally:
        stop.set()
        th.join()
