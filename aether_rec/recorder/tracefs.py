"""tracefs: finding (or mounting) it and reading tracepoint formats.

Hooks are chosen from what the running kernel's tracepoints actually carry, read from
``events/<category>/<name>/format``, never from the kernel version.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
from dataclasses import dataclass
from pathlib import Path

from aether_rec.errors import EnvironmentProblem

TRACEFS_DIRS: tuple[str, ...] = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")

_FIELD_RE = re.compile(r"field:(?P<decl>[^;]*);\s*offset:(?P<off>\d+);\s*size:(?P<size>\d+);")


@dataclass(frozen=True)
class Field:
    name: str
    decl: str
    offset: int
    size: int


def parse_format(text: str) -> dict[str, Field]:
    """Fields of a tracepoint ``format`` file (common_* fields excluded)."""
    fields: dict[str, Field] = {}
    for m in _FIELD_RE.finditer(text):
        decl = m.group("decl").strip()
        name = decl.split()[-1]
        name = name.split("[")[0].lstrip("*")
        if name.startswith("common_"):
            continue
        fields[name] = Field(name, decl, int(m.group("off")), int(m.group("size")))
    return fields


def _is_tracefs(d: Path) -> bool:
    """Whether ``d`` is a tracefs mount; PermissionError when it is one we may not read
    (tracefs is root-only: doctor says so instead of failing)."""
    return (d / "events").is_dir()


def find_tracefs() -> Path | None:
    denied: Path | None = None
    for d in TRACEFS_DIRS:
        p = Path(d)
        try:
            if _is_tracefs(p):
                return p
        except PermissionError:
            denied = denied or p
    if denied is not None:
        raise EnvironmentProblem(f"tracefs at {denied} is readable only by root: run as root")
    return None


def _mount(target: str) -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    rc = libc.mount(b"tracefs", target.encode(), b"tracefs", 0, None)
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def ensure_tracefs(mount: bool = True) -> tuple[Path, str]:
    """Return (tracefs path, note); mount tracefs at /sys/kernel/tracing when it is missing
    and ``mount`` is true (root only). The note is "" unless we mounted it."""
    found = find_tracefs()
    if found is not None:
        return found, ""
    target = TRACEFS_DIRS[0]
    if not mount:
        raise EnvironmentProblem(f"tracefs is not mounted: run 'mount -t tracefs tracefs {target}' as root")
    try:
        _mount(target)
    except OSError as e:
        raise EnvironmentProblem(
            f"tracefs is not mounted and mounting it at {target} failed ({e.strerror}): "
            f"run 'mount -t tracefs tracefs {target}' as root"
        ) from None
    if not _is_tracefs(Path(target)):
        raise EnvironmentProblem(f"mounted tracefs at {target} but it has no events/ directory")
    return Path(target), f"mounted tracefs at {target} (it was not mounted)"


class TraceFS:
    """Read access to tracepoint formats under one tracefs mount (cached)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._formats: dict[str, dict[str, Field] | None] = {}

    def fields(self, category: str, event: str) -> dict[str, Field] | None:
        """The tracepoint's fields, or None when it does not exist (or is unreadable)."""
        key = f"{category}/{event}"
        if key not in self._formats:
            try:
                text = (self.root / "events" / category / event / "format").read_text()
            except OSError:
                self._formats[key] = None
            else:
                self._formats[key] = parse_format(text)
        return self._formats[key]

    def has(self, category: str, event: str, needed: tuple[str, ...] = ()) -> bool:
        f = self.fields(category, event)
        return f is not None and all(n in f for n in needed)

    def missing(self, category: str, event: str, needed: tuple[str, ...]) -> list[str]:
        f = self.fields(category, event)
        if f is None:
            return [f"tracepoint {category}:{event}"]
        return [f"{category}:{event}.{n}" for n in needed if n not in f]
