"""A loaded, attached BPF program, as the recording session sees it.

:class:`RemoteProgram`: compiled, loaded and attached by a short-lived helper process
(``python -m aether_rec.recorder.loader``), which hands the map, attachment and program
descriptors over a Unix socket and exits. The recorder itself never loads bcc, clang or
LLVM: that keeps about 120 MB (the compiler's libraries and working memory) out of its
resident memory for the whole recording. Both transports only need map descriptors.
Closing it detaches every probe.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from typing import Any, Protocol

from aether_rec.errors import AetherError, EnvironmentProblem, RecorderError
from aether_rec.recorder.bpfsys import attach_rank, lookup_percpu_u64, possible_cpus, prog_recursion_misses

KRETPROBE_MAXACTIVE = 4096  # returns in flight per kretprobe (the kernel's upper limit)
MAX_FDS = 250  # SCM_RIGHTS carries at most 253 descriptors per message


class LoadedProgram(Protocol):
    """What the session and transports use of a loaded program."""

    attached_ns: int  # CLOCK_MONOTONIC when its first probe was attached
    attach_s: float  # how long attaching every probe took
    source: str  # "compiled" (by bcc) or "cache" (the compiled-program cache)

    def map_fd(self, name: str) -> int: ...

    def percpu_u64(self, name: str, key: int) -> list[int]: ...

    def recursion_misses(self) -> dict[str, int]: ...

    def close(self) -> None: ...


class RemoteProgram:
    def __init__(
        self,
        maps: dict[str, int],
        links: list[int],
        progs: dict[str, int] | None = None,
        attached_ns: int = 0,
        attach_s: float = 0.0,
        source: str = "compiled",
    ) -> None:
        self._maps = maps
        self._links = links
        self._progs = progs or {}  # program name -> fd (also among the links, closed with them)
        # CLOCK_MONOTONIC when the first probe was attached: events flow from then on
        self.attached_ns = attached_ns or time.monotonic_ns()
        self.attach_s = attach_s  # how long attaching every probe took
        self.source = source
        self._ncpu = possible_cpus()

    def map_fd(self, name: str) -> int:
        try:
            return self._maps[name]
        except KeyError:
            raise RecorderError(f"the loaded program has no map {name!r}") from None

    def percpu_u64(self, name: str, key: int) -> list[int]:
        return lookup_percpu_u64(self.map_fd(name), key, self._ncpu)

    def recursion_misses(self) -> dict[str, int]:
        """Per program: the times the kernel did not run it because a BPF program was
        already running on that CPU (cumulative; kernels before 5.12 count none)."""
        out: dict[str, int] = {}
        for name, fd in self._progs.items():
            try:
                out[name] = prog_recursion_misses(fd)[1]
            except RecorderError:
                continue
        return out

    def close(self) -> None:
        links, self._links = self._links, []
        detach_in_parallel(links)
        maps, self._maps = self._maps, {}
        for fd in maps.values():
            _close(fd)


def error_reply(exc: BaseException) -> dict[str, Any]:
    """The loader helper's answer when it fails: the one line and whether it is the
    machine's fault, so the recorder raises the same kind of error it would have."""
    if isinstance(exc, AetherError):
        return {"error": str(exc), "environment": isinstance(exc, EnvironmentProblem)}
    return {"error": f"BPF loader failed: {exc}", "environment": False}


def reply_error(reply: dict[str, Any]) -> RecorderError:
    """The error a failed helper's answer stands for (see error_reply)."""
    cls = EnvironmentProblem if reply.get("environment") else RecorderError
    return cls(str(reply["error"]))


class _FilterError(Exception):
    pass


