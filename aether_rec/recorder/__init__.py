"""The recorder: bcc discovery, kernel headers, tracefs, feature probes, the BPF program,
the transport and the recording session. ``record`` and ``doctor`` are the entry points."""

from __future__ import annotations

from aether_rec.recorder.doctor import doctor
from aether_rec.recorder.session import RecordOptions, RecordResult, prepare, record

__all__ = ["RecordOptions", "RecordResult", "doctor", "prepare", "record"]
