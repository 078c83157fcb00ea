# ruff: noqa: E501 (the mutant table reads best one mutant a line)
"""Planted mutants: small, plausible bugs in format/ and ops/ that the test suite must
catch. Each mutant replaces one exact piece of source text; the runner applies it to a
copy of the checkout (never to the working tree), runs the tests named for it, and
counts the mutant killed when they fail. Deterministic: the tests it runs use fixed
seeds and explicit examples, so a mutant is killed on every run or on none.

    .venv/bin/python tests/mutants.py               # every mutant, prints the score
    .venv/bin/python tests/mutants.py --list        # what is planted
    .venv/bin/python tests/mutants.py -k pushdown,clock   # mutants whose id contains one of these

Exit status 0 when the score reaches --min-score (default 0.9), 1 otherwise; a mutant
whose source text is not found (the code moved) is an error, so the list cannot rot
quietly. tests/test_mutants.py checks that every mutant still applies.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutant:
    id: str
    file: str  # relative to the repository
    old: str  # exact text, must occur exactly once
    new: str
    tests: tuple[str, ...]  # pytest node ids or files that must catch it


# tests/test_offline_trust.py without its slow Ctrl-C tests (they send signals to big runs)
T_TRUST = tuple(f"tests/test_offline_trust.py::test_{name}" for name in (
    "source_matches_the_name_stats_and_replay_show", "until_is_exclusive_and_since_inclusive",
    "sets_on_one_byte_columns_include_code_zero", "rows_name_errors_by_errno",
    "text_replay_places_losses_between_the_events_around_them",
    "machine_readable_replay_and_export_say_events_were_lost", "verify_checks_the_index_against_the_chunks",
    "info_counts_the_events_it_can_read", "info_shows_how_a_derived_capture_was_made",
    "json_output_is_valid_whatever_the_header_holds", "a_deeply_nested_header_is_written_back_pruned",
    "u64_timestamps_never_crash_or_wrap", "a_chunk_entirely_past_2_63_is_summarised",
    "a_capture_without_clock_mapping_is_a_bad_file_for_merge", "a_strict_failure_leaves_no_output",
    "an_interrupted_filter_leaves_nothing", "no_tool_writes_over_its_input", "export_follows_the_output_rule",
    "times_follow_one_rule", "replay_several_files_merges_them_on_the_wall_clock",
    "export_and_filter_take_several_files"))
T_PUSH = ("tests/test_ops_pushdown.py",)
T_EXPR = ("tests/test_ops_expr.py", "tests/test_ops_pushdown.py", *T_TRUST)
T_STATS = ("tests/test_ops_stats.py", "tests/test_stats_answers.py")
T_MERGE = ("tests/test_ops_merge.py", "tests/test_clock.py")
T_FORMAT = ("tests/test_format_blocks.py", "tests/test_format_reader.py", "tests/test_format_roundtrip.py",
            "tests/test_format_damage.py", "tests/test_vectors.py", "tests/test_spec_decoder.py")
T_CLOCK = ("tests/test_clock.py",)
T_RECOVER = ("tests/test_format_recover.py",)
T_SUMM = ("tests/test_format_summary.py",)
T_SAFETY = ("tests/test_safety.py",)
T_REPLAY = ("tests/test_ops_replay_export.py", "tests/test_clock.py", *T_TRUST)
T_FILTER = ("tests/test_ops_stats.py", "tests/test_ops_pushdown.py", "tests/test_ops_cli.py", *T_TRUST)

NODES = "aether_rec/ops/expr/nodes.py"
STATS = "aether_rec/ops/stats.py"
COLUMNS = "aether_rec/format/columns.py"
BLOCKS = "aether_rec/format/blocks.py"
READER = "aether_rec/format/reader.py"
CHUNK = "aether_rec/format/chunk.py"
CLOCK = "aether_rec/format/clock.py"

MUTANTS: tuple[Mutant, ...] = (
    # -- index push-down (ops/expr/nodes.py) --------------------------------------------
    Mutant("pushdown-ge-as-gt", NODES, "    return hi >= v, lo >= v\n", "    return hi > v, lo >= v\n", T_PUSH),
    Mutant("pushdown-ge-must", NODES, "    return hi >= v, lo >= v\n", "    return hi >= v, lo >= v - 1\n", T_PUSH),
    Mutant("pushdown-le-as-lt", NODES, "        return lo <= v, hi <= v\n", "        return lo < v, hi <= v\n", T_PUSH),
    Mutant("pushdown-gt-as-ge", NODES, "        return hi > v, lo > v\n", "        return hi > v, lo >= v\n", T_PUSH),
    Mutant("pushdown-lt-can", NODES, "        return lo < v, hi < v\n", "        return lo < v - 1, hi < v\n", T_PUSH),
    Mutant("pushdown-eq-can", NODES, "        return lo <= v <= hi, lo == hi == v\n",
           "        return lo < v <= hi, lo == hi == v\n", T_PUSH),
    Mutant("pushdown-ne-must", NODES, "        return not (lo == hi == v), v < lo or v > hi\n",
           "        return not (lo == hi == v), v <= lo or v > hi\n", T_PUSH),
    Mutant("pushdown-end-range", NODES, "            hi = None if t_last is None or lat_max is None else t_last + lat_max",
           "            hi = None if t_last is None or lat_max is None else t_last", T_PUSH),
    Mutant("pushdown-not-swaps", NODES, "        return not must, not can\n", "        return not can, not must\n", T_EXPR),
    Mutant("pushdown-or-must", NODES, "            must |= cm\n", "            must &= cm\n", T_EXPR),
    Mutant("compare-out-of-range", NODES, '                "<": not below,\n', '                "<": below,\n', T_EXPR),
    Mutant("inset-small-lut", NODES, "            lut[[v for v in vals if 0 <= v < 256]] = True",
           "            lut[[v for v in vals if 0 < v < 256]] = True", T_EXPR),
    # -- stats (ops/stats.py) -----------------------------------------------------------
    Mutant("stats-queue-unqueued", STATS, "        if queued.all():\n            acc.queue.add(qb)\n",
           "        if True:\n            acc.queue.add(qb)\n", T_STATS),
    Mutant("stats-interval-errors", STATS, "                acc.iv_errors[k0] = acc.iv_errors.get(k0, 0) + int(e0)",
           "                acc.iv_errors[k0] = acc.iv_errors.get(k0, 0)", T_STATS),
    Mutant("stats-interval-errors-one", STATS, "            acc.iv_errors[k0] = acc.iv_errors.get(k0, 0) + n_err",
           "            acc.iv_errors[k0] = acc.iv_errors.get(k0, 0)", T_STATS),
    Mutant("stats-group-errors", STATS,
           "            errs = np.bincount(ids[err], minlength=ug.size).tolist() if n_err else [0] * ug.size",
           "            errs = np.bincount(ids, minlength=ug.size).tolist() if n_err else [0] * ug.size", T_STATS),
    Mutant("stats-group-errors-sorted", STATS, "        grp.errors += int(np.count_nonzero(err[sel]))",
           "        grp.errors += int(np.count_nonzero(err))", T_STATS),
    Mutant("stats-layer-op-group-errors", STATS, "        grp.errors += acc.lo_errors.get(k, 0)",
           "        grp.errors += sum(acc.lo_errors.values())", T_STATS),
    Mutant("stats-dense-bucket-shift", "aether_rec/ops/histogram.py", "        cell += idx\n",
           "        cell += idx + 1\n", T_STATS),
    Mutant("stats-service", STATS, "        acc.service.add(lb - np.minimum(qb, lb))", "        acc.service.add(lb)", T_STATS),
    Mutant("stats-top-order", STATS, "        elif item > acc.top[0]:", "        elif item < acc.top[0]:", T_STATS),
    Mutant("stats-span-end", STATS, "    last_end = end_times(ts, lat).max()", "    last_end = ts.max()", T_STATS),
    Mutant("stats-errnos", STATS, "        e = (-result[err]).astype(np.int64)", "        e = (result[err]).astype(np.int64)",
           T_STATS),
    # -- merge (ops/merge.py) -----------------------------------------------------------
    Mutant("merge-watermark-max", "aether_rec/ops/merge.py", "        watermark = min(open_ends) if open_ends else None",
           "        watermark = max(open_ends) if open_ends else None", T_MERGE),
    Mutant("merge-dedupe-off", "aether_rec/ops/merge.py", "            if key in seen:\n",
           "            if False:\n", T_MERGE),
    Mutant("merge-shift-sign", "aether_rec/ops/merge.py", "            inp.shift = domain_offset[inp.index] - ref_dom",
           "            inp.shift = ref_dom - domain_offset[inp.index]", T_MERGE),
    # -- recover / copy (format/copy.py) --------------------------------------------------
    Mutant("recover-drops-stats", "aether_rec/format/copy.py",
           "                report.index_stats = stats if isinstance(stats, dict) else report.index_stats",
           "                report.index_stats = None", T_RECOVER),
    Mutant("recover-drops-losses", "aether_rec/format/copy.py",
           '                writer.write_loss(Loss.from_doc(unpack(item.payload, "loss block"), item.offset))',
           "                pass", T_RECOVER),
    # -- framing and limits (format/blocks.py) -------------------------------------------
    Mutant("checked-int-floats", BLOCKS, "    if type(v) is not int or not -(1 << 63) <= v < (1 << 64):",
           "    if not isinstance(v, (int, float)) or not -(1 << 63) <= v < (1 << 64):", T_FORMAT),
    Mutant("checked-int-range", BLOCKS, "    if type(v) is not int or not -(1 << 63) <= v < (1 << 64):",
           "    if type(v) is not int or not -(1 << 63) <= v <= (1 << 64):", T_FORMAT),
    Mutant("block-crc-unchecked", BLOCKS, "    if crc != zlib.crc32(payload, zlib.crc32(head)):",
           "    if False:", T_FORMAT),
    Mutant("block-total-unchecked", BLOCKS, "    if total != length + BLOCK_OVERHEAD:\n", "    if False:\n", T_FORMAT),
    Mutant("trailer-magic-unchecked", BLOCKS, "    return int(offset) if magic == TRAILER_MAGIC else None",
           "    return int(offset)", T_FORMAT),
    Mutant("preamble-major", BLOCKS, "    if major > VERSION_MAJOR:", "    if major > VERSION_MAJOR + 1:", T_FORMAT),
    # -- column coding (format/columns.py) -------------------------------------------------
    Mutant("delta-first", COLUMNS, "        out[1:] += out[0]\n", "", T_FORMAT),
    Mutant("for-width", COLUMNS, "        if max_value < (1 << (8 * w)):", "        if max_value <= (1 << (8 * w)):",
           T_FORMAT),
    Mutant("dict-codes-bound", COLUMNS, "        if n and (not words or top >= len(words)):",
           "        if n and (not words or top > len(words)):", T_FORMAT),
    Mutant("summary-negative", COLUMNS, "        if type(v) is not int or v < 0:", "        if type(v) is not int:",
           T_FORMAT),
    Mutant("codec-size-check", "aether_rec/format/codecs.py", "        if declared != raw_size:", "        if declared is None:", T_FORMAT),
    # -- reader (format/reader.py) ----------------------------------------------------------
    Mutant("reader-np-load-pickle", READER, "from aether_rec.format.records import Loss, Meta, MetaRef\n",
           "from aether_rec.format.records import Loss, Meta, MetaRef\nimport numpy as np\n_unsafe = np.load  "
           "# np.load(f, allow_pickle=True)\n_load = lambda f: np.load(f, allow_pickle=True)  # noqa: E731\n",
           T_SAFETY),
    Mutant("reader-imports-numpy", READER, "from aether_rec.format.records import Loss, Meta, MetaRef\n",
           "from aether_rec.format.records import Loss, Meta, MetaRef\nimport numpy as np  # noqa: F401\n",
           ("tests/test_cli_startup.py",)),
    Mutant("summary-decodes-with-numpy", "aether_rec/format/summary.py",
           '                LatencyHist.decode(doc.get("hist"), arrays=False), offset=offset)',
           '                LatencyHist.decode(doc.get("hist")), offset=offset)', ("tests/test_cli_startup.py",)),
    Mutant("reader-ordered-watermark", "aether_rec/format/chunk.py", "        watermark = infos[i + 1].t_first if i + 1 < len(infos) else None",
           "        watermark = infos[i + 1].t_last if i + 1 < len(infos) else None", T_FORMAT),
    Mutant("reader-index-bounds", READER, "            if not self._first_block <= where < offset or where + length > offset:",
           "            if not self._first_block <= where < offset:", T_FORMAT),
    Mutant("reader-chunk-count", "aether_rec/format/partial.py", "    if chunk.n != info.n:", "    if False:",
           T_FORMAT),
    # -- chunks and summaries (format/chunk.py) -------------------------------------------
    Mutant("summary-pids-limit", CHUNK, "            pids=[int(p) for p in upids] if len(upids) <= MAX_SUMMARY_PIDS else None,",
           "            pids=[int(p) for p in upids[:MAX_SUMMARY_PIDS]],", T_PUSH + T_FORMAT),
    Mutant("summary-lat-max", CHUNK, '            lat_max=int(self.column("lat").max()),',
           '            lat_max=int(self.column("lat").mean()),', T_PUSH),
    # -- clock (format/clock.py) ---------------------------------------------------------------
    Mutant("clock-round-floor", CLOCK, "    return (2 * num + den) // (2 * den)", "    return num // den", T_CLOCK),
    Mutant("clock-hold-last", CLOCK, "        if mono >= monos[-1]:\n            return offs[-1]",
           "        if mono >= monos[-1]:\n            return offs[0]", T_CLOCK),
    Mutant("clock-vector-float", CLOCK, "        out: np.ndarray = offs[seg] + (2 * num + den) // (2 * den)",
           "        out: np.ndarray = offs[seg] + np.rint(num / den).astype(np.int64)", T_CLOCK),
    # -- selection and filter (ops/window.py, ops/filter.py) ---------------------------------
    Mutant("selection-must-match", "aether_rec/ops/window.py",
           "        if f.is_trivial or (chunk.info is not None and f.must_match(chunk.info)):",
           "        if f.is_trivial or (chunk.info is not None and f.can_match(chunk.info)):", T_FILTER),
    Mutant("selection-until-inclusive", "aether_rec/ops/window.py",
           "            f = f & Filter(f\"ts < {self.t_max}\", Compare(\"ts\", \"<\", self.t_max))",
           "            f = f & Filter(f\"ts < {self.t_max}\", Compare(\"ts\", \"<=\", self.t_max))", T_FILTER),
    Mutant("filter-loss-window", "aether_rec/ops/window.py", "            self.t_max is None or loss.t_first < self.t_max)",
           "            True)", T_FILTER),
    # -- replay / rows (ops/rows.py, ops/replay.py) -------------------------------------------
    Mutant("rows-errno-sign", "aether_rec/ops/colfmt.py",
           "    return by_value(result, lambda r: _errno.errorcode.get(-r, str(-r)) if r < 0 else None)",
           "    return by_value(result, lambda r: _errno.errorcode.get(r, str(r)) if r < 0 else None)",
           ("tests/test_rows_fast.py::test_row_columns_name_errors_by_errno", *T_REPLAY)),
    Mutant("allocator-heap-trimmed", "aether_rec/allocator.py", "    return bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1)",
           "    return True", ("tests/test_allocator.py",)),
    Mutant("allocator-for-record-only", "aether_rec/cli/__init__.py", "        if name not in OWN_ALLOCATOR:",
           "        if name in OWN_ALLOCATOR:", ("tests/test_allocator.py",)),
    Mutant("rows-tile-restarts", "aether_rec/ops/colfmt.py", "            dst[...] = item[first:first + k]",
           "            dst[...] = item[:k]", ("tests/test_rows_fast.py::test_rows_assembled_in_tiles_are_the_same",)),
    Mutant("replay-loss-order", "aether_rec/ops/replay.py", "        while li < len(losses) and losses[li].t_first <= int(ts[0]):",
           "        while False:", T_REPLAY + ("tests/test_offline_trust.py::test_paced_replay_places_losses_between_chunks",)),
    Mutant("replay-loss-in-chunk", "aether_rec/ops/replay.py",
           '                cuts.append((int(np.searchsorted(ts, losses[li].t_first, side="left")), losses[li]))',
           "                cuts.append((chunk.n, losses[li]))", T_TRUST),
    # -- recording truth (issue 9): fd names, storage-first stats, the page cache --------------------
    Mutant("fdtable-dup-reversed", "aether_rec/recorder/fdtable.py",
           "                self._set(pid, fd, ts, self.at(pid, arg, ts))",
           "                self._set(pid, arg, ts, self.at(pid, fd, ts))", ("tests/test_recorder_fdtable.py",)),
    Mutant("fdtable-relative-no-cwd", "aether_rec/recorder/fdtable.py",
           "            base = self._cwd.get(pid) or self._read_cwd(pid)", '            base = ""',
           ("tests/test_recorder_fdtable.py",)),
    Mutant("fdtable-fork-no-copy", "aether_rec/recorder/fdtable.py",
           "                self._fork(pid, arg, ts)", "                pass", ("tests/test_recorder_fdtable.py",)),
    Mutant("stats-storage-all", STATS, "    storage = np.isin(kinds, STORAGE_CODES)",
           "    storage = np.ones(len(kinds), dtype=bool)", T_STATS),
    Mutant("stats-eagain-error", STATS, "    would_block = result == -EAGAIN",
           "    would_block = result == -_errno.EINTR", T_STATS),
    Mutant("stats-page-cache-writes", STATS, "        reads = np.isin(op, READ_OPS) & (layer == SYSCALL) & (result > 0)",
           "        reads = (layer == SYSCALL) & (result > 0)", T_STATS),
    # -- the issue-12 fixes (tests/test_offline_trust.py) ----------------------------------------
    Mutant("stats-max-groups-first-seen", STATS, "                    key=lambda g: (-g.events, str(g.key)))",
           "                    key=lambda g: 0)", T_STATS),
    Mutant("stats-by-op-no-layer", STATS, '    if "op" in cols and "layer" not in cols:', '    if False:', T_STATS),
    Mutant("selection-source", "aether_rec/ops/window.py", '        if self.source is None or "source" in chunk.columns or "source" not in f.fields():',
           "        if True:", T_TRUST),
    Mutant("output-not-atomic", "aether_rec/format/output.py", "            os.unlink(self.tmp)\n        except OSError:\n            pass\n",
           "            pass\n        except OSError:\n            pass\n", T_TRUST),
    Mutant("output-same-file", "aether_rec/format/output.py", "        if same:\n", "        if False:\n", T_TRUST),
    Mutant("output-symlink", "aether_rec/format/output.py", "    if stat.S_ISLNK(st.st_mode):", "    if False:", T_TRUST + ("tests/test_recorder_safety.py",)),
    Mutant("verify-index-fields", "aether_rec/format/verify.py", "        if said != is_:", "        if said[:2] != is_[:2]:", T_TRUST),
    Mutant("info-counts-index", "aether_rec/ops/info.py", "    n = index_n if index_only else sum(per.values())",
           "    n = index_n", T_TRUST),
    Mutant("time-local", "aether_rec/ops/units.py", "        dt = dt.replace(tzinfo=_dt.timezone.utc)", "        dt = dt.astimezone()", T_TRUST),
    Mutant("time-bare-seconds", "aether_rec/ops/units.py", "        if not unit:\n            raise UsageError(f\"time {text!r} needs a unit",
           "        if False:\n            raise UsageError(f\"time {text!r} needs a unit", T_TRUST),
    Mutant("json-nan", "aether_rec/ops/text.py", "        return obj if math.isfinite(obj) else None", "        return obj", T_TRUST),
    Mutant("end-wraps", "aether_rec/ops/expr/fields.py", "    if wrapped.any():\n", "    if False:\n", T_TRUST),
    Mutant("follow-header-pair-only", "aether_rec/ops/replay.py", "                pairs += pairs_of({}, item.rows)", "                pass", T_CLOCK),
    Mutant("merge-clock-rows", "aether_rec/ops/merge.py", "        if clock_rows:\n            w.write_meta(\"clock\", clock_rows)",
           "        if False:\n            w.write_meta(\"clock\", clock_rows)", T_CLOCK),
    Mutant("strict-copy-path", "aether_rec/ops/filter.py", '                cap.warn(f"chunk at offset {info.offset} is damaged; skipped it")',
           '                cap.warnings.append(f"chunk at offset {info.offset} is damaged; skipped it")', T_TRUST),
    Mutant("leave-trusts-is-alive", "aether_rec/console.py", "    if all(t is threading.main_thread() for t in threading.enumerate()):",
           "    if not any(t.is_alive() for t in threading.enumerate() if t is not threading.main_thread()):",
           ("tests/test_console.py",)),
    # format 1.2: index histograms and the SUMM block
    Mutant("hist-count-off-by-one", "aether_rec/format/histfill.py", "            int(counts_g[k]), int(sums[k]),",
           "            int(counts_g[k]) + (k == 0), int(sums[k]),", T_SUMM),
    Mutant("hist-last-bucket-dropped", "aether_rec/format/histfill.py", "        rows = [per[k, int(first[k]): int(last[k]) + 1].astype(np.int64) for k in range(g)]",
           "        rows = [per[k, int(first[k]): max(int(first[k]) + 1, int(last[k]))].astype(np.int64) for k in range(g)]", T_SUMM),
    Mutant("hist-errors-count-eagain", "aether_rec/format/histfill.py", "    err = (result < 0) & (result != -EAGAIN)",
           "    err = result < 0", T_SUMM),
    Mutant("summ-ignores-a-layer", "aether_rec/format/summary.py", "        if hist is not None:\n            self.hist_chunks += 1\n            self.hist.merge(hist)",
           "        if hist is not None:\n            self.hist_chunks += 1\n            self.hist.merge(LatencyHist(hist.precision, {k: g for k, g in hist.groups.items() if k >> 16 != 2}))", T_SUMM),
    Mutant("summ-loss-span-counts-empty", "aether_rec/format/summary.py", "        if count:\n            lt.t_first",
           "        if True:\n            lt.t_first", T_SUMM),
    Mutant("summ-crc-not-checked", "aether_rec/format/summary.py", "                if block.type != SUMM:",
           "                if block.type not in (SUMM, b\"XTRA\"):", T_SUMM),
    Mutant("summ-consistency-unchecked", "aether_rec/format/summary.py", "        if s.complete and s.hist.total != s.events:",
           "        if False:", T_SUMM),
    Mutant("from-index-keeps-pipes", "aether_rec/ops/stats_index.py", "            if not opts.all_fds and fdkind not in STORAGE_FD_KINDS:",
           "            if not opts.all_fds and fdkind > 8:", T_SUMM),
    Mutant("from-index-skips-chunks-without", "aether_rec/ops/stats_index.py", "    if missing:\n        for chunk",
           "    if False:\n        for chunk", T_SUMM),
    Mutant("info-summary-when-incomplete", "aether_rec/ops/info.py", "    if summ is not None and not summ.complete:",
           "    if False:", T_SUMM),
    Mutant("writer-helper-hist-drops-one", "aether_rec/format/writer.py",
           "        return self._helper.submit(LatencyHist.from_chunk, chunk).result",
           "        return self._helper.submit(LatencyHist.from_chunk, chunk.take(slice(1, chunk.n))).result",
           ("tests/test_format_summary.py::test_histograms_built_beside_the_encoding_are_the_same",)),
    Mutant("copy-drops-histograms", "aether_rec/format/writer.py", "        if self._summary is not None and info.hist is None and hist is None and not tried:\n",
           "        if False:\n", T_SUMM),
    # the recorder's consumer (issue 13): unit-tested pieces of the kernel-record path
    Mutant("distinct-trusts-the-sample", "aether_rec/format/chunk.py", "    return cand if covered.all() else None",
           "    return cand", ("tests/test_recorder_units.py",)),
    Mutant("attach-task-hooks-last", "aether_rec/recorder/bpfsys.py",
           "    return 0 if fn_name.startswith(_ATTACH_FIRST) else 1", "    return 1 if fn_name.startswith(_ATTACH_FIRST) else 0",
           ("tests/test_recorder_units.py",)),
    Mutant("split-narrow-field-offset", "aether_rec/recorder/columnar.py", "[(off % 8) // size :: 8 // size]",
           "[0 :: 8 // size]", ("tests/test_recorder_units.py",)),
    Mutant("fd-groups-first-only", "aether_rec/recorder/procinfo.py",
           "        return [np.flatnonzero(keys == k) for k in uniq]", "        return [np.flatnonzero(keys == k)[:1] for k in uniq]",
           ("tests/test_recorder_units.py",)),
    Mutant("hist-groups-errors-unmasked", "aether_rec/format/histfill.py",
           "errors = np.bincount(inv[err], minlength=g)", "errors = np.bincount(inv, minlength=g)", T_SUMM),
    Mutant("ring-lone-record-is-a-view", "aether_rec/recorder/ringbuf.py",
           'self._parts.append(events.copy(order="C")', "self._parts.append(np.ascontiguousarray(events)",
           ("tests/test_recorder_ring.py",)),
    Mutant("stats-merge-drops-errnos", STATS,
           "    _add_counts(into.errnos, part.errnos)", "    pass",
           ("tests/test_ops_stats.py",)),
    Mutant("stats-merge-group-errors", STATS,
           "        g.errors += grp.errors", "        g.errors += 0",
           ("tests/test_ops_stats.py",)),
    Mutant("writer-empties-callers-batches", "aether_rec/format/writer.py",
           "        if chunk is batch:  # ours to empty", "        if False:  # ours to empty",
           ("tests/test_recorder_ring.py",)),
)


def _apply(root: Path, m: Mutant) -> None:
    path = root / m.file
    text = path.read_text(encoding="utf-8")
    count = text.count(m.old)
    if count != 1:
        raise SystemExit(f"mutant {m.id}: its text occurs {count} times in {m.file} (the code moved?)")
    path.write_text(text.replace(m.old, m.new), encoding="utf-8")


def check_applies(m: Mutant, root: Path = REPO) -> str:
    """'' when mutant ``m`` applies to the checkout at ``root``, else why not."""
    text = (root / m.file).read_text(encoding="utf-8")
    n = text.count(m.old)
    missing = [t for t in m.tests if not (root / t.split("::")[0]).exists()
               or ("::" in t and f"def {t.split('::')[1]}(" not in (root / t.split("::")[0]).read_text())]
    if n != 1:
        return f"{m.id}: text occurs {n} times in {m.file}"
    if missing:
        return f"{m.id}: no such test {missing}"
    return ""


def _copy(dst: Path) -> None:
    for name in ("aether_rec", "bpf", "tests", "format", "docs", "fixtures", "pyproject.toml", "README.md"):
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dst / name, ignore=shutil.ignore_patterns("__pycache__", ".hypothesis"))
        elif src.exists():
            shutil.copy2(src, dst / name)


def _pytest(root: Path, tests: tuple[str, ...], timeout: float) -> tuple[bool, float]:
    env = dict(os.environ, PYTHONPATH=str(root), PYTHONDONTWRITEBYTECODE="1")
    env.pop("CI", None)
    t0 = time.monotonic()
    try:
        r = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-m", "not kernel", "-p", "no:cacheprovider",
                            *tests], cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
        ok = r.returncode == 0
    except subprocess.TimeoutExpired:
        ok = False  # a hang is a failure the suite reports (pytest itself would be killed by CI)
    return ok, time.monotonic() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-k", default="", help="only mutants whose id contains this (comma list: any of them)")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--min-score", type=float, default=0.9)
    ap.add_argument("--timeout", type=float, default=300.0)
    args = ap.parse_args()
    chosen = [m for m in MUTANTS if any(k in m.id for k in args.k.split(","))]
    if args.list:
        for m in chosen:
            print(f"{m.id:28} {m.file}  ->  {' '.join(m.tests)}")
        return 0
    problems = [p for p in (check_applies(m) for m in chosen) if p]
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="aether-mutants-") as tmp:
        base = Path(tmp) / "base"
        base.mkdir()
        _copy(base)
        probe = subprocess.run([sys.executable, "-c", "import aether_rec; print(aether_rec.__file__)"],
                               env=dict(os.environ, PYTHONPATH=str(base)), capture_output=True, text=True,
                               cwd=base)
        if not probe.stdout.startswith(str(base)):
            print(f"the copy is not the one imported: {probe.stdout or probe.stderr}", file=sys.stderr)
            return 2
        all_tests = tuple(sorted({t for m in chosen for t in m.tests}))
        ok, secs = _pytest(base, all_tests, args.timeout * 3)  # and an error (a test not found) is no kill
        if not ok:
            print("the unmutated tests fail: fix them first", file=sys.stderr)
            return 2
        print(f"baseline: {len(all_tests)} test files pass unmutated ({secs:.0f} s)")
        killed, survived = [], []
        for m in chosen:
            work = Path(tmp) / "m"
            shutil.copytree(base, work)
            try:
                _apply(work, m)
                passed, secs = _pytest(work, m.tests, args.timeout)
            finally:
                shutil.rmtree(work)
            (survived if passed else killed).append(m)
            print(f"{'SURVIVED' if passed else 'killed  '} {m.id:28} {m.file} ({secs:.1f} s)", flush=True)
    score = len(killed) / len(chosen) if chosen else 1.0
    print(f"\nmutation score: {len(killed)}/{len(chosen)} killed = {score:.0%}")
    if survived:
        print("survivors: " + ", ".join(m.id for m in survived))
    return 0 if score >= args.min_score else 1


if __name__ == "__main__":
    sys.exit(main())
