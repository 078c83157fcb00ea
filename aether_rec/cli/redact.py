"""``aether-rec redact``: names and paths replaced by keyed hashes, for public bug reports."""

from __future__ import annotations

import sys

import click

from aether_rec.cli import terminal
from aether_rec.cli.common import CAPTURE_PATH, note, warn
from aether_rec.ops.redact import load_key
from aether_rec.ops.redact import redact as redact_capture


@click.command()
@click.argument("src", type=CAPTURE_PATH)
@click.option("-o", "--output", required=True, type=click.Path(allow_dash=True),
              help="Where to write the redacted capture ('-' for stdout).")
@click.option("--key-file", type=click.Path(dir_okay=False),
              help="HMAC key (at least 16 bytes). The same key hashes the same name the same "
                   "way, so captures of one incident can be joined. Default: a random key, "
                   "not stored.")
@click.option("--keep-paths-under", "keep", multiple=True, metavar="DIR",
              help="Leave paths under DIR as they are (repeatable), e.g. /usr.")
@click.option("--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
@terminal.terminal_options
def redact(src: str, output: str, key_file: str | None, keep: tuple[str, ...], force: bool) -> None:
    """Replace process names, file paths, the hostname and command lines with keyed hashes.

    Names become comm-3f9a1c2b, paths are hashed per component so that their depth and
    extension stay readable (/p-1a2b3c4d/p-9c8d7e6f.db). Latencies, sizes, times and
    every other number are unchanged; the header says the capture is redacted and
    what was redacted (never the key).

    \b
    Examples:
      aether-rec redact run.aio -o public.aio
      head -c 32 /dev/urandom > incident.key
      aether-rec redact host1.aio -o h1.pub.aio --key-file incident.key
      aether-rec redact host2.aio -o h2.pub.aio --key-file incident.key --keep-paths-under /usr
    """
    key = load_key(key_file) if key_file else None
    dst = sys.stdout.buffer if output == "-" else output
    with terminal.reading([src], "redact", streams_to_stdout=output == "-") as (source,):
        rep = redact_capture(source, dst, key, keep_paths_under=keep, overwrite=force)
    for d in rep.dropped:
        warn(f"{src}: left out: {d}")
    how = ("a random key that was not stored (hashes match no other capture)" if rep.random_key
           else f"the key in {key_file} (key id {rep.header['redaction']['key_id']})")
    note(f"redacted {rep.events:,} events in {rep.chunks} chunks, {rep.metas} metadata blocks, "
         f"{rep.losses} loss blocks copied; names hashed with {how}")
