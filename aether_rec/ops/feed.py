"""What ``replay`` and ``export`` read: the selected events of one capture, or of several
merged on the wall clock (``replay a.aio b.aio``, as tshark users expect), with their
losses, one clock mapping and a source name."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from aether_rec.format.chunk import Chunk
from aether_rec.format.clock import ClockMap
from aether_rec.format.reader import Capture
from aether_rec.format.records import Loss
from aether_rec.ops.merge import MergeInput, dedupe, merge_chunks, plan
from aether_rec.ops.window import Selection, source_name


@dataclass
class Feed:
    clock: ClockMap  # of the (merged) timeline
    source: str  # for events without a source column
    losses: list[Loss]  # on the timeline, by time
    text: str | None  # the selection, as text
    _chunks: Callable[[], Iterator[Chunk]]

    def chunks(self) -> Iterator[Chunk]:
        """The selected events in time order, chunk by chunk."""
        return self._chunks()


def single(cap: Capture, sel: Selection) -> Feed:
    return Feed(cap.clock_map(), source_name(cap), sorted(cap.losses(), key=lambda x: x.t_first),
                sel.text, lambda: sel.chunks(cap))


def merged(caps: Sequence[Capture], labels: Sequence[str], sels: Sequence[Selection]) -> Feed:
    """Several captures as one, aligned on wall-clock time as ``merge`` aligns them (a
    ``source`` column says where each event came from); each capture's selection is
    applied on its own clock."""
    inputs = [MergeInput(cap, label) for cap, label in zip(caps, labels)]
    ref = plan(inputs)
    keep = dedupe(inputs)
    allowed = [{i.offset for i in infos if sel.can_match(i)} for infos, sel in zip(keep, sels)]
    base = inputs[ref].shift
    pairs = [p for inp in inputs if inp.shift == base for p in inp.cap.clock_map().shifted(inp.shift)]
    losses = sorted((loss.moved(inp.shift) for inp in inputs for loss in inp.cap.losses()),
                    key=lambda x: x.t_first)
    texts = {s.text for s in sels}
    return Feed(ClockMap(pairs), "", losses, texts.pop() if len(texts) == 1 else None,
                lambda: merge_chunks(inputs, allowed, True, sels))
