"""``verify``: the whole-file check behind ``info --verify``. Every block's framing and
checksum, every chunk decoded and its summary checked against its events, and the index
checked entry by entry against the blocks it describes (a reader trusts the index only
as far as it reads; verify reads everything)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aether_rec.errors import DamagedCaptureError, LimitError
from aether_rec.format.blocks import CHNK, LOSS, META, TRLR, Damage, scan, unpack
from aether_rec.format.chunk import Chunk, ChunkInfo
from aether_rec.format.columns import decode_chunk, read_summary
from aether_rec.format.records import Loss, Meta, MetaRef
from aether_rec.format.summary import CaptureSummary, LatencyHist

if TYPE_CHECKING:
    from aether_rec.format.reader import Capture


def verify_capture(cap: Capture) -> list[str]:
    """The problems of ``cap`` (empty: the file is sound), its reader's warnings included."""
    problems: list[str] = []
    cap._f.seek(cap._first_block)
    n_chunks = 0
    found: dict[int, ChunkInfo] = {}  # CHNK offset -> what its own summary says
    found_losses: dict[int, Loss] = {}
    found_metas: dict[int, str] = {}
    found_hists: dict[int, bytes | None] = {}  # CHNK offset -> its histograms as a writer encodes them
    for item in scan(cap._f, cap._first_block, seekable=True):
        if isinstance(item, Damage):
            problems.append(f"offset {item.offset}: {item.reason}")
            continue
        if item.type == CHNK:
            n_chunks += 1
            try:
                summary, _ = read_summary(item.payload)
                info = ChunkInfo.from_summary(summary, item.offset, item.length)
                found[item.offset] = info
                chunk = decode_chunk(item.payload, info, cap._codecs)
                wrong = _summary_mismatch(summary, chunk)
                if wrong:
                    problems.append(f"offset {item.offset}: chunk summary disagrees with data ({wrong})")
                try:
                    found_hists[item.offset] = LatencyHist.from_chunk(chunk).encode()
                except LimitError:
                    found_hists[item.offset] = None  # too large to store: a writer writes none
            except DamagedCaptureError as exc:
                problems.append(f"offset {item.offset}: {exc}")
        elif item.type == TRLR and item.offset + item.length != cap.size:
            problems.append(f"offset {item.offset}: trailer is not at the end of the file")
        elif item.type == LOSS:
            try:
                found_losses[item.offset] = Loss.from_doc(unpack(item.payload, "loss block"), item.offset)
            except DamagedCaptureError as exc:
                problems.append(f"offset {item.offset}: {exc}")
        elif item.type == META:
            try:
                found_metas[item.offset] = Meta.from_doc(unpack(item.payload, "meta block")).table
            except DamagedCaptureError as exc:
                problems.append(f"offset {item.offset}: {exc}")
    if not cap.has_index:
        problems.append("no index (recorder killed or file cut); `aether-rec recover` adds one")
    else:
        problems += _index_problems(cap.chunk_infos(), found, n_chunks, cap.losses(), found_losses,
                                    cap._metas or [], found_metas)
        problems += _hist_problems(cap.chunk_infos(), found_hists)
        problems += _summ_problems(cap)
    problems += [w for w in cap.warnings if w not in problems]
    return problems


def _summary_mismatch(summary: dict[str, Any], chunk: Chunk) -> str:
    """The summary fields (of those present) that the chunk's events contradict."""
    if not chunk.n:
        return ""
    real = chunk.compute_info().summary()
    return ", ".join(k for k in ("n", "t0", "t1", "lat_max", "layers", "ops", "pid_min", "pid_max", "pids")
                     if k in summary and summary[k] != real[k])


def _hist_problems(infos: list[ChunkInfo], found: dict[int, bytes | None]) -> list[str]:
    """Index entries whose latency histograms (1.2) disagree with their chunk's events."""
    problems = []
    for info in infos:
        if info.hist is None or info.offset not in found:  # (an unreadable chunk: reported)
            continue
        if found[info.offset] is None:
            problems.append(f"index entry for the chunk at offset {info.offset}: latency histograms "
                            "where the limits allow none")
            continue
        try:
            ok = LatencyHist.decode(info.hist).encode() == found[info.offset]
        except DamagedCaptureError as exc:
            problems.append(f"index entry for the chunk at offset {info.offset}: {exc}")
            continue
        if not ok:
            problems.append(f"index entry for the chunk at offset {info.offset}: latency histograms "
                            "disagree with its events")
    return problems


def _summ_problems(cap: Capture) -> list[str]:
    """Where the SUMM block (1.2) disagrees with the index (itself checked against the blocks)."""
    summ = cap.summary()
    if summ is None:
        return []
    want = rebuild_summary(cap.chunk_infos(), cap.losses())
    if want is None:
        return []
    said, is_ = summ.to_doc(), want.to_doc()
    wrong = [k for k in ("chunks", "events", "t_first", "t_last", "compressed", "raw", "losses")
             if said[k] != is_[k]]
    if summ.hist_chunks == want.hist_chunks:
        if said["hist"] != is_["hist"]:
            wrong.append("hist")
    elif want.hist_chunks:  # (none in the index: a writer left them out of a too long index)
        wrong.append("hist_chunks")
    if not wrong:
        return []
    return [f"summary block at offset {summ.offset} disagrees with the index ({', '.join(wrong)})"]


def _index_problems(
    infos: list[ChunkInfo], found: dict[int, ChunkInfo], n_chunks: int,
    losses: list[Loss], found_losses: dict[int, Loss], metas: list[MetaRef], found_metas: dict[int, str],
) -> list[str]:
    """Where the index disagrees with the blocks it describes."""
    problems = []
    if n_chunks != len(infos):
        problems.append(f"index lists {len(infos)} chunks, file has {n_chunks}")
    for info in infos:
        own = found.get(info.offset)
        if own is None:
            problems.append(f"index entry for offset {info.offset}: no readable chunk there")
            continue
        said, is_ = info.to_row()[:12], own.to_row()[:12]
        if info.raw == 0:  # an 11-element entry: raw unknown (SPEC section 9)
            said[11] = is_[11]
        if said != is_:
            fields = [name for name, a, b in zip(ChunkInfo.ROW_FIELDS, said, is_) if a != b]
            problems.append(f"index entry for the chunk at offset {info.offset} disagrees with its "
                            f"summary ({', '.join(fields)})")
    for loss in losses:
        got = found_losses.get(loss.offset)
        if got is None or got.to_doc() != loss.to_doc():
            problems.append(f"index: the loss entry for offset {loss.offset} disagrees with the block")
    if len(losses) != len(found_losses):
        problems.append(f"index lists {len(losses)} loss blocks, file has {len(found_losses)}")
    for ref in metas:
        if found_metas.get(ref.offset) != ref.table:
            problems.append(f"index: the metadata entry for offset {ref.offset} disagrees with the block")
    return problems


def rebuild_summary(infos: list[ChunkInfo], losses: list[Loss]) -> CaptureSummary | None:
    """The SUMM a writer would write for these index entries (clock and stats aside); None
    when an entry's histograms are undecodable."""
    s = CaptureSummary()
    try:
        for i in infos:
            s.add_chunk(i.n, i.t_first, i.t_last, i.length, i.raw,
                        None if i.hist is None else LatencyHist.decode(i.hist))
    except DamagedCaptureError:
        return None
    for x in losses:
        s.add_loss(x.cpu, x.kind, x.count, x.t_first, x.t_last)
    return s
