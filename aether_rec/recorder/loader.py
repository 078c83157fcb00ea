"""The BPF loader helper: ``python -m aether_rec.recorder.loader SOCKET_FD``.

Reads a JSON request on stdin (program text, cflags, maps wanted, filters), compiles,
loads and attaches it with bcc, fills the filter maps, then sends the map descriptors
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

from aether_rec.recorder.loaded import compile_and_attach, error_reply


def serve(sock: socket.socket, request: dict[str, Any]) -> None:
    outputs = {
        str(m): {int(cpu): int(fd) for cpu, fd in per_cpu.items()}
        for m, per_cpu in (request.get("outputs") or {}).items()
    }
    bpf = compile_and_attach(request["text"], request["cflags"], request.get("filters") or {}, outputs)
    names = list(request["maps"])
    map_fds = [int(bpf[n].map_fd) for n in names]
    links = [int(fd) for fd in bpf.tracepoint_fds.values()]
    links += [int(fd) for fd in getattr(bpf, "raw_tracepoint_fds", {}).values()]
    # the vfs layer's kprobes: bcc keeps {event: {function: fd}}
    links += [int(fd) for fns in getattr(bpf, "kprobe_fds", {}).values() for fd in fns.values()]
    # the programs too, by name: the recorder reads their recursion_misses (runs the
    # kernel skipped), and holding them makes its /proc/PID/fd say which programs it runs
    progs = {(k.decode() if isinstance(k, bytes) else str(k)): int(fn.fd) for k, fn in bpf.funcs.items()}
    attach = {"attached_ns": bpf.attach_started_ns, "attach_s": bpf.attach_s}
    reply = json.dumps({"maps": names, "links": len(links), "progs": list(progs), **attach}).encode()
    socket.send_fds(sock, [reply], map_fds + links + list(progs.values()))
    sock.recv(16)  # the recorder holds them now


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
