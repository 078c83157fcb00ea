"""The ``aether-rec`` command line: parses options, calls the library, and turns domain
errors into one line on stderr with exit code 1 (runtime) or 2 (usage)."""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from aether_rec import __version__
from aether_rec.cli.common import fail
from aether_rec.errors import AetherError


class AetherGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AetherError as exc:
            raise fail(exc) from None
        except BrokenPipeError:
            # The reader of our stdout went away (| head): not an error of ours.
            sys.stderr.close()
            raise SystemExit(0) from None
        except KeyboardInterrupt:
            click.echo("aether-rec: interrupted", err=True)
            raise SystemExit(130) from None


@click.group(cls=AetherGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="aether-rec")
def main() -> None:
    """Record per-I/O latency with eBPF into .aio captures, and analyse them anywhere.

    \b
    Record (root, Linux):   sudo aether-rec record -o run.aio --duration 30s
    Summarise (anywhere):   aether-rec stats run.aio
    Describe a capture:     aether-rec info run.aio
    Check the machine:      sudo aether-rec doctor

    Run `aether-rec COMMAND --help` for each command's options and examples.
    """


def _register() -> None:
    for mod in ("capture", "record", "offline", "redact"):
        try:
            m = importlib.import_module(f"aether_rec.cli.{mod}")
        except ModuleNotFoundError as exc:
            if exc.name == f"aether_rec.cli.{mod}":
                continue
            raise
        for obj in vars(m).values():
            callback = getattr(obj, "callback", None)
            if isinstance(obj, click.Command) and getattr(callback, "__module__", "") == m.__name__:
                main.add_command(obj)


_register()
