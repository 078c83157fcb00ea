"""How every tool creates an output file: one rule, here.

Recorders run as root, often in directories other users can write to (/tmp), so every
file any tool makes is:

* created exclusively (O_CREAT|O_EXCL): an existing name is refused unless --force; with
  --force the old *name* is replaced, so a hard link to some other file is never
  truncated or written through, and the new file never inherits the old one's mode or
  owner;
* never reached through a symbolic link: a symlink at the name is refused (with or
  without --force), and O_NOFOLLOW/O_EXCL make the open itself refuse one planted after
  the check;
* mode 0600 whatever the umask (fchmod after creation);
* for offline tools, written under a temporary name and renamed when complete
  (AtomicOutput), so nothing partial is ever left under the name the user asked for;
* never one of the tool's own inputs (refuse_same_file).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator, Sequence
from typing import Any, BinaryIO

from aether_rec.errors import AetherError, UsageError

#: exists, symlink, not_regular: refused before creating; create: the open, or the unlink
#: of --force, failed; broken_pipe: the reader of a pipe went away (not a failure of ours);
#: write: any other failed write (disk full, I/O error)
WRITE_ERROR_KINDS: tuple[str, ...] = ("exists", "symlink", "not_regular", "create", "broken_pipe", "write")


class WriteError(AetherError):
    """The output cannot be created or written (exists, symlink, disk full...): ``reason``
    says why, ``path`` which output, ``kind`` (one of WRITE_ERROR_KINDS) what happened, so
    callers decide on the kind, never by searching the text. ``str()`` is ``"path: reason"``."""

    def __init__(self, reason: str, path: str | None = None, broken_pipe: bool = False,
                 kind: str = "write") -> None:
        self.reason = reason
        self.path = path
        self.kind = "broken_pipe" if broken_pipe else kind
        super().__init__(f"{path}: {reason}" if path else reason)

    @property
    def broken_pipe(self) -> bool:
        return self.kind == "broken_pipe"

    def at(self, path: str) -> WriteError:
        """The same error about ``path`` (a stream the writer only knew by its fd)."""
        return WriteError(self.reason, path, kind=self.kind)


MODE = 0o600  # capture files: owner only
APPEARED = "appeared while it was being written; left as it is"


def refuse_reason(path: str, force: bool) -> str:
    """Why ``path`` cannot be created now, as a message naming it ("" when it can)."""
    why = refusal(path, force)
    return str(why) if why is not None else ""


def refusal(path: str, force: bool) -> WriteError | None:
    """Why ``path`` cannot be created now (None when it can), without creating it."""
    try:
        st = os.lstat(path)
    except OSError:
        return None  # absent, or not ours to see: creating it will tell
    if stat.S_ISLNK(st.st_mode):
        return WriteError("is a symbolic link; refusing to follow or replace it", path, kind="symlink")
    if not force:
        return WriteError("already exists (use --force to overwrite)", path, kind="exists")
    if not stat.S_ISREG(st.st_mode):
        why = "exists and is not a regular file; refusing to replace it"
        return WriteError(why, path, kind="not_regular")
    return None


def create_output(path: str, force: bool = False) -> BinaryIO:
    """Create ``path`` for writing as described above; WriteError (one line) if not."""
    why = refusal(path, force)
    if why is not None:
        raise why
    if force:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise WriteError(f"cannot replace it ({exc.strerror or exc})", path, kind="create") from None
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
    try:
        fd = os.open(path, flags, MODE)
    except OSError as exc:
        if exc.errno in (errno.EEXIST, errno.ELOOP):
            # something was planted between the check and the open
            raise refusal(path, False) or WriteError(
                "appeared while it was being created", path, kind="exists"
            ) from None
        raise WriteError(f"cannot create ({exc.strerror or exc})", path, kind="create") from None
    try:
        os.fchmod(fd, MODE)
    except OSError:
        os.close(fd)
        raise
    return os.fdopen(fd, "wb", buffering=0)


def open_output(path: str | os.PathLike[str], overwrite: bool = False) -> BinaryIO:
    """Create ``path`` for a capture writer (see create_output)."""
    return create_output(os.fspath(path), overwrite)


class AtomicOutput:
    """An output that appears under its name only when complete: the file is created (by
    create_output's rule) under a temporary name in the same directory, ``commit()``
    renames it to ``path``, ``discard()`` removes it. Offline tools write through this, so
    Ctrl-C, a write error or a --strict failure never leaves a partial file under the name
    the user asked for. (The recorder writes in place: a capture being recorded must be
    readable while it grows, and after a crash.)

    Without ``force`` the final name is taken with a hard link, which fails if something
    appeared there meanwhile; with ``force`` it is replaced by rename(2), which replaces a
    link planted there rather than following it."""

    def __init__(self, path: str | os.PathLike[str], force: bool = False) -> None:
        self.path = os.fspath(path)
        self.force = force
        why = refusal(self.path, force)
        if why is not None:
            raise why
        folder, base = os.path.split(self.path)
        self.tmp = ""
        for _ in range(100):
            tmp = os.path.join(folder, f".{base}.{os.urandom(4).hex()}.part")
            try:
                self.file = create_output(tmp, False)
            except WriteError as exc:
                if os.path.lexists(tmp):
                    continue  # taken: try another name
                raise exc.at(self.path) from None
            self.tmp = tmp
            break
        else:
            raise WriteError("cannot find a free temporary name next to it", self.path)
        self.done = False

    def commit(self) -> None:
        """Close the file and give it its name."""
        if self.done:
            return
        try:
            self.file.close()
            if self.force:
                os.replace(self.tmp, self.path)
            else:
                try:
                    os.link(self.tmp, self.path)
                except FileExistsError:
                    raise WriteError(APPEARED, self.path) from None
                except OSError:  # no hard links here (some network file systems)
                    if os.path.lexists(self.path):
                        raise WriteError(APPEARED, self.path) from None
                    os.rename(self.tmp, self.path)
                else:
                    os.unlink(self.tmp)
        except OSError as exc:
            self.discard()
            raise WriteError(f"cannot give the output its name ({exc.strerror or exc})", self.path) from None
        except BaseException:
            self.discard()
            raise
        self.done = True

    def discard(self) -> None:
        """Close and remove the temporary file (nothing appears under ``path``)."""
        if self.done:
            return
        self.done = True
        try:
            self.file.close()
        except OSError:
            pass
        try:
            os.unlink(self.tmp)
        except OSError:
            pass


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str], force: bool = False) -> Iterator[BinaryIO]:
    """``with atomic_output(path) as f:``: ``f`` appears as ``path`` only if the block ends
    without an exception (see AtomicOutput)."""
    out = AtomicOutput(path, force)
    try:
        yield out.file
    except BaseException:
        out.discard()
        raise
    out.commit()


def refuse_same_file(output: str | os.PathLike[str] | BinaryIO, inputs: Sequence[Any]) -> None:
    """UsageError when the output path names one of the input files (every tool refuses
    to write over what it reads, --force or not)."""
    if not isinstance(output, (str, os.PathLike)) or os.fspath(output) == "-":
        return
    out = os.fspath(output)
    for src in inputs:
        name = getattr(src, "name", src)
        if not isinstance(name, (str, os.PathLike)) or os.fspath(name) == "-":
            continue
        try:
            same = os.path.samefile(os.fspath(name), out)
        except OSError:
            same = os.path.abspath(os.fspath(name)) == os.path.abspath(out)
        if same:
            raise UsageError(f"the output {out} would overwrite the input {os.fspath(name)}; "
                             "choose another -o")
