"""Privilege check: loading BPF tracing programs needs root, or CAP_BPF + CAP_PERFMON
(kernel 5.8+), or CAP_SYS_ADMIN."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from aether_rec.errors import EnvironmentProblem, RecorderError, UsageError

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


# -- record --user: dropping root once the probes are attached -------------------------
PR_SET_KEEPCAPS = 8
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38


@dataclass(frozen=True)
class User:
    """Who ``record --user NAME`` becomes: uid, primary gid and supplementary groups."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]


def resolve_user(spec: str) -> User:
    """A user name (or numeric uid) from the password database."""
    import pwd

    try:
        pw = pwd.getpwnam(spec)
    except KeyError:
        pw = None
        if spec.isdigit():
            try:
                pw = pwd.getpwuid(int(spec))
            except KeyError:
                pass
    if pw is None:
        raise UsageError(f"--user {spec}: no such user")
    groups = tuple(sorted(set(os.getgrouplist(pw.pw_name, pw.pw_gid))))
    return User(pw.pw_name, pw.pw_uid, pw.pw_gid, groups)


def can_create_in(user: User, directory: str) -> bool:
    """Could ``user`` create files in ``directory``? Asked of the kernel with the user's
    effective ids for a moment (so modes, groups and ACLs count as they will), then back."""
    euid, egid, groups = os.geteuid(), os.getegid(), os.getgroups()
    try:
        os.setgroups(list(user.groups))
        os.setegid(user.gid)
        os.seteuid(user.uid)
        return os.access(directory, os.W_OK | os.X_OK, effective_ids=True)
    finally:
        os.seteuid(euid)
        os.setegid(egid)
        os.setgroups(groups)


def credentials() -> dict[str, Any]:
    """The process's ids, groups and capability sets, from /proc/self/status."""
    out: dict[str, Any] = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                v = value.split()
                if key in ("Uid", "Gid"):
                    out[key.lower()] = [int(x) for x in v]  # real, effective, saved, fs
                elif key == "Groups":
                    out["groups"] = sorted(int(x) for x in v)
                elif key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
                    out[key.lower()] = int(v[0], 16)
                elif key == "NoNewPrivs":
                    out["no_new_privs"] = int(v[0])
    except (OSError, ValueError, IndexError):
        pass
    return out


def _prctl(option: int, arg: int) -> int:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    return int(libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0))


def drop_privileges(user: User) -> dict[str, Any]:
    """Become ``user`` for good: the capability bounding set emptied, supplementary
    groups, gid and uid set (real, effective and saved), no new privileges. Checked
    afterwards from /proc/self/status; returns those credentials. Fails closed: any
    doubt is a RecorderError (the caller stops recording)."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            last_cap = int(f.read())
    except (OSError, ValueError):
        last_cap = 63
    try:
        _prctl(PR_SET_KEEPCAPS, 0)
        for cap in range(last_cap + 1):
            _prctl(PR_CAPBSET_DROP, cap)  # needs CAP_SETPCAP: done while still root
        os.setgroups(list(user.groups))
        os.setgid(user.gid)
        os.setuid(user.uid)
        _prctl(PR_SET_NO_NEW_PRIVS, 1)
    except OSError as exc:
        raise RecorderError(f"--user {user.name}: cannot drop privileges ({exc.strerror or exc})") from None
    creds = credentials()
    problems = []
    if creds.get("uid") != [user.uid] * 4 or creds.get("gid") != [user.gid] * 4:
        problems.append(f"uid {creds.get('uid')} gid {creds.get('gid')}")
    if creds.get("groups") != sorted(user.groups):
        problems.append(f"groups {creds.get('groups')}")
    if user.uid != 0 and any(creds.get(k, 1) for k in ("capprm", "capeff", "capamb")):
        problems.append("capabilities remain")
    if problems:
        raise RecorderError(f"--user {user.name}: the drop did not take ({'; '.join(problems)})")
    return creds
