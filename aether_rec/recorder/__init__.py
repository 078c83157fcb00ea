"""The recorder: bcc discovery, kernel headers, tracefs, feature probes, the BPF program,
the transport and the recording session. ``record`` and ``doctor`` are the entry points."""

from __future__ import annotations

from aether_rec.recorder.doctor import doctor
from aether_rec.recorder.options import RecordOptions
from aether_rec.recorder.plan import prepare
from aether_rec.recorder.session import record
from aether_rec.recorder.status import RecordResult

__all__ = ["RecordOptions", "RecordResult", "doctor", "prepare", "record"]
