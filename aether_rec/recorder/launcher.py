"""The traced command (``record -- CMD ARGS``): started held, released once traced.

The command is started under a small launcher that waits (in rt_sigtimedwait, which no
hook traces, so the wait leaves no half-seen syscall behind) until the recorder has added
its pid to the traced set and attached, then execs the command under the same pid, so
none of its I/O is missed. With --user it becomes that user just before the exec.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from aether_rec.errors import RecorderError
from aether_rec.recorder.privileges import User

# argv[1]: "uid:gid:g1,g2" with --user, else ""; argv[2:]: the command
_LAUNCHER = (
    "import os,signal,sys,warnings\n"  # warnings: execvp imports it, maybe after the drop
    "parent=os.getppid()\n"
    "while not signal.sigtimedwait([signal.SIGUSR1],0.5):\n"
    " if os.getppid()!=parent:os._exit(125)\n"
    "signal.pthread_sigmask(signal.SIG_UNBLOCK,[signal.SIGUSR1])\n"
    "u,a=sys.argv[1],sys.argv[2:]\n"
    "try:\n"
    " if u:\n"
    "  i,g,s=u.split(':');os.setgroups([int(x) for x in s.split(',') if x])\n"
    "  os.setgid(int(g));os.setuid(int(i))\n"
    "except OSError as e:\n"
    " sys.stderr.write('aether-rec: cannot become uid %s: %s\\n'%(u,e.strerror));os._exit(126)\n"
    "try:os.execvp(a[0],a)\n"
    "except OSError as e:\n"
    " sys.stderr.write('aether-rec: cannot run %s: %s\\n'%(a[0],e.strerror));os._exit(127)\n"
)


class TracedCommand:
    """CMD, started held: :meth:`release` lets it exec."""

    def __init__(self, command: tuple[str, ...], user: User | None, to_stdout: bool) -> None:
        self.command = command
        # SIGUSR1 is blocked before the fork, so the launcher inherits it blocked and the
        # release signal cannot arrive before it waits for it.
        old = signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])
        try:
            # with -o -, stdout carries the capture: the command's stdout goes to stderr
            stdout = sys.stderr.fileno() if to_stdout else None
            # with --user the command runs as that user too (so it can still be signalled)
            who = f"{user.uid}:{user.gid}:{','.join(map(str, user.groups))}" if user is not None else ""
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", _LAUNCHER, who, *command], stdout=stdout
            )
        except OSError as e:
            raise RecorderError(f"cannot start {command[0]}: {e.strerror}") from None
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def poll(self) -> int | None:
        return self.proc.poll()

    def running(self) -> bool:
        return self.proc.poll() is None

    def release(self) -> None:
        """Traced and attached: let the launcher exec the command."""
        if self.running():
            os.kill(self.proc.pid, signal.SIGUSR1)

    def forward(self, signum: int) -> None:
        """Pass a stop signal on (best effort: it may have just exited)."""
        try:
            self.proc.send_signal(signum)
        except OSError:
            pass

    def kill(self, reap: bool = False) -> None:
        self.proc.kill()
        if reap:
            self.proc.wait()

    def end_reason(self) -> str:
        """Why the recording stops now that the command has ended."""
        rc = self.proc.returncode
        if rc < 0:
            try:
                what = signal.Signals(-rc).name
            except ValueError:
                what = f"signal {-rc}"
            return f"command killed by {what}"
        return "command exited" + (f" with status {rc}" if rc else "")


def exit_code(rc: int) -> int:
    """The recorder's exit status for the command's: its own, or 128+N if killed by N
    (like a shell)."""
    return rc if rc >= 0 else 128 - rc
