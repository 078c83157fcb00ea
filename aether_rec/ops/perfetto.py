"""``export --format perfetto-proto``: Perfetto's native protobuf trace, with no size cap.

The output is a ``Trace`` (perfetto/trace/trace.proto) written without Perfetto's libraries:

- one trusted packet sequence (id 1) that starts with interned event names (one per layer and
  op) and ``trace_packet_defaults`` putting its timestamps on CLOCK_MONOTONIC (the capture's
  clock), plus a ``ClockSnapshot`` tying it to CLOCK_REALTIME;
- ``TrackDescriptor``s: a track per process and per thread, a track per block device with one
  child lane per concurrently outstanding request, and counter tracks (IOPS and queue depth per
  device);
- per event a ``TrackEvent`` slice (``TYPE_SLICE_BEGIN`` at ``ts``, ``TYPE_SLICE_END`` at
  ``ts + lat``, ``name_iid`` interned): syscall and VFS I/Os on their thread's track (extra
  lanes, child tracks of the thread, where they overlap without nesting), block requests as
  async slices on the lanes of their device;
- flows from a syscall to the block requests it caused, when the capture has a ``link``
  column: events that share a non-zero link id carry it in ``flow_ids``;
- loss records as instant events on a "losses" track.

Event packets are built for a whole chunk at once with numpy, in fixed layouts (the varints of
``timestamp`` and ``track_uuid`` padded to 9 and 5 bytes, which every protobuf parser accepts),
and grouped into ``compressed_packets`` (zlib, which Perfetto decompresses on load) of at most
``BUNDLE_BYTES`` each. The trace processor sorts packets by time, so begins and ends need not be
interleaved in the file.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np

from aether_rec.format.chunk import Chunk
from aether_rec.format.reader import Capture
from aether_rec.ops.window import Selection
from aether_rec.schema import LAYER_CODE, OPS, dev_name, is_real_loss

BUNDLE_BYTES = 1 << 20  # uncompressed bytes of packets per compressed_packets bundle
SEQ = 1
MAX_LANES = 256
BLOCK = LAYER_CODE["block"]
VFS = LAYER_CODE["vfs"]
CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_BOOTTIME = 1, 3, 6
SLICE_BEGIN, SLICE_END, INSTANT, COUNTER = 1, 2, 3, 4
# name iids: 1 + op code for syscall (and unknown) events, +40 block, +80 vfs: all < 128
LAYER_IID_BASE = {BLOCK: 41, VFS: 81}
DEFAULT_COUNTER_NS = 10_000_000
MAX_COUNTER_SAMPLES = 200_000  # per counter track; the interval grows to stay within


# -- protobuf primitives (for the few packets that are not events) ------------------------------


def varint(v: int) -> bytes:
    v &= (1 << 64) - 1  # negative int64: ten-byte two's complement, as protobuf does
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def f_varint(num: int, v: int) -> bytes:
    return varint(num << 3) + varint(v)


def f_bytes(num: int, data: bytes) -> bytes:
    return varint(num << 3 | 2) + varint(len(data)) + data


def f_str(num: int, s: str) -> bytes:
    return f_bytes(num, s.encode("utf-8", "replace"))


def packet(body: bytes) -> bytes:
    """One ``Trace.packet`` (field 1)."""
    return f_bytes(1, body)


def _seq(flags: int = 2) -> bytes:
    return f_varint(10, SEQ) + f_varint(13, flags)


def track_descriptor(uuid: int, *, name: str | None = None, parent: int | None = None,
                     process: tuple[int, str] | None = None, thread: tuple[int, int, str] | None = None,
                     counter: bool = False) -> bytes:
    td = f_varint(1, uuid)
    if name is not None:
        td += f_str(2, name)
    if process is not None:
        td += f_bytes(3, f_varint(1, process[0]) + f_str(6, process[1]))
    if thread is not None:
        td += f_bytes(4, f_varint(1, thread[0]) + f_varint(2, thread[1]) + f_str(5, thread[2]))
    if parent is not None:
        td += f_varint(5, parent)
    if counter:
        td += f_bytes(8, b"")
    return packet(_seq() + f_bytes(60, td))


def counter_event(ts: int, uuid: int, value: int) -> bytes:
    te = f_varint(9, COUNTER) + f_varint(11, uuid) + f_varint(30, value)
    return packet(f_varint(8, ts) + _seq() + f_bytes(11, te))


def instant_event(ts: int, uuid: int, name: str) -> bytes:
    te = f_varint(9, INSTANT) + f_varint(11, uuid) + f_str(23, name)
    return packet(f_varint(8, ts) + _seq() + f_bytes(11, te))


# -- event packets in bulk --------------------------------------------------------------------------

# Layout of a slice packet (Trace.packet), the same for every row of one call:
#   0x0A len              Trace.packet
#   0x40 ts(wt)           TracePacket.timestamp, varint padded to wt bytes
#   0x50 0x01             trusted_packet_sequence_id = 1
#   0x68 0x02             sequence_flags = SEQ_NEEDS_INCREMENTAL_STATE
#   0x5A len              TracePacket.track_event
#   0x48 type             TrackEvent.type (1 begin, 2 end)
#   0x58 uuid(wu)         TrackEvent.track_uuid, varint padded to wu bytes
#   0x50 iid              TrackEvent.name_iid
#  [0xF9 0x02 id(8)]      TrackEvent.flow_ids (fixed64)


_SPREAD = [(np.uint64(0x7F << (7 * k)), np.uint64(k)) for k in range(8)]


def _put_varint(out: np.ndarray, col: int, values: np.ndarray, width: int) -> None:
    """``values`` as varints padded to ``width`` (<= 9) bytes at column ``col`` of ``out``:
    the 7-bit groups are spread into the bytes of one uint64, written as one block."""
    v = values.astype(np.uint64, copy=False)
    low = min(width, 8)
    x = np.zeros(len(v), dtype=np.uint64)
    for mask, k in _SPREAD[:low]:
        x |= (v & mask) << k
    cont = sum(0x80 << (8 * k) for k in range(min(width - 1, 8)))
    x |= np.uint64(cont)
    out[:, col : col + low] = x.astype("<u8").view(np.uint8).reshape(len(v), 8)[:, :low]
    if width == 9:
        out[:, col + 8] = (v >> np.uint64(56)).astype(np.uint8) & np.uint8(0x7F)


def varint_width(max_value: int) -> int:
    return max(1, (int(max_value).bit_length() + 6) // 7)


def slice_packets(ts: np.ndarray, uuid: np.ndarray, iid: np.ndarray, kind: int,
                  flow: np.ndarray | None = None) -> np.ndarray:
    """Packets (rows of a uint8 array) for ``len(ts)`` slice begins or ends. Every row has the
    same layout: the varints of ts and uuid are padded to the width of the largest."""
    n = len(ts)
    wt = varint_width(int(ts.max())) if n else 1
    wu = varint_width(int(uuid.max())) if n else 1
    te = 2 + 1 + wu + 2 + (10 if flow is not None else 0)  # TrackEvent bytes
    width = 2 + 1 + wt + 4 + 2 + te
    head = np.array([0x0A, width - 2, 0x40], dtype=np.uint8)
    mid = np.array([0x50, SEQ, 0x68, 0x02, 0x5A, te, 0x48, kind, 0x58], dtype=np.uint8)
    out = np.empty((n, width), dtype=np.uint8)
    out[:, 0:3] = head
    _put_varint(out, 3, ts, wt)
    at = 3 + wt
    out[:, at : at + 9] = mid
    _put_varint(out, at + 9, uuid, wu)
    at += 9 + wu
    out[:, at] = 0x50
    out[:, at + 1] = iid
    if flow is not None:
        out[:, at + 2] = 0xF9
        out[:, at + 3] = 0x02
        out[:, at + 4 : at + 12] = flow.astype("<u8").view(np.uint8).reshape(n, 8)
    return out


def factorize(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct keys ascending, index of each key among them); by a lookup table, without a
    sort, when the keys are small non-negative integers."""
    if len(keys) and keys.dtype.kind in "ui" and int(keys.min()) >= 0 and int(keys.max()) < 1 << 24:
        present = np.zeros(int(keys.max()) + 1, dtype=bool)
        present[keys] = True
        uniq = np.flatnonzero(present)
        rank = np.cumsum(present, dtype=np.int64) - 1
        return uniq.astype(keys.dtype), rank[keys]
    uniq, inv = np.unique(keys, return_inverse=True)
    return uniq, inv.reshape(-1)


