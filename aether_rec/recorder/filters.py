"""Filling the in-kernel settings and filter maps (own pid, minimum latency, traced pids,
comm, cgroup) of a loaded program, by map descriptor: the same for a program bcc just
compiled and one loaded from the cache. The maps are declared in bpf/aether_common.h:
aether_config (u32 0 -> struct aether_config, CONFIG_LAYOUT), traced_tgids (u32 -> u8),
comm_filter (u32 0 -> char[16]), cgroup_filter (a cgroup array of one)."""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from typing import Any

from aether_rec.recorder.bpfsys import update_elem

CONFIG_LAYOUT = "<IIQ"  # struct aether_config: self_tgid, pad, min_lat_ns


def fill_filters(map_fd: Callable[[str], int], filters: dict[str, Any]) -> None:
    """``filters``: {"config": {"self_tgid", "min_lat_ns"}, "pids": [tgid...] or None (no
    pid filter), "comm": str or None, "cgroup_path": str or None}; ``map_fd(name)``: the
    descriptor of a map of the program."""
    cfg = filters.get("config") or {}
    update_elem(map_fd("aether_config"), bytes(4),
                struct.pack(CONFIG_LAYOUT, int(cfg.get("self_tgid", 0)), 0, int(cfg.get("min_lat_ns", 0))))
    pids = filters.get("pids")
    if pids is not None:
        fd = map_fd("traced_tgids")
        for pid in pids:
            update_elem(fd, int(pid).to_bytes(4, "little"), b"\1")
    comm = filters.get("comm")
    if comm is not None:
        update_elem(map_fd("comm_filter"), bytes(4), str(comm).encode()[:15].ljust(16, b"\0"))
    cgroup = filters.get("cgroup_path")
    if cgroup is not None:
        cg = os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY)
        try:
            update_elem(map_fd("cgroup_filter"), bytes(4), cg.to_bytes(4, "little"))
        finally:
            os.close(cg)
