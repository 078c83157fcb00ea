"""Commands about capture files themselves: info, recover, generate."""

from __future__ import annotations

import sys

import click

from aether_rec.cli import terminal
from aether_rec.cli.common import CAPTURE_PATH, echo_json, note, open_capture, warn
from aether_rec.format.remote import is_url
from aether_rec.ops.info import capture_info, format_info


@click.command()
@click.argument("files", nargs=-1, required=True, type=CAPTURE_PATH)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON document (schema aether-rec/info v1).")
@click.option("--verify", is_flag=True, help="Check every block checksum and decode every chunk.")
@click.option("--strict", is_flag=True, help="Treat any damage as an error instead of a warning.")
@click.option("--scan/--index-only", "scan", default=None,
              help="Count events per layer and op by reading every chunk. Default: a 1.2 capture's "
                   "summary block answers without reading the index or any chunk; older captures "
                   "are scanned when local, and URLs transfer only the header and index.")
@terminal.terminal_options
def info(files: tuple[str, ...], as_json: bool, verify: bool, strict: bool, scan: bool | None) -> None:
    """Describe captures: provenance, time span, events per layer and op, size, losses.

    FILES may be URLs (https://, s3://... with aether-rec[remote]), read by range.

    \b
    Examples:
      aether-rec info run.aio
      aether-rec info --verify --json run.aio other.aio
      aether-rec info https://example.org/caps/db1.aio

    Exit status is 1 if --verify finds a problem in any file.
    """
    docs = []
    bad = False
    for i, path in enumerate(files):
        with open_capture(path, strict=strict, progress=terminal.progress_wanted(), lazy_index=True) as cap, \
                terminal.progress("info"):
            index_only = not scan if scan is not None else is_url(path)
            d = capture_info(cap, verify=verify, index_only=index_only, summary=not scan)
        docs.append(d)
        bad = bad or (verify and not d["verify"]["ok"])
        if not as_json:
            if i:
                click.echo()
            click.echo(format_info(d))
    if as_json:
        echo_json(docs[0] if len(docs) == 1 else docs)
    if bad:
        raise click.ClickException("verification found problems (see above)")


@click.command()
@click.argument("src", type=CAPTURE_PATH)
@click.option("-o", "--output", required=True, type=click.Path(allow_dash=True),
              help="Where to write the clean capture ('-' for stdout).")
@click.option("--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
@terminal.terminal_options
def recover(src: str, output: str, force: bool) -> None:
    """Rebuild a clean, indexed capture from a damaged or unfinished one.

    Good chunks are copied byte for byte (decompressed once for the index's latency
    histograms, never re-encoded); damaged blocks and a cut-off
    tail are dropped and listed on stderr.

    \b
    Example:
      aether-rec recover crashed.aio -o fixed.aio
    """
    from aether_rec.ops.recover import recover as recover_capture  # (numpy: not on info's path)

    dst = sys.stdout.buffer if output == "-" else output
    with terminal.reading([src], "recover", streams_to_stdout=output == "-") as (source,):
        rep = recover_capture(source, dst, overwrite=force)
    for d in rep.damaged:
        warn(f"{src}: dropped: {d}")
    note(
        f"recovered {rep.events:,} events in {rep.chunks} chunks, {rep.losses} loss blocks, "
        f"{rep.metas} metadata blocks; dropped {len(rep.damaged)} damaged pieces"
    )


@click.command()
@click.option("-o", "--output", required=True, type=click.Path(allow_dash=True))
@click.option("-n", "--events", "n_events", type=click.IntRange(0), default=1_000_000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--rate", type=click.FloatRange(min=1.0), default=200_000.0, show_default=True,
              help="Events per second of (synthetic) time.")
@click.option("--losses", type=click.IntRange(0), default=0, help="Add this many loss blocks.")
@click.option("--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
def generate(output: str, n_events: int, seed: int, rate: float, losses: int, force: bool) -> None:
    """Write a synthetic capture (for tests, benchmarks and demos; marked synthetic).

    \b
    Example:
      aether-rec generate -n 10000000 -o big.aio
    """
    from aether_rec.format.synth import generate as synth_generate  # (numpy: not on info's path)

    dst = sys.stdout.buffer if output == "-" else output
    synth_generate(dst, n_events, seed=seed, rate=rate, losses=losses, overwrite=force)
