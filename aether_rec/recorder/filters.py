"""Filling the in-kernel filter maps (traced pids, comm, cgroup) of a loaded program."""

from __future__ import annotations

import os
from typing import Any


def fill_filters(bpf: Any, filters: dict[str, Any]) -> None:
    """``filters``: {"pids": [tgid...] or None (no pid filter), "comm": str or None,
    "cgroup_path": str or None}; ``bpf`` is bcc's BPF object."""
    pids = filters.get("pids")
    if pids is not None:
        table = bpf["traced_tgids"]
        for pid in pids:
            table[table.Key(int(pid))] = table.Leaf(1)
    comm = filters.get("comm")
    if comm is not None:
        table = bpf["comm_filter"]
        leaf = table.Leaf()
        leaf.comm = str(comm).encode()[:15]
        table[table.Key(0)] = leaf
    cgroup = filters.get("cgroup_path")
    if cgroup is not None:
        fd = os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY)
        try:
            bpf["cgroup_filter"][0] = fd
        finally:
            os.close(fd)
