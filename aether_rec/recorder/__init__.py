"""The recorder: bcc discovery, kernel headers, tracefs, feature probes, the BPF program,
the transport and the recording session. ``record`` and ``doctor`` are the entry points.

Where each rule lives (a recording flows options -> plan -> session):

- ``options``: RecordOptions, what was asked; ``check()`` validates it in one pass.
- ``plan``: ``prepare`` (environment, layers, transport, program) -> Prepared;
  ``make_transport``; ``capture_header``, what each file declares.
- ``session``: Session, the poll loop, signals, the privilege drop; ``record``.
- ``launcher``: the traced command, held until attached.
- ``rotation``: the recording's files (OutputFile, RotatingOutput, footer statistics);
  ``output``: stdout and the numbered file names.
- ``losses``: LossLedger, the one place loss blocks are written.
- ``status``: the live status line, RecordResult and the summary line.
- environment: ``bccload``, ``headers``, ``tracefs``, ``privileges``, ``probes``
  (what each layer can hook), ``doctor``.
- kernel side: ``program`` (the BPF text and cflags), ``loader``/``loaded``/``filters``
  (the helper that compiles and attaches), ``bpfsys``, ``transport``/``perfbuf``/
  ``ringbuf`` (events out of the kernel), ``procinfo`` (names from /proc).
"""

from __future__ import annotations

from aether_rec.recorder.doctor import doctor
from aether_rec.recorder.options import RecordOptions
from aether_rec.recorder.plan import prepare
from aether_rec.recorder.session import record
from aether_rec.recorder.status import RecordResult

__all__ = ["RecordOptions", "RecordResult", "doctor", "prepare", "record"]