def compile_and_attach(
    text: str, cflags: list[str], filters: dict[str, Any], outputs: dict[str, dict[int, int]] | None = None
) -> Any:
    """bcc's BPF object for ``text``, attached, its filter maps filled (in the loader
    helper's process). The filters and ``outputs`` (CPU -> perf ring descriptor, for the
    ``events`` map) are set after compiling and before the first probe is attached: no
    event of a --pid target escapes the filter and none finds its buffer missing."""
    from aether_rec.recorder.bccload import load_bcc
    from aether_rec.recorder.bpfsys import update_elem_u32
    from aether_rec.recorder.filters import fill_filters

    bcc = load_bcc().module
    assert bcc is not None
    bcc_mod: Any = bcc  # for the class below (the narrowing does not reach its methods)

    class TimedBPF(bcc.BPF):  # type: ignore[name-defined]
        """bcc's BPF noting when it starts attaching (its constructor compiles, then
        attaches every probe in _trace_autoload): from then on events flow, so the
        recording's time counts from there (a --duration, the summary's seconds)."""

        attach_started_ns = 0
        attach_s = 0.0  # how long attaching every probe took

        def attach_kretprobe(
            self, event: bytes = b"", fn_name: bytes = b"", event_re: bytes = b"", maxactive: int = 0
        ) -> None:
            # The kernel's default (max(10, 2 x CPUs) returns in flight per probe) is used up
            # by threads blocked in vfs_read (pipes, terminals, sockets): further returns are
            # then missed without a trace. Measured in a VM: 167 of 2,000 reads of a dd lost.
            super().attach_kretprobe(
                event=event, fn_name=fn_name, event_re=event_re, maxactive=maxactive or KRETPROBE_MAXACTIVE
            )

        def _trace_autoload(self) -> None:
            try:
                fill_filters(lambda name: int(self[name].map_fd), filters)
            except Exception as e:  # noqa: BLE001 - bcc raises bare Exception
                raise _FilterError(str(e)) from None
            for name, per_cpu in (outputs or {}).items():
                for cpu, fd in per_cpu.items():
                    update_elem_u32(self[name].map_fd, cpu, fd)
            self.attach_started_ns = time.monotonic_ns()
            self._attach_in_order()
            self.attach_s = (time.monotonic_ns() - self.attach_started_ns) / 1e9

        def _attach_in_order(self) -> None:
            """bcc's autoload (by name prefix; the kinds our programs use), in the order of
            bpfsys.attach_rank: the task hooks before any event hook."""
            lib = bcc_mod.lib
            names = [lib.bpf_function_name(self.module, i) for i in range(lib.bpf_num_functions(self.module))]
            for func_name in sorted(names, key=lambda n: attach_rank(n.decode())):
                if func_name.startswith(b"kprobe__"):
                    fn = self.load_func(func_name, bcc_mod.BPF.KPROBE)
                    self.attach_kprobe(event=self.fix_syscall_fnname(func_name[8:]), fn_name=fn.name)
                elif func_name.startswith(b"kretprobe__"):
                    fn = self.load_func(func_name, bcc_mod.BPF.KPROBE)
                    self.attach_kretprobe(event=self.fix_syscall_fnname(func_name[11:]), fn_name=fn.name)
                elif func_name.startswith(b"tracepoint__"):
                    fn = self.load_func(func_name, bcc_mod.BPF.TRACEPOINT)
                    tp = fn.name[len(b"tracepoint__") :].replace(b"__", b":")
                    self.attach_tracepoint(tp=tp, fn_name=fn.name)
                elif func_name.startswith(b"raw_tracepoint__"):
                    fn = self.load_func(func_name, bcc_mod.BPF.RAW_TRACEPOINT)
                    self.attach_raw_tracepoint(tp=fn.name[len(b"raw_tracepoint__") :], fn_name=fn.name)

    try:
        bpf = TimedBPF(text=text, cflags=list(cflags))
        if not bpf.attach_started_ns:  # a bcc without _trace_autoload: when attaching ended
            bpf.attach_started_ns = time.monotonic_ns()
            fill_filters(lambda name: int(bpf[name].map_fd), filters)
            for name, per_cpu in (outputs or {}).items():
                for cpu, fd in per_cpu.items():
                    update_elem_u32(bpf[name].map_fd, cpu, fd)
    except _FilterError as e:
        raise RecorderError(f"could not set up the in-kernel filters: {e}") from None
    except Exception as e:  # noqa: BLE001 - bcc raises bare Exception
        msg = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise RecorderError(
            f"the BPF program failed to load ({msg}); the compiler's messages are above, "
            "'aether-rec doctor' checks the environment"
        ) from None
    return bpf


def detach_in_parallel(fds: list[int], threads: int = 8) -> None:
    """Close attachment descriptors: each detach waits for an RCU grace period, so doing
    them one after another takes seconds. (More threads do not help: on 6.18, 72 hooks take
    3.1 s with 8 threads or 128, the kernel serialises the unregistering; and under the VM
    matrix's emulation, 128 concurrent detaches went with guest kernel oopses on int3 in the
    tracepoint code being patched.)"""
    if not fds:
        return
    parts = [fds[i::threads] for i in range(min(threads, len(fds)))]
    workers = [threading.Thread(target=_close_all, args=(p,)) for p in parts]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        _close(fd)


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def load_remote(
    text: str,
    cflags: list[str],
    maps: list[str],
    filters: dict[str, Any],
    outputs: dict[str, dict[int, int]] | None = None,
) -> RemoteProgram:
    """Compile, load and attach in a helper process; return the descriptors it hands over.
    ``outputs``: map name -> CPU -> perf ring descriptor, put into the map before attaching.

    The helper's compiler messages go to our stderr; its one-line error, if any, is
    raised here as RecorderError."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    outputs = outputs or {}
    request = json.dumps(
        {"text": text, "cflags": cflags, "maps": maps, "filters": filters, "outputs": outputs}
    )
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "aether_rec.recorder.loader", str(theirs.fileno())],
            pass_fds=[theirs.fileno(), *(fd for per_cpu in outputs.values() for fd in per_cpu.values())],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
        )
    except OSError as exc:
        ours.close()
        theirs.close()
        raise RecorderError(f"cannot start the BPF loader ({exc.strerror})") from None
    theirs.close()
    try:
        assert proc.stdin is not None
        try:
            proc.stdin.write(request.encode())
            proc.stdin.close()
        except BrokenPipeError:
            pass
        msg, fds, _flags, _addr = socket.recv_fds(ours, 1 << 20, MAX_FDS)
        if not msg:
            proc.wait()
            raise RecorderError(f"the BPF loader exited ({proc.returncode}) without a program")
        reply = json.loads(msg.decode())
        if "error" in reply:
            for fd in fds:
                _close(fd)
            raise reply_error(reply)
        names: list[str] = reply["maps"]
        prog_names: list[str] = reply.get("progs", [])
        n_links = int(reply["links"])
        progs = dict(zip(prog_names, fds[len(names) + n_links :]))
        prog = RemoteProgram(
            dict(zip(names, fds[: len(names)])),
            list(fds[len(names) :]),
            progs,
            int(reply.get("attached_ns", 0)),
            float(reply.get("attach_s", 0.0)),
            str(reply.get("source", "compiled")),
        )
        if len(fds) != len(names) + n_links + len(prog_names):
            prog.close()
            raise RecorderError("the BPF loader handed over the wrong number of descriptors")
        ours.sendall(b"ok")  # the helper may exit now: the probes stay attached through us
        return prog
    finally:
        ours.close()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
