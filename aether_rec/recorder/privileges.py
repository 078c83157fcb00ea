"""Privilege check: loading BPF tracing programs needs root, or CAP_BPF + CAP_PERFMON
(kernel 5.8+), or CAP_SYS_ADMIN."""

from __future__ import annotations

import os

from aether_rec.errors import EnvironmentProblem

CAP_SYS_ADMIN = 21
CAP_PERFMON = 38
CAP_BPF = 39


def effective_caps() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except OSError:
        pass
    return 0


def privilege_status() -> dict[str, object]:
    caps = effective_caps()
    names = [
        n
        for n, bit in (("CAP_SYS_ADMIN", CAP_SYS_ADMIN), ("CAP_BPF", CAP_BPF), ("CAP_PERFMON", CAP_PERFMON))
        if caps >> bit & 1
    ]
    ok = bool(caps >> CAP_SYS_ADMIN & 1) or (bool(caps >> CAP_BPF & 1) and bool(caps >> CAP_PERFMON & 1))
    return {"ok": ok, "euid": os.geteuid(), "capabilities": names}


def check_privileges() -> None:
    st = privilege_status()
    if st["ok"]:
        return
    raise EnvironmentProblem(
        f"recording needs root (running as uid {st['euid']} without CAP_BPF+CAP_PERFMON or "
        "CAP_SYS_ADMIN): run it with sudo, or grant the capabilities "
        "(setcap cap_bpf,cap_perfmon,cap_sys_admin+ep on the Python interpreter)"
    )
