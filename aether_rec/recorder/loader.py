"""The BPF loader helper: ``python -m aether_rec.recorder.loader SOCKET_FD``.

Reads a JSON request on stdin (program text, cflags, maps wanted, filters), loads the
program from the compiled-program cache (progcache) or compiles, loads and attaches it
with bcc (and caches it), fills the filter maps, then sends the map descriptors
and the attachment descriptors to the recorder over the Unix socket, waits for its
"ok" and exits without bcc's clean-up (which would disable the probes the recorder now
holds). See aether_rec.recorder.loaded.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from typing import Any

from aether_rec.errors import RecorderError
from aether_rec.recorder import progcache
from aether_rec.recorder.bpfsys import update_elem_u32
from aether_rec.recorder.filters import fill_filters
from aether_rec.recorder.loaded import compile_and_attach, error_reply


def serve(sock: socket.socket, request: dict[str, Any]) -> None:
    outputs = {
        str(m): {int(cpu): int(fd) for cpu, fd in per_cpu.items()}
        for m, per_cpu in (request.get("outputs") or {}).items()
    }
    filters = request.get("filters") or {}
    names = list(request["maps"])
    key = progcache.key(request["text"], request["cflags"])
    cached = _from_cache(key, filters, outputs)
    if cached is not None:
        map_fds = [cached.maps[n] for n in names]
        links, progs = cached.links, cached.progs
        attach = {"attached_ns": cached.attached_ns, "attach_s": cached.attach_s, "source": "cache"}
    else:
        bpf = compile_and_attach(request["text"], request["cflags"], filters, outputs)
        map_fds = [int(bpf[n].map_fd) for n in names]
        links = [int(fd) for fd in bpf.tracepoint_fds.values()]
        links += [int(fd) for fd in getattr(bpf, "raw_tracepoint_fds", {}).values()]
        # the vfs layer's kprobes: bcc keeps {event: {function: fd}}
        links += [int(fd) for fns in getattr(bpf, "kprobe_fds", {}).values() for fd in fns.values()]
        # the programs too, by name: the recorder reads their recursion_misses (runs the
        # kernel skipped), and holding them makes its /proc/PID/fd say which programs it runs
        progs = {(k.decode() if isinstance(k, bytes) else str(k)): int(fn.fd) for k, fn in bpf.funcs.items()}
        attach = {"attached_ns": bpf.attach_started_ns, "attach_s": bpf.attach_s, "source": "compiled"}
        progcache.save(bpf, key)
    reply = json.dumps({"maps": names, "links": len(links), "progs": list(progs), **attach}).encode()
    socket.send_fds(sock, [reply], map_fds + links + list(progs.values()))
    sock.recv(16)  # the recorder holds them now


def _from_cache(key: str, filters: dict[str, Any], outputs: dict[str, dict[int, int]]) -> Any:
    """The program loaded and attached from the compiled-program cache, or None (not there,
    or it failed to load: then it is compiled again, and the entry replaced)."""
    entry = progcache.lookup(key)
    if entry is None:
        return None

    def prepare(maps: dict[str, int]) -> None:
        fill_filters(lambda name: maps[name], filters)
        for name, per_cpu in outputs.items():
            for cpu, fd in per_cpu.items():
                update_elem_u32(maps[name], cpu, fd)

    try:
        return progcache.load(entry, prepare)
    except (RecorderError, OSError, KeyError, ValueError, TypeError) as e:
        sys.stderr.write(f"aether-rec: the cached BPF program did not load ({e}); compiling it again\n")
        return None


def main(argv: list[str]) -> int:
    sock = socket.socket(fileno=int(argv[1]))
    try:
        serve(sock, json.loads(sys.stdin.read()))
    except Exception as exc:  # noqa: BLE001 - report, never a traceback
        sock.sendall(json.dumps(error_reply(exc)).encode())
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # skip bcc's atexit clean-up: it would disable the handed-over probes


if __name__ == "__main__":
    main(sys.argv)
