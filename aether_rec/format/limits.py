"""Limits every reader enforces, so that a hostile capture cannot exhaust memory or time.

These numbers are part of the format (format/SPEC.md, section "Limits"); a writer never
produces anything larger, and a reader refuses anything larger as damage.
"""

from __future__ import annotations

MAX_BLOCK_PAYLOAD = 64 * 1024 * 1024  # bytes, any block
MAX_CHUNK_RAW = 256 * 1024 * 1024  # bytes, a decompressed chunk body
MAX_CHUNK_EVENTS = 4 * 1024 * 1024  # events in one chunk
MAX_CHUNK_DECODED = 512 * 1024 * 1024  # bytes, a chunk's decoded columns (n * sum of widths)
MAX_COLUMNS = 256  # columns in one chunk
MAX_DICT_ENTRIES = 1024 * 1024  # strings in one column dictionary
MAX_STR_LEN = 4096  # characters (code points), one dictionary string (PATH_MAX)
MAX_META_ROWS = 1024 * 1024  # rows in one metadata block
MAX_INDEX_ENTRIES = 1024 * 1024  # rows in each list of the index (msgpack max_array_len)
MAX_SUMMARY_PIDS = 32  # pids listed in a chunk summary (beyond: none listed)
MAX_MERGE_BYTES = 64 * 1024 * 1024  # bytes held back to put overlapping chunks in time order
# since 1.2: the chunk histograms of the index and the SUMM block (format/summary.py)
MAX_HIST_RAW = 4 * 1024 * 1024  # bytes: one histogram element, decompressed
MAX_HIST_GROUPS = 65536  # groups in one histogram element
MAX_HIST_BUCKETS = 32768  # buckets of one group, and the largest first bucket index
MAX_HIST_PRECISION = 10  # largest bucket precision P (its buckets stay below MAX_HIST_BUCKETS)
MAX_SUMM_PAYLOAD = 16 * 1024 * 1024  # bytes: a SUMM block's payload
MAX_SUMM_LOSSES = 65536  # (cpu, kind) rows of a SUMM block
MAX_SUMM_CLOCK = 4096  # clock pairs in a SUMM block (a writer with more leaves them out)
RESYNC_READ_FACTOR = 2  # after damage, blocks read in search of the next good one: this x file size

# msgpack decode limits, used for every msgpack document in a capture.
MSGPACK_LIMITS = dict(
    max_str_len=MAX_STR_LEN * 4,
    max_bin_len=MAX_BLOCK_PAYLOAD,
    max_array_len=MAX_DICT_ENTRIES,
    max_map_len=4096,
    max_ext_len=0,
)


def msgpack_limits(size: int) -> dict[str, int]:
    """MSGPACK_LIMITS for a document of ``size`` bytes: no container can hold more items
    than the document has bytes, so a declared length beyond that is refused before
    anything is allocated for it."""
    return {k: min(v, size) if k != "max_ext_len" else v for k, v in MSGPACK_LIMITS.items()}