# -- lanes: slices on one track must nest ----------------------------------------------------------


@dataclass
class Lanes:
    """Assigns each interval a lane of its group so that a lane's intervals never overlap;
    remembers, across chunks, until when each (group, lane) is busy."""

    busy: dict[tuple[int, int], int] = field(default_factory=dict)

    def assign(self, group: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
        n = len(start)
        lanes = np.zeros(n, dtype=np.int64)
        if n == 0:
            return lanes
        ugroups, ginv = factorize(group)
        order = np.argsort(ginv.astype(np.uint16) if len(ugroups) < 65536 else ginv, kind="stable")
        base = int(start.min())
        big = np.int64(1 << 40)
        s_rel = np.minimum(start.astype(np.int64) - base, big - 1)
        e_rel = np.minimum(end.astype(np.int64) - base, big - 1)
        pending = order  # by group, then start (start is ascending within a chunk)
        lane = 0
        while pending.size:
            g = ginv[pending]
            s = s_rel[pending]
            e = e_rel[pending]
            key = g.astype(np.int64) * big
            run = np.maximum.accumulate(key + e)
            prev = np.empty_like(run)
            prev[0] = -1
            prev[1:] = run[:-1]
            first = np.ones(len(g), dtype=bool)
            first[1:] = g[1:] != g[:-1]
            prev = np.where(first, -1, prev - key)
            carry = np.array([self.busy.get((int(ugroups[k]), lane), -(1 << 62)) - base
                              for k in range(len(ugroups))], dtype=np.int64)
            ok = (s >= np.maximum(prev, carry[g])) | (lane >= MAX_LANES - 1)
            lanes[pending[ok]] = lane
            if ok.any():
                ends = np.full(len(ugroups), -(1 << 62), dtype=np.int64)
                np.maximum.at(ends, g[ok], e[ok])
                for k in np.flatnonzero(ends > -(1 << 62)).tolist():
                    key2 = (int(ugroups[k]), lane)
                    self.busy[key2] = max(self.busy.get(key2, -(1 << 62)), int(ends[k]) + base)
            pending = pending[~ok]
            lane += 1
        return lanes


# -- the exporter ----------------------------------------------------------------------------------


@dataclass
class PerfettoReport:
    events: int = 0
    packets: int = 0
    slices: int = 0
    flows: int = 0
    tracks: int = 0
    counters: int = 0
    instants: int = 0
    bytes: int = 0
    warnings: list[str] = field(default_factory=list)


class _Writer:
    """Bundles packets into compressed_packets and writes them (zlib in a helper thread)."""

    def __init__(self, out: BinaryIO, rep: PerfettoReport, level: int) -> None:
        self.out = out
        self.rep = rep
        self.level = level
        self.parts: list[bytes] = []
        self.size = 0
        self.pool = ThreadPoolExecutor(max_workers=1)
        self.pending: list[Any] = []

    def raw(self, data: bytes) -> None:
        """Packets written as they are (the first ones: interning, clocks)."""
        self.out.write(data)
        self.rep.bytes += len(data)

    def add(self, data: bytes) -> None:
        self.parts.append(data)
        self.size += len(data)
        if self.size >= BUNDLE_BYTES:
            self.flush()

    def add_rows(self, rows: np.ndarray) -> None:
        if rows.size == 0:
            return
        per = max(1, BUNDLE_BYTES // rows.shape[1])
        for i in range(0, len(rows), per):
            self.add(rows[i : i + per].tobytes())

    def flush(self) -> None:
        if not self.parts:
            return
        data = b"".join(self.parts)
        self.parts, self.size = [], 0
        self.pending.append(self.pool.submit(zlib.compress, data, self.level))
        while len(self.pending) > 2:
            self._write(self.pending.pop(0).result())

    def _write(self, comp: bytes) -> None:
        blob = packet(f_bytes(50, comp))
        self.out.write(blob)
        self.rep.bytes += len(blob)

    def close(self) -> None:
        self.flush()
        for fut in self.pending:
            self._write(fut.result())
        self.pending = []
        self.pool.shutdown()


class _Counters:
    """Per-device counts on a fixed grid of intervals over the capture's span, added chunk by
    chunk (memory per interval, not per event): requests started and ended at or before each
    interval's start (queue depth there = started - ended), and completions within it."""

    def __init__(self, t_first: int, t_last: int, counter_ns: int) -> None:
        step = counter_ns
        while (t_last - t_first) // step + 2 > MAX_COUNTER_SAMPLES:
            step *= 10
        self.step = step
        self.t0 = t_first // step * step
        self.nbins = (t_last - self.t0) // step + 2
        self.dev: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def add(self, dev: int, start: np.ndarray, end: np.ndarray) -> None:
        if dev not in self.dev:
            z = np.zeros(self.nbins, np.int64)
            self.dev[dev] = (z, z.copy(), z.copy())
        started, ended, done = self.dev[dev]
        step, nb = self.step, self.nbins - 1
        s = start.astype(np.int64) - self.t0
        e = end.astype(np.int64) - self.t0
        # x <= t0 + b * step  <=>  ceil(x / step) <= b
        started += np.bincount(np.clip(-(-s // step), 0, nb), minlength=self.nbins)
        ended += np.bincount(np.clip(-(-e // step), 0, nb), minlength=self.nbins)
        done += np.bincount(np.clip(e // step, 0, nb), minlength=self.nbins)

    def samples(self, dev: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(interval starts, completions per second, requests in flight at the start)."""
        started, ended, done = self.dev[dev]
        used = np.flatnonzero(started + ended + done)
        last = int(used[-1]) + 1 if used.size else 0
        edges = self.t0 + np.arange(last, dtype=np.int64) * self.step
        depth = (np.cumsum(started) - np.cumsum(ended))[:last]
        scale = 1_000_000_000 // self.step if self.step <= 1_000_000_000 else 1
        return edges, done[:last] * scale, depth


class _Tracks:
    """Track uuids, each described once (TrackDescriptor) before its first use."""

    def __init__(self, w: _Writer, rep: PerfettoReport) -> None:
        self.w = w
        self.rep = rep
        self.next_uuid = 1
        self.procs: dict[int, int] = {}
        self.threads: dict[int, int] = {}
        self.lanes: dict[tuple[int, int, int], int] = {}  # (kind 0 thread / 1 device, key, lane)
        self.devices: dict[int, int] = {}
        self.extra: dict[str, int] = {}

    def _new(self) -> int:
        u = self.next_uuid
        self.next_uuid += 1
        self.rep.tracks += 1
        return u

    def process(self, pid: int, comm: str) -> int:
        u = self.procs.get(pid)
        if u is None:
            u = self.procs[pid] = self._new()
            self.w.add(track_descriptor(u, process=(pid, comm)))
        return u

    def thread(self, pid: int, tid: int, comm: str) -> int:
        u = self.threads.get(tid)
        if u is None:
            self.process(pid, comm)
            u = self.threads[tid] = self._new()
            self.w.add(track_descriptor(u, thread=(pid, tid, comm)))
        return u

    def device(self, dev: int, name: str) -> int:
        u = self.devices.get(dev)
        if u is None:
            u = self.devices[dev] = self._new()
            label = f"{name} ({dev_name(dev)})" if name else f"block {dev_name(dev)}"
            self.w.add(track_descriptor(u, name=label))
        return u

    def lane(self, kind: int, key: int, lane: int, parent: int, name: str) -> int:
        if kind == 0 and lane == 0:
            return parent
        u = self.lanes.get((kind, key, lane))
        if u is None:
            u = self.lanes[(kind, key, lane)] = self._new()
            self.w.add(track_descriptor(u, name=name, parent=parent))
        return u

    def named(self, name: str, parent: int | None = None, counter: bool = False) -> int:
        k = f"{parent}/{name}"
        u = self.extra.get(k)
        if u is None:
            u = self.extra[k] = self._new()
            self.w.add(track_descriptor(u, name=name, parent=parent, counter=counter))
        return u


def _interned() -> bytes:
    names = []
    for code, op in OPS.items():
        names.append((1 + code, op))
        names.append((LAYER_IID_BASE[BLOCK] + code, f"block {op}"))
        names.append((LAYER_IID_BASE[VFS] + code, f"vfs {op}"))
    interned = b"".join(f_bytes(2, f_varint(1, iid) + f_str(2, name)) for iid, name in sorted(names))
    defaults = f_bytes(59, f_varint(58, CLOCK_MONOTONIC))
    return packet(_seq(flags=1) + f_bytes(12, interned) + defaults)


def _clock_snapshot(cap: Capture, mono: int) -> bytes:
    real = int(cap.mono_to_real(np.array([mono], dtype=np.int64))[0]) if len(cap.clock_pairs()) else mono
    clocks = b"".join(
        f_bytes(1, f_varint(1, cid) + f_varint(2, ts))
        for cid, ts in ((CLOCK_MONOTONIC, mono), (CLOCK_BOOTTIME, mono), (CLOCK_REALTIME, real))
    )
    return packet(f_varint(8, mono) + f_varint(58, CLOCK_MONOTONIC) + f_varint(10, SEQ)
                  + f_bytes(6, clocks))


def _names(chunk: Chunk, col: str) -> list[str]:
    return list(chunk.dicts.get(col, [""])) if col in chunk.columns else [""]


def _iids(layer: np.ndarray, op: np.ndarray) -> np.ndarray:
    base = np.ones(len(op), dtype=np.uint8)
    base[layer == BLOCK] = LAYER_IID_BASE[BLOCK]
    base[layer == VFS] = LAYER_IID_BASE[VFS]
    return base + np.minimum(op, 39).astype(np.uint8)


def _map_tracks(keys: np.ndarray, make: Any) -> np.ndarray:
    """uuid per event from a small-int key per event, ``make(key) -> uuid`` once per key."""
    uk, inv = factorize(keys)
    table = np.array([make(int(k)) for k in uk.tolist()], dtype=np.uint64)
    return table[inv.reshape(-1)]


def export_perfetto_proto(
    cap: Capture,
    out: BinaryIO,
    sel: Selection | None = None,
    *,
    counter_ns: int = DEFAULT_COUNTER_NS,
    level: int = 1,
) -> PerfettoReport:
    """Write ``cap`` (the events ``sel`` selects) to ``out`` as a Perfetto protobuf trace."""
    sel = sel or Selection()
    rep = PerfettoReport()
    w = _Writer(out, rep, level)
    tracks = _Tracks(w, rep)
    thread_lanes, dev_lanes = Lanes(), Lanes()
    infos = [i for i in cap.chunk_infos() if i.n]
    lo = min((i.t_first for i in infos), default=0)
    hi = max((i.t_last + i.lat_max for i in infos), default=0)
    if sel.t_min is not None:
        lo = max(lo, sel.t_min)
    if sel.t_max is not None:
        hi = min(hi, sel.t_max + max((i.lat_max for i in infos), default=0))
    counters = _Counters(lo, max(hi, lo), counter_ns)
    dev_names = {int(r["dev"]): str(r.get("name", "")) for r in cap.meta("devices")
                 if isinstance(r.get("dev"), int)}
    w.raw(_interned())
    first = True
    try:
        for chunk in sel.chunks(cap, columns=["ts", "lat", "pid", "tid", "comm", "layer", "op", "dev",
                                              "link"]):
            if chunk.n == 0:
                continue
            if first:
                w.raw(_clock_snapshot(cap, int(chunk.column("ts")[0])))
                first = False
            _chunk(chunk, w, tracks, thread_lanes, dev_lanes, dev_names, counters, rep)
        if first:
            w.raw(_clock_snapshot(cap, 0))
        _counters(w, tracks, counters, dev_names, rep)
        _losses(cap, sel, w, tracks, rep)
    finally:
        w.close()
    return rep


def _chunk(chunk: Chunk, w: _Writer, tracks: _Tracks, thread_lanes: Lanes, dev_lanes: Lanes,
           dev_names: dict[int, str], counters: _Counters,
           rep: PerfettoReport) -> None:
    ts = chunk.column("ts")
    end = ts + chunk.column("lat")
    layer = chunk.column("layer")
    op = chunk.column("op")
    iid = _iids(layer, op)
    uuid = np.zeros(chunk.n, dtype=np.uint64)
    blk = layer == BLOCK
    comms = np.array(_names(chunk, "comm"), dtype=object)
    comm_codes = chunk.column("comm") if "comm" in chunk.columns else np.zeros(chunk.n, np.uint32)
    pid, tid = chunk.column("pid"), chunk.column("tid")
    # threads: lanes per tid
    th = np.flatnonzero(~blk)
    if th.size:
        t_tid = tid[th]
        lanes = thread_lanes.assign(t_tid, ts[th], end[th])
        first_of: dict[int, int] = {}

        ut, tinv = factorize(t_tid)

        def make_thread(key: int) -> int:
            t, lane = int(ut[key >> 8]), key & 0xFF
            i = first_of.get(t)
            if i is None:
                i = first_of[t] = int(th[int(np.argmax(t_tid == t))])
            comm = str(comms[int(comm_codes[i])])
            parent = tracks.thread(int(pid[i]), t, comm)
            return tracks.lane(0, t, lane, parent, comm)

        uuid[th] = _map_tracks((tinv << 8) | lanes, make_thread)
    bk = np.flatnonzero(blk)
    if bk.size:
        dev = chunk.column("dev")[bk]
        lanes = dev_lanes.assign(dev, ts[bk], end[bk])

        ud, dinv = factorize(dev)

        def make_dev(key: int) -> int:
            d, lane = int(ud[key >> 8]), key & 0xFF
            name = dev_names.get(d, "")
            parent = tracks.device(d, name)
            return tracks.lane(1, d, lane, parent, name or dev_name(d))

        uuid[bk] = _map_tracks((dinv << 8) | lanes, make_dev)
        for d in np.unique(dev).tolist():
            m = dev == d
            counters.add(int(d), ts[bk][m], end[bk][m])
    link = chunk.columns.get("link")  # flows only when the capture has link ids
    flow = (link != 0) if link is not None and link.dtype.kind in "ui" else None
    if link is not None and flow is not None and flow.any():
        plain = np.flatnonzero(~flow)
        linked = np.flatnonzero(flow)
        w.add_rows(slice_packets(ts[plain], uuid[plain], iid[plain], SLICE_BEGIN))
        w.add_rows(slice_packets(ts[linked], uuid[linked], iid[linked], SLICE_BEGIN, flow=link[linked]))
        rep.flows += int(linked.size)
    else:
        w.add_rows(slice_packets(ts, uuid, iid, SLICE_BEGIN))
    w.add_rows(slice_packets(end, uuid, iid, SLICE_END))
    rep.events += chunk.n
    rep.slices += chunk.n
    rep.packets += 2 * chunk.n


def _counters(w: _Writer, tracks: _Tracks, counters: _Counters, dev_names: dict[int, str],
              rep: PerfettoReport) -> None:
    """IOPS (completions per second, per interval) and queue depth (requests in flight at each
    interval's start) per device."""
    for d in counters.dev:
        edges, iops, depth = counters.samples(d)
        parent = tracks.device(d, dev_names.get(d, ""))
        iops_u = tracks.named("IOPS", parent, counter=True)
        qd_u = tracks.named("queue depth", parent, counter=True)
        for t, c, q in zip(edges.tolist(), iops.tolist(), depth.tolist()):
            w.add(counter_event(t, iops_u, int(c)))
            w.add(counter_event(t, qd_u, int(q)))
            rep.counters += 2
            rep.packets += 2


def _losses(cap: Capture, sel: Selection, w: _Writer, tracks: _Tracks, rep: PerfettoReport) -> None:
    for loss in cap.losses():
        if not is_real_loss(loss.kind) or not loss.count:
            continue
        if sel.t_max is not None and loss.t_first >= sel.t_max:
            continue
        if sel.t_min is not None and loss.t_last < sel.t_min:
            continue
        u = tracks.named("losses")
        w.add(instant_event(loss.t_first, u, f"lost {loss.count} events ({loss.kind}, cpu {loss.cpu})"))
        rep.instants += 1
        rep.packets += 1


def iter_packets(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(field number, payload) of the length-delimited fields of a message (for tests/tools)."""
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        num, wt = key >> 3, key & 7
        if wt == 2:
            n, pos = _read_varint(data, pos)
            yield num, data[pos : pos + n]
            pos += n
        elif wt == 0:
            _, pos = _read_varint(data, pos)
        elif wt == 1:
            pos += 8
        elif wt == 5:
            pos += 4
        else:
            raise ValueError(f"wire type {wt}")


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    v = shift = 0
    while True:
        b = data[pos]
        pos += 1
        v |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return v, pos
