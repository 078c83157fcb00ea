"""Finding and importing bcc, the BPF compiler collection.

bcc's Python package is shipped by the OS (Debian/Ubuntu ``python3-bpfcc``, Fedora
``python3-bcc``...) into the system's site-packages, which a virtualenv cannot see.
It is pure Python over ``libbcc.so`` through ctypes, so any CPython 3 can use it: we load
the ``bcc`` package from the directory that holds it, alone, without putting the rest of
the system site-packages on ``sys.path``.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from aether_rec.errors import EnvironmentProblem

#: Where distributions install bcc's Python package (searched after ``sys.path``).
SYSTEM_BCC_DIRS: tuple[str, ...] = (
    "/usr/lib/python3/dist-packages",  # Debian, Ubuntu
    "/usr/lib/python3.{minor}/site-packages",  # Fedora, Arch, Alpine (noarch)
    "/usr/lib64/python3.{minor}/site-packages",
    "/usr/local/lib/python3/dist-packages",
    "/usr/local/lib/python3.{minor}/site-packages",
    "/usr/local/lib/python3.{minor}/dist-packages",
    "/usr/share/bcc/python",
)

INSTALL_HINT = (
    "install bcc from your distribution: Debian/Ubuntu 'apt-get install python3-bpfcc', "
    "Fedora/RHEL 'dnf install python3-bcc', Arch 'pacman -S python-bcc'"
)


@dataclass(frozen=True)
class BccInfo:
    module: ModuleType | None  # None: located, not imported (see locate_bcc)
    version: str
    location: str  # directory the package was loaded from


_cached: BccInfo | None = None


def _candidate_dirs() -> list[Path]:
    override = os.environ.get("AETHER_REC_BCC_PATH")
    if override:
        return [Path(override)]
    minor = sys.version_info.minor
    dirs: list[Path] = []
    for entry in sys.path:
        if entry:
            dirs.append(Path(entry))
    for pattern in SYSTEM_BCC_DIRS:
        dirs.append(Path(pattern.format(minor=minor)))
    # other CPython 3 minors, newest first (the package is pure Python)
    for base in ("/usr/lib", "/usr/lib64", "/usr/local/lib"):
        for p in sorted(Path(base).glob("python3*/site-packages"), reverse=True):
            dirs.append(p)
        for p in sorted(Path(base).glob("python3*/dist-packages"), reverse=True):
            dirs.append(p)
    seen: set[Path] = set()
    out = []
    for d in dirs:
        if d not in seen:
            seen.add(d)
            out.append(d)
    return out


def find_bcc_dir() -> Path | None:
    """The directory holding the ``bcc`` package, or None."""
    for d in _candidate_dirs():
        if (d / "bcc" / "__init__.py").is_file():
            return d
    return None


def locate_bcc() -> BccInfo:
    """Where bcc is and its version, without importing it (importing maps clang and LLVM
    into the process: the recorder leaves that to its loader helper)."""
    if _cached is not None:
        return _cached
    d = find_bcc_dir()
    if d is None:
        raise EnvironmentProblem(f"bcc (the BPF compiler collection) is not installed: {INSTALL_HINT}")
    version = "unknown"
    try:
        m = re.search(r"__version__\s*=\s*['\"]([^'\"]+)", (d / "bcc" / "version.py").read_text())
        if m:
            version = m.group(1)
    except OSError:
        pass
    return BccInfo(module=None, version=version, location=str(d))


def load_bcc() -> BccInfo:
    """Import bcc (once) and return it; raise EnvironmentProblem with an install hint."""
    global _cached
    if _cached is not None:
        return _cached
    if "bcc" in sys.modules and getattr(sys.modules["bcc"], "BPF", None) is not None:
        mod = sys.modules["bcc"]
        where = str(Path(mod.__file__ or "?").parent.parent)
    else:
        d = find_bcc_dir()
        if d is None:
            raise EnvironmentProblem(f"bcc (the BPF compiler collection) is not installed: {INSTALL_HINT}")
        pkg = d / "bcc"
        spec = importlib.util.spec_from_file_location(
            "bcc", pkg / "__init__.py", submodule_search_locations=[str(pkg)]
        )
        if spec is None or spec.loader is None:
            raise EnvironmentProblem(f"cannot load bcc from {pkg}: {INSTALL_HINT}")
        mod = importlib.util.module_from_spec(spec)
        sys.modules["bcc"] = mod
        try:
            spec.loader.exec_module(mod)
        except OSError as e:  # libbcc.so.0 missing or broken
            sys.modules.pop("bcc", None)
            for name in [n for n in sys.modules if n.startswith("bcc.")]:
                sys.modules.pop(name, None)
            raise EnvironmentProblem(
                f"bcc's Python package is in {d} but its library failed to load ({e}): "
                f"{INSTALL_HINT} (it pulls in libbcc)"
            ) from None
        except Exception as e:  # noqa: BLE001 - a broken install must not give a traceback
            sys.modules.pop("bcc", None)
            raise EnvironmentProblem(f"bcc in {d} failed to import ({e}): {INSTALL_HINT}") from None
        where = str(d)
    version = str(getattr(mod, "__version__", "unknown"))
    _cached = BccInfo(module=mod, version=version, location=where)
    return _cached


def bcc_status() -> dict[str, object]:
    """For ``doctor``: whether bcc imports, its version and where it came from."""
    try:
        info = load_bcc()
    except EnvironmentProblem as e:
        return {"ok": False, "error": str(e)}
    return {"ok": True, "version": info.version, "location": info.location}
