"""The ``aether-rec`` console script: loads the command line and runs it, so that a
Ctrl-C while it is still loading (click, then numpy for the command) ends with one line
and exit 130, never a traceback.

It also owns the way out. A Ctrl-C can leave a helper thread (prefetch, background writer)
inside zstd or numpy for a moment after the command has cleaned up; if the interpreter then
finalises, CPython ends such a daemon thread with ``pthread_exit``, whose forced unwind through
a C++ frame aborts the process ("terminate called without an active exception", SIGABRT).
Everything the command owns is already closed or removed by then, so with helpers still
alive the process leaves with ``os._exit`` and the command's exit status instead. (Seen in
CI: a Ctrl-C during ``filter``'s last join left the writer thread inside ``numpy.unique``.)"""

from __future__ import annotations

import os
import signal
import sys
import threading


def main() -> None:
    try:
        from aether_rec.cli import main as cli
    except KeyboardInterrupt:
        sys.stderr.write("aether-rec: interrupted\n")
        raise SystemExit(130) from None
    try:
        cli()
    except SystemExit as exc:
        # the command is over (its output committed or removed): a Ctrl-C from now on must
        # not turn its exit status into "killed by SIGINT" while the interpreter finalises
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        _leave(exc.code)
        raise
    except KeyboardInterrupt:  # after the command's own handler (click's teardown)
        sys.stderr.write("aether-rec: interrupted\n")
        _leave(130)
        raise SystemExit(130) from None


def _exit_status(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    return 1  # sys.exit("message"): Python prints it and exits 1


def _leave(code: object) -> None:
    """Exit now, without finalising the interpreter, if a helper thread is still running."""
    # Not Thread.is_alive(): a Ctrl-C that lands in a join() marks the joined thread stopped
    # while it still runs (CPython's bpo-45274 handling); a thread leaves enumerate() only
    # when its run() has returned.
    if all(t is threading.main_thread() for t in threading.enumerate()):
        return  # the normal way out is safe
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not interrupt leaving
    if isinstance(code, str):
        sys.stderr.write(code + "\n")
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass  # a closed pipe or stream: nothing more can be said there
    os._exit(_exit_status(code))
