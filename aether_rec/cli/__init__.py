"""The ``aether-rec`` command line: parses options, calls the library, and turns domain
errors into one line on stderr with exit code 1 (runtime) or 2 (usage)."""

from __future__ import annotations

import errno
import importlib
import os
import sys
from typing import Any

import click

from aether_rec import __version__
from aether_rec.errors import AetherError


def summary(name: str, limit: int = 45) -> str:
    """The short help of command ``name`` as click would cut it, without loading it."""
    return click.Command(name, help=SUMMARIES[name]).get_short_help_str(limit)


class AetherGroup(click.Group):
    """Commands are loaded when they run; the list in ``--help`` and the completion of
    command names come from SUMMARIES, so neither imports numpy or the library (a test
    checks SUMMARIES against every command's own help)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(len(n) for n in names)
        with formatter.section("Commands"):
            formatter.write_dl([(n, summary(n, limit)) for n in names])

    def shell_complete(self, ctx: click.Context, incomplete: str) -> list[Any]:
        from click.shell_completion import CompletionItem

        names = [n for n in self.list_commands(ctx) if n.startswith(incomplete)]
        items = [CompletionItem(n, help=summary(n)) for n in names]
        # options of the group itself (--help, --version), without the command list
        return items + click.Command.shell_complete(self, ctx, incomplete)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        where = COMMANDS.get(name)
        if where is None:
            return None
        cmd = getattr(importlib.import_module(f"aether_rec.cli.{where[0]}"), where[1])
        assert isinstance(cmd, click.Command)
        return cmd

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        name, cmd, rest = super().resolve_command(ctx, args)
        if name not in OWN_ALLOCATOR:
            from aether_rec.allocator import tune_allocator

            tune_allocator()  # freed chunk memory kept for the next chunk (aether_rec/allocator.py)
        return name, cmd, rest

    def main(self, *args: Any, **kwargs: Any) -> Any:
        try:
            try:
                return super().main(*args, **kwargs)
            finally:
                sys.stdout.flush()  # here, not at exit, where a failure is a traceback
        except OSError as exc:  # stdout is full (> /dev/full), or its file too big (ulimit -f)
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - nothing more may be written there
            if exc.errno == errno.EPIPE:
                raise SystemExit(0) from None  # the reader went away (| head): not our error
            click.echo(f"aether-rec: cannot write the output ({exc.strerror or exc})", err=True)
            raise SystemExit(1) from None

    def invoke(self, ctx: click.Context) -> Any:
        from aether_rec.cli.common import fail

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
        except OSError as exc:
            # an output that failed outside the library's own checks (stdout, a full disk)
            where = f"{exc.filename}: " if exc.filename else ""
            raise click.ClickException(f"{where}cannot write the output ({exc.strerror or exc})") from None


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


# name -> (module, attribute): each command's module is imported only when that command
# runs (or for --help), so `stats` does not pay for the recorder's imports and the reverse.
COMMANDS: dict[str, tuple[str, str]] = {
    "record": ("record", "record"),
    "doctor": ("record", "doctor"),
    "info": ("capture", "info"),
    "recover": ("capture", "recover"),
    "generate": ("capture", "generate"),
    "stats": ("offline", "stats"),
    "filter": ("offline", "filter_cmd"),
    "merge": ("offline", "merge"),
    "replay": ("offline", "replay"),
    "export": ("export", "export"),
    "redact": ("redact", "redact"),
    "report": ("visual", "report"),
    "plot": ("visual", "plot"),
    "diff": ("visual", "diff"),
    "sql": ("fleet", "sql"),
}

# Commands that keep glibc's default allocator settings: the recorder's steady memory has a
# budget of its own (issue 13), and every other command reads events in bulk.
OWN_ALLOCATOR = frozenset({"record", "doctor"})

# name -> its one-line summary (the first sentence of its help), for ``--help`` and completion.
SUMMARIES: dict[str, str] = {
    "diff": "Compare two captures: did it get slower?",
    "doctor": "Check whether this machine can record, and what recording would use.",
    "export": "Export events for other tools: jsonl, csv, perfetto (Chrome JSON), perfetto-proto "
    "(Perfetto's native protobuf trace, no size cap), parquet.",
    "filter": "Copy the events of IN that match EXPR (and the options) into a new capture.",
    "generate": "Write a synthetic capture (for tests, benchmarks and demos; marked synthetic).",
    "info": "Describe captures: provenance, time span, events per layer and op, size, losses.",
    "merge": "Merge captures into one, in time order, with a `source` column.",
    "plot": "Draw a PNG or SVG: heatmap, hist (per op), timeline (IOPS and throughput) or percentiles "
    "(p50/p99/max over time), one panel per layer.",
    "record": "Record the latency of every I/O into a capture (root, Linux).",
    "recover": "Rebuild a clean, indexed capture from a damaged or unfinished one.",
    "redact": "Replace process names, file paths, the hostname and command lines with keyed hashes.",
    "replay": "Print events in time order, one line each (or jsonl/csv), optionally paced.",
    "report": "Write one self-contained HTML page about captures: latency heatmaps, percentiles, IOPS "
    "and throughput over time, histograms, tables, the slowest I/Os, losses, provenance.",
    "sql": "Run a SQL query (DuckDB) over captures.",
    "stats": "Summarise captures: span, IOPS, throughput, latency percentiles, errors, histograms.",
}
