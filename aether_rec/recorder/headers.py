"""Kernel headers for bcc's compiler.

bcc compiles every program against a kernel tree. Our programs read tracepoint arguments
through tracefs (``TRACEPOINT_PROBE``), so the tree only has to be a plausible one, but
bcc refuses to start without any. In order of preference:

1. ``BCC_KERNEL_SOURCE`` already set by the user;
2. the exact headers, ``/lib/modules/$(uname -r)/build``;
3. the kernel's own headers, ``/sys/kernel/kheaders.tar.xz`` (bcc extracts them itself);
4. a tree merged from the distribution's header packages (Debian splits them into
   ``linux-headers-X-common`` and ``linux-headers-X-<flavour>``), built once as symlinks
   in a cache directory, and handed to bcc through ``BCC_KERNEL_SOURCE``.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from aether_rec.errors import EnvironmentProblem

CACHE_DIR = Path(os.environ.get("AETHER_REC_CACHE", "/var/cache/aether-rec"))
KHEADERS = Path("/sys/kernel/kheaders.tar.xz")
SRC_DIR = Path("/usr/src")

_FLAVOURS = {
    "x86_64": ("amd64", "generic", "cloud-amd64", "rt-amd64"),
    "aarch64": ("arm64", "generic", "cloud-arm64", "rt-arm64", "generic-64k"),
}

HEADERS_HINT = (
    "install kernel headers: Debian 'apt-get install linux-headers-amd64' (or -arm64), "
    "Ubuntu 'apt-get install linux-headers-$(uname -r)', Fedora 'dnf install kernel-devel'"
)


@dataclass(frozen=True)
class HeaderSource:
    kind: str  # "env", "exact", "kheaders", "fallback"
    path: str
    exact: bool  # headers of the running kernel
    note: str  # one line for the user ("" when nothing worth saying)

    def as_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "path": self.path, "exact": self.exact, "note": self.note}


def _has_tree(d: Path) -> bool:
    return (d / "include").is_dir() or (d / "arch").is_dir()


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", name))


def distro_header_dirs(src: Path | None = None) -> list[Path] | None:
    """The newest distribution header package for this architecture, as the list of
    directories to merge (base first, flavour last), or None."""
    src = src or SRC_DIR
    if not src.is_dir():
        return None
    flavours = _FLAVOURS.get(platform.machine(), ())
    best: tuple[tuple[int, ...], list[Path]] | None = None
    for d in src.iterdir():
        name = d.name
        if not name.startswith("linux-headers-") or not d.is_dir():
            continue
        flavour = next((f for f in flavours if name.endswith("-" + f)), None)
        if flavour is None:
            continue
        stem = name[: -len(flavour) - 1]
        dirs = [d]
        for base in (src / f"{stem}-common", src / stem):  # Debian, Ubuntu
            if base.is_dir() and base != d:
                dirs.insert(0, base)
                break
        if not any(_has_tree(x) for x in dirs):
            continue
        key = _version_key(stem)
        if best is None or key > best[0]:
            best = (key, dirs)
    if best is not None:
        return best[1]
    # Fedora/RHEL kernel-devel: one complete tree per version
    kernels = src / "kernels"
    if kernels.is_dir():
        trees = sorted((d for d in kernels.iterdir() if _has_tree(d)), key=lambda p: _version_key(p.name))
        if trees:
            return [trees[-1]]
    return None


def _merge_into(dst: Path, src: Path) -> None:
    """Overlay ``src`` onto ``dst`` with symlinks: an entry only in src is linked whole;
    a directory in both is descended into; a file in both is replaced by src's."""
    for entry in os.scandir(src):
        target = dst / entry.name
        if entry.is_dir(follow_symlinks=True):
            if target.is_symlink() and target.is_dir():
                # dst holds a link to a whole directory: turn it into a real one
                old = Path(os.readlink(target))
                target.unlink()
                target.mkdir()
                _merge_into(target, old)
                _merge_into(target, Path(entry.path))
            elif target.is_dir():
                _merge_into(target, Path(entry.path))
            else:
                if target.is_symlink() or target.exists():
                    target.unlink()
                os.symlink(entry.path, target)
        else:
            if target.is_symlink() or target.exists():
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target)
                else:
                    target.unlink()
            os.symlink(entry.path, target)


def build_merged_tree(dirs: list[Path], cache: Path = CACHE_DIR) -> Path:
    """Build (once) the symlink tree merging ``dirs`` in order; return its path."""
    name = "headers-" + "+".join(d.name for d in dirs)
    out = cache / name
    stamp = out / ".aether-rec-complete"
    if stamp.is_file():
        return out
    try:
        cache.mkdir(parents=True, exist_ok=True, mode=0o755)
        tmp = Path(tempfile.mkdtemp(prefix=name + ".", dir=cache))
        for d in dirs:
            _merge_into(tmp, d)
        (tmp / ".aether-rec-complete").write_text("\n".join(str(d) for d in dirs) + "\n")
        os.chmod(tmp, 0o755)
        try:
            os.rename(tmp, out)
        except OSError:  # another recorder won the race, or a stale incomplete tree
            if stamp.is_file():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                shutil.rmtree(out, ignore_errors=True)
                os.rename(tmp, out)
    except OSError as e:
        raise EnvironmentProblem(
            f"cannot build the kernel header tree in {cache} ({e.strerror}): "
            "set AETHER_REC_CACHE to a writable directory"
        ) from None
    return out


def find_headers(release: str | None = None, build: bool = True) -> HeaderSource:
    """Decide which headers bcc will use (building the fallback tree if ``build``)."""
    release = release or os.uname().release
    env = os.environ.get("BCC_KERNEL_SOURCE")
    if env:
        return HeaderSource("env", env, False, "")
    exact = Path("/lib/modules") / release / "build"
    if exact.is_dir() and _has_tree(exact.resolve()):
        return HeaderSource("exact", str(exact), True, "")
    if KHEADERS.exists():
        return HeaderSource("kheaders", str(KHEADERS), True, "")
    dirs = distro_header_dirs()
    if dirs is None:
        raise EnvironmentProblem(
            f"no kernel headers found for {release} (no /lib/modules/{release}/build, no kheaders, "
            f"nothing usable in {SRC_DIR}): {HEADERS_HINT}"
        )
    path = build_merged_tree(dirs) if build else CACHE_DIR / ("headers-" + "+".join(d.name for d in dirs))
    stem = dirs[-1].name.replace("linux-headers-", "")
    note = (
        f"no headers for kernel {release}; using the distribution's {stem} headers "
        f"(merged tree {path}); tracepoint layouts are read from tracefs, so this is safe"
    )
    return HeaderSource("fallback", str(path), False, note)


def apply_headers(src: HeaderSource) -> None:
    """Point bcc at the chosen headers (only the fallback needs it)."""
    if src.kind == "fallback":
        os.environ["BCC_KERNEL_SOURCE"] = src.path
