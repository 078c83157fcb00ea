#!/usr/bin/env python3
"""The kernel matrix: the recorder tested on stock Debian kernels, each booted in a VM.

    sudo python3 tests/vm/matrix.py                  # 5.10, 6.1, 6.12 and the newest (sid)
    sudo python3 tests/vm/matrix.py --kernels ci     # the oldest and the newest (CI)
    sudo python3 tests/vm/matrix.py --kernels 6.1 --update-docs

For each kernel: the newest Debian package of that series is downloaded once with
``apt-get download`` through a private apt configuration (the host's sources and /boot
are never touched) and unpacked with ``dpkg -x`` into the cache; virtme-ng boots it under
TCG (software emulation: the paravirtual /dev/kvm here cannot run stock kernels) with
the host's root shared read-only, a fresh ext4 image as a virtio-blk disk, and runs
``tests/vm/guest.py`` against this checkout. One boot per kernel runs every check.

The result is a table kernel x check x layer x transport -> events, lost, pass/fail with
the reason, and the time each step took. Exit status 0 only when every expected result
passed: a layer or transport that is unavailable is reported with its reason and fails
the run unless the matrix below says that kernel lacks it; a guest that dies half-way
(no final "done" line) fails too.

Everything it needs is installed by it (as root): qemu-system-x86, busybox-static, kmod,
udev, e2fsprogs with apt; virtme-ng in its own venv in the cache. Downloads are cached
in ``$AETHER_VM_CACHE`` (default /var/lib/aether-rec-vm): a second run downloads nothing.
Only the standard library is used here (the guest uses the project's .venv).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("AETHER_VM_CACHE", "/var/lib/aether-rec-vm"))
VNG_VERSION = "1.42"
HOST_PACKAGES = ("qemu-system-x86", "busybox-static", "kmod", "udev", "e2fsprogs", "python3-venv")
MIRROR = "http://deb.debian.org/debian"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
SUITES = ("bullseye", "bookworm", "trixie", "sid")
#: the matrix: a kernel series (newest Debian package of it) or "newest" (the newest of all)
SERIES = ("5.10", "6.1", "6.12", "newest")
CI_SERIES = ("5.10", "newest")
#: series whose matching linux-headers are unpacked too: the recorder's exact-headers path
EXACT_HEADERS = ("newest",)
#: what a series is known to lack (layer or "transport X" -> why); empty: everything must work
EXPECTED_UNAVAILABLE: dict[str, dict[str, str]] = {}
#: one boot runs these: check:transport (see guest.py)
CHECKS = "cmd:ringbuf,pid:perf,loss:ringbuf,uring:ringbuf"
VM_TIMEOUT_S = 1800
#: console lines shown as they come (the guest kernel's console is in vm.log: --verbose)
ALARMS = ("Traceback", "Kernel panic", "BUG:", "Oops", "segfault", "Fatal Python")
IMAGE_RE = re.compile(r"^linux-image-(\d+\.\d+)(\.\d+)?(-\d+)?(\+deb\d+)?-amd64$")


def log(msg: str) -> None:
    print(f"matrix: {msg}", file=sys.stderr, flush=True)


def run(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=True, text=True, **kw)


# -- host set-up -----------------------------------------------------------------------
def ensure_host() -> Path:
    """Install what the VMs need; return the vng executable."""
    missing = [
        p for p in HOST_PACKAGES
        if "ok installed" not in subprocess.run(["dpkg-query", "-W", "-f=${Status}", p],
                                                capture_output=True, text=True).stdout
    ]
    if missing:
        if os.geteuid() != 0:
            sys.exit(f"matrix: need root to install {' '.join(missing)}")
        log(f"installing {' '.join(missing)}")
        run(["apt-get", "update", "-qq"])
        run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
            env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"), stdout=subprocess.DEVNULL)
    venv = CACHE / "vng"
    vng = venv / "bin" / "vng"
    stamp = venv / ".aether-version"
    if not vng.exists() or (stamp.read_text() if stamp.exists() else "") != VNG_VERSION:
        log(f"installing virtme-ng {VNG_VERSION} in {venv}")
        run([sys.executable, "-m", "venv", "--clear", str(venv)])
        run([str(venv / "bin" / "pip"), "install", "-q", f"virtme-ng=={VNG_VERSION}"])
        stamp.write_text(VNG_VERSION)
    if not (ROOT / ".venv" / "bin" / "python").exists():
        log("no .venv in the checkout: running scripts/setup.sh")
        run(["bash", str(ROOT / "scripts" / "setup.sh")])
    return vng


# -- kernels ---------------------------------------------------------------------------
def apt_args() -> list[str]:
    d = CACHE / "apt"
    return [
        f"-oDir::Etc::SourceList={d / 'sources.list'}", "-oDir::Etc::SourceParts=/nonexistent",
        f"-oDir::State::Lists={d / 'lists'}", f"-oDir::Cache={d}", "-oDir::State::status=/dev/null",
        "-oDebug::NoLocking=1", "-oAPT::Sandbox::User=root",
    ]


def apt_update(max_age_s: float = 86400) -> None:
    """Package lists of the suites that carry the matrix's kernels, kept in the cache."""
    d = CACHE / "apt"
    (d / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (d / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    src = "".join(f"deb [signed-by={KEYRING}] {MIRROR} {s} main\n" for s in SUITES)
    sl = d / "sources.list"
    stamp = d / "lists" / ".updated"
    fresh = stamp.exists() and time.time() - stamp.stat().st_mtime < max_age_s
    if sl.exists() and sl.read_text() == src and fresh:
        return
    sl.write_text(src)
    log("apt-get update (private lists in the cache)")
    run(["apt-get", *apt_args(), "update", "-qq"])
    stamp.touch()


def resolve(series: str) -> str:
    """The newest kernel release of a series, e.g. '5.10' -> '5.10.0-32-amd64'."""
    names = run(["apt-cache", *apt_args(), "pkgnames", "linux-image-"], capture_output=True).stdout.split()
    rel = pick_release(names, series)
    if rel is None:
        sys.exit(f"matrix: no Debian kernel package for series {series} in {', '.join(SUITES)}")
    return rel


def pick_release(names: list[str], series: str) -> str | None:
    """The newest plain amd64 kernel release among package names (not -rt, -cloud, -dbg)."""
    best: tuple[tuple[int, ...], str] | None = None
    for name in names:
        m = IMAGE_RE.match(name)
        if not m or (series != "newest" and m.group(1) != series):
            continue
        rel = name[len("linux-image-"):]
        key = tuple(int(x) for x in re.findall(r"\d+", rel))
        if best is None or key > best[0]:
            best = (key, rel)
    return best[1] if best is not None else None


def depends(pkg: str) -> list[str]:
    out = run(["apt-cache", *apt_args(), "show", pkg], capture_output=True).stdout
    line = next((x for x in out.splitlines() if x.startswith("Depends:")), "Depends:")
    return [re.split(r"[ (]", d.strip())[0] for d in line[8:].replace("|", ",").split(",") if d.strip()]


def download(pkgs: list[str]) -> list[Path]:
    arch = CACHE / "apt" / "archives"
    want = []
    for p in pkgs:
        have = sorted(arch.glob(f"{p}_*.deb"))
        if not have:
            want.append(p)
    if want:
        log(f"apt-get download {' '.join(want)}")
        run(["apt-get", *apt_args(), "download", *want], cwd=arch, stdout=subprocess.DEVNULL)
    return [sorted(arch.glob(f"{p}_*.deb"))[-1] for p in pkgs]


@dataclass
class Kernel:
    series: str
    release: str
    root: Path  # unpacked packages
    vmlinuz: Path = field(default_factory=Path)
    headers: str = "fallback"  # what the guest should find: exact headers, or the fallback


def fetch(series: str, with_headers: bool) -> Kernel:
    rel = resolve(series)
    k = Kernel(series, rel, CACHE / "kernels" / rel)
    stamp = k.root / ".aether-unpacked"
    pkgs = [f"linux-image-{rel}"]
    # sid splits the image: vmlinuz and modules live in linux-binary-* and linux-modules-*
    pkgs += [d for d in depends(pkgs[0]) if d.startswith(("linux-binary-", "linux-modules-"))]
    if with_headers:
        hdr = f"linux-headers-{rel}"
        pkgs += [hdr] + [d for d in depends(hdr) if d.startswith("linux-headers-") and d.endswith("-common")]
    debs = download(pkgs)
    done = set(stamp.read_text().split()) if stamp.exists() else set()
    for deb in debs:
        if deb.name not in done:
            log(f"dpkg -x {deb.name}")
            k.root.mkdir(parents=True, exist_ok=True)
            run(["dpkg", "-x", str(deb), str(k.root)])
            done.add(deb.name)
            stamp.write_text("\n".join(sorted(done)) + "\n")
    for cand in (k.root / "boot" / f"vmlinuz-{rel}", k.root / "usr/lib/modules" / rel / "vmlinuz"):
        if cand.exists():
            k.vmlinuz = cand
            break
    else:
        sys.exit(f"matrix: no vmlinuz for {rel} in {k.root}")
    for mods in (k.root / "lib/modules" / rel, k.root / "usr/lib/modules" / rel):
        build = mods / "build"
        if build.is_dir() and (build.resolve() / "include").is_dir():
            k.headers = "exact"
    if with_headers and k.headers != "exact":
        sys.exit(f"matrix: linux-headers-{rel} unpacked, but {rel}'s modules dir has no build tree")
    return k


# -- one VM ------------------------------------------------------------------------------
def boot(vng: Path, k: Kernel, out: Path, checks: str) -> tuple[int, float]:
    """Boot ``k`` once and run the guest program; return (vng's status, seconds)."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    disk = out / "disk.img"
    with open(disk, "wb") as f:
        f.truncate(512 << 20)
    run(["mkfs.ext4", "-q", "-F", str(disk)])
    # numpy's AVX2/AVX-512 kernels off in the guest: they run under qemu's young TCG emulation
    # of those instructions (a guest segfaulted once, after its checks, in numpy work), and the
    # kernel, not the emulator's vector unit, is what the matrix tests; -X faulthandler: a
    # crash says where it was
    guest = (
        f"cd {ROOT} && echo uptime $(cut -d' ' -f1 /proc/uptime) >&2 && "
        "export NPY_DISABLE_CPU_FEATURES='X86_V3 X86_V4 AVX512_ICL AVX512_SPR' && "
        f".venv/bin/python -X faulthandler tests/vm/guest.py --out {out} --headers {k.headers} "
        f"--checks {checks}"
    )
    cmd = [
        str(vng), "--run", str(k.vmlinuz), "--disable-kvm", "--cpus", "2", "--memory", "4G",
        f"--rwdir={out}", "--disk", str(disk), "--verbose", "--exec", guest,
        # one host thread for both vCPUs: with multi-threaded TCG, a 7.2 guest oopsed on a stale
        # int3 (trace_syscall_enter) while tracepoints were being patched, in 3 of 8 runs;
        # vng passes this to qemu last, so it stays last here
        "--qemu-opts=-accel tcg,thread=single",  # "=": the value starts with a dash
    ]
    t0 = time.monotonic()
    # through a pipe: qemu reopens a plain file by path, and two redirections clobber it
    with open(out / "vm.log", "w") as logf:
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             cwd=str(out), start_new_session=True,
                             env=dict(os.environ, PATH=f"{vng.parent}:{os.environ.get('PATH', '')}"))
        assert p.stdout is not None
        deadline = t0 + VM_TIMEOUT_S
        for line in p.stdout:
            logf.write(line)
            logf.flush()
            # --verbose: the guest kernel's console is in vm.log too; its crashes are shown
            if line.startswith(("guest: ", "uptime ")) or any(w in line for w in ALARMS):
                sys.stderr.write(f"  [{k.series} {time.monotonic() - t0:5.0f}s] {line}")
            if time.monotonic() > deadline:
                break
        try:
            rc = p.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, 9)
            rc = p.wait()
            logf.write(f"matrix: VM killed after {VM_TIMEOUT_S} s\n")
    disk.unlink()
    return rc, time.monotonic() - t0


def read_results(out: Path) -> list[dict[str, Any]]:
    path = out / "results.jsonl"
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def judge(k: Kernel, rows: list[dict[str, Any]], rc: int, secs: float) -> list[str]:
    """Why this kernel failed ([] if it passed)."""
    why: list[str] = []
    if rc != 0:
        why.append(f"VM exit status {rc}")
    if not any(r["check"] == "done" for r in rows):
        why.append("the guest program did not finish (see vm.log)")
    known = EXPECTED_UNAVAILABLE.get(k.series, {})
    for r in rows:
        if r["status"] == "fail" and r["check"] != "done":
            why.append(f"{r['check']} {r.get('layer', '')} {r.get('transport', '')}: {r['reason']}")
        if r["status"] == "unavailable" and r.get("layer") not in known and r["check"] == "available":
            why.append(f"{r.get('layer')} unavailable, not expected on {k.series}: {r['reason']}")
    return why


def table(results: list[dict[str, Any]]) -> list[str]:
    lines = [
        f"{'kernel':<24} {'check':<16} {'layer':<12} {'transport':<9} {'events':>13} {'lost':>6}  result",
    ]
    for res in results:
        for r in res["rows"]:
            if r["check"] in ("timing", "done"):
                continue
            ev = r.get("events")
            evs = "" if ev is None else f"{ev:,}"
            if ev is not None and r.get("expected") is not None:
                evs += f"/{r['expected']:,}"
            lost = "" if r.get("lost") is None else f"{r['lost']:,}"
            res_txt = r["status"] + (f": {r['reason']}" if r.get("reason") else "")
            lines.append(f"{res['release']:<24} {r['check']:<16} {r.get('layer', ''):<12} "
                         f"{r.get('transport', ''):<9} {evs:>13} {lost:>6}  {res_txt}")
    return lines


def timings(res: dict[str, Any]) -> str:
    parts = [f"boot {res['boot_s']:.0f} s" if res.get("boot_s") is not None else "boot ?"]
    for r in res["rows"]:
        if r["check"] == "doctor":
            parts.append(f"doctor {r.get('seconds', 0):.0f} s")
        if r.get("compile_s") is not None and r["check"] in ("cmd", "pid", "loss", "duration", "uring") and \
                r.get("layer") in (None, "syscall", "syscall,vfs", "io_uring"):
            parts.append(f"{r['check']}:{r.get('transport')} {r['record_s']:.0f} s "
                         f"(compile+attach {r['compile_s']:.0f} s)")
    parts.append(f"VM total {res['vm_s']:.0f} s")
    return ", ".join(parts)


# -- docs --------------------------------------------------------------------------------
BEGIN, END = "<!-- tested-kernels:begin -->", "<!-- tested-kernels:end -->"


def update_docs(results: list[dict[str, Any]]) -> None:
    """README's "Tested kernels" table and docs/doctor-stock-kernel.md, from this run."""
    day = time.strftime("%Y-%m-%d", time.gmtime())
    cells = [("cmd", "syscall"), ("cmd", "block"), ("cmd", "vfs"), ("pid", "syscall"), ("pid", "block"),
             ("pid", "vfs"), ("uring", "io_uring"), ("uring", "block")]
    rows = ["| kernel (Debian) | headers | syscall ringbuf | block ringbuf | vfs ringbuf | syscall perf "
            "| block perf | vfs perf | io_uring ringbuf (fio) | its block writes "
            "| filters, hooks | loss | --duration | result | VM min |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]

    def cell(r: dict[str, Any] | None) -> str:
        if r is None:
            return "not run"
        if r["status"] == "unavailable":
            return f"unavailable: {r['reason']}"
        got = f"{r['events']:,}/{r['expected']:,}" if r.get("expected") is not None else ""
        return (got or "ok") if r["status"] == "pass" else f"**FAIL** {got}".strip()

    for res in results:
        by = {(r["check"], r.get("layer")): r for r in res["rows"]}
        side = [r for r in res["rows"] if r["check"].endswith(("-filter", "-header"))]
        filt = "ok" if side and all(r["status"] == "pass" for r in side) else "**FAIL**"
        loss = by.get(("loss", "syscall"))
        loss_txt = cell(loss) + (f" + {loss['lost']:,} lost" if loss and loss.get("lost") else "")
        dur = next((r for r in res["rows"] if r["check"] == "duration"), None)
        dur_txt = cell(dur) if dur is None or dur["status"] != "pass" else f"{dur['summary_s']} s"
        verdict = "pass" if not res["why"] else "**FAIL**"
        rows.append(f"| {res['release']} | {res['headers']} | "
                    + " | ".join(cell(by.get(c)) for c in cells)
                    + f" | {filt} | {loss_txt} | {dur_txt} | {verdict} | {res['vm_s'] / 60:.1f} |")
    fails = [f"- {res['release']}: " + "; ".join(res["why"]) for res in results if res["why"]]
    text = (
        f"{BEGIN}\n"
        f"Generated by `tests/vm/matrix.py --update-docs` on {day} (each kernel booted under TCG on the\n"
        "2-core build machine; checks: doctor; dd of direct 4 KiB writes with exact counts per layer\n"
        "under `-- CMD` (ring buffer) and `--pid` (perf buffer), cross-checked against filefrag's\n"
        "block map; vfs kprobes nested in their syscalls; hooks in the header; loss accounting with\n"
        "a one-page buffer; `--duration 30s`; fio's io_uring engine at depth 8, system-wide, against\n"
        "fio's own per-I/O log and filefrag). Counts are the workload's I/Os recorded / done:\n\n"
        + "\n".join(rows)
        + ("\n\nFailures:\n\n" + "\n".join(fails) if fails else "") + f"\n{END}"
    )
    readme = ROOT / "README.md"
    body = readme.read_text()
    if BEGIN in body:
        body = re.sub(re.escape(BEGIN) + r".*?" + re.escape(END), lambda _m: text, body, flags=re.S)
    else:
        anchor = "## Development"
        body = body.replace(anchor, "## Tested kernels\n\n" + text + "\n\n" + anchor, 1)
    readme.write_text(body)
    # the doctor of a kernel with its exact headers, else any
    with_doctor = [r for r in results if (Path(r["out"]) / "doctor.txt").exists()]
    stock = next((r for r in with_doctor if r["headers"] == "exact"), with_doctor[0] if with_doctor else None)
    if stock is not None:
        doc = ROOT / "docs" / "doctor-stock-kernel.md"
        doc.write_text(
            f"# `aether-rec doctor` on a stock kernel\n\n"
            f"Debian's {stock['release']} kernel, booted in a VM by `tests/vm/matrix.py` on {day} "
            f"(headers: {stock['headers']}). Regenerate with `tests/vm/matrix.py --update-docs`.\n\n"
            "```\n$ sudo aether-rec doctor\n" + (Path(stock["out"]) / "doctor.txt").read_text() + "```\n"
        )
    (ROOT / "tests" / "vm" / "last-run.json").write_text(
        json.dumps([{k: v for k, v in r.items() if k != "out"} for r in results], indent=1) + "\n"
    )
    log("updated README.md (Tested kernels), docs/doctor-stock-kernel.md, tests/vm/last-run.json")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kernels", default="all",
                    help=f"all ({', '.join(SERIES)}), ci ({', '.join(CI_SERIES)}), or a list: 6.1,newest")
    ap.add_argument("--checks", default=CHECKS, help=f"what each VM runs [{CHECKS}]")
    ap.add_argument("--out", type=Path, default=CACHE / "runs" / "last", help="results and VM logs")
    ap.add_argument("--fetch-only", action="store_true", help="install and download, boot nothing")
    ap.add_argument("--report-only", action="store_true",
                    help="boot nothing: print (and with --update-docs, write) the report of the run in --out")
    ap.add_argument("--update-docs", action="store_true",
                    help="write README's Tested kernels table and docs/doctor-stock-kernel.md")
    a = ap.parse_args()
    series = {"all": SERIES, "ci": CI_SERIES}.get(a.kernels) or tuple(a.kernels.split(","))
    for s in series:
        if s not in SERIES:
            ap.error(f"unknown kernel series {s!r}: one of {', '.join(SERIES)}")
    if os.geteuid() != 0 and not a.report_only:
        ap.error("run as root (it installs packages and the guest records as root)")
    if any(str(CACHE.resolve()).startswith(d) for d in ("/var/cache/", "/var/log/", "/var/tmp/")):
        ap.error(f"AETHER_VM_CACHE={CACHE}: vng mounts a tmpfs over that directory in the guest")
    t0 = time.monotonic()
    if a.report_only:
        return report(a, [load_run(a.out / d.name) for d in sorted(a.out.iterdir()) if d.is_dir()], t0)
    vng = ensure_host()
    apt_update()
    kernels = [fetch(s, s in EXACT_HEADERS) for s in series]
    log(f"set-up and downloads: {time.monotonic() - t0:.0f} s; kernels: "
        + ", ".join(f"{k.release} ({k.headers} headers)" for k in kernels))
    if a.fetch_only:
        return 0
    results = []
    for k in kernels:  # one VM at a time: they take both CPUs
        log(f"booting {k.release}")
        out = a.out / k.release
        rc, secs = boot(vng, k, out, a.checks)
        rows = read_results(out)
        why = judge(k, rows, rc, secs)
        up = next((float(x.split()[1]) for x in (out / "vm.log").read_text().splitlines()
                   if x.startswith("uptime ")), None)
        res = {"series": k.series, "release": k.release, "headers": k.headers, "rows": rows,
               "why": why, "vm_s": secs, "boot_s": up, "out": str(out), "rc": rc}
        results.append(res)
        (out / "matrix.json").write_text(json.dumps({key: v for key, v in res.items() if key != "rows"}))
        log(f"{k.release}: {'pass' if not why else 'FAIL'} in {secs:.0f} s ({timings(res)})")
    return report(a, results, t0)


def load_run(out: Path) -> dict[str, Any]:
    """A kernel's result as a run left it in ``out`` (for --report-only)."""
    res: dict[str, Any] = json.loads((out / "matrix.json").read_text())
    res["rows"] = read_results(out)
    res["out"] = str(out)
    k = Kernel(res["series"], res["release"], Path(out))
    res["why"] = judge(k, res["rows"], int(res.get("rc", 0)), res["vm_s"])
    return res


def report(a: argparse.Namespace, results: list[dict[str, Any]], t0: float) -> int:
    print("\n".join(table(results)))
    print()
    for res in results:
        print(f"{res['release']}: {timings(res)}")
    failed = [r for r in results if r["why"]]
    for r in failed:
        print(f"FAIL {r['release']}: " + "; ".join(r["why"]))
    print(f"{len(results) - len(failed)} of {len(results)} kernels passed in {time.monotonic() - t0:.0f} s")
    if a.update_docs:
        update_docs(results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
