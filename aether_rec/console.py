"""The ``aether-rec`` console script: loads the command line and runs it, so that a
Ctrl-C while it is still loading (click, then numpy for the command) ends with one line
and exit 130, never a traceback."""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from aether_rec.cli import main as cli
    except KeyboardInterrupt:
        sys.stderr.write("aether-rec: interrupted\n")
        raise SystemExit(130) from None
    cli()
