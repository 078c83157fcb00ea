"""Long fuzz run over hostile and damaged captures (CI runs 2,000 cases in tests/test_fuzz.py).

    .venv/bin/python bench/fuzz_captures.py --cases 100000 [--seed 1] [--budget 10]
    .venv/bin/python bench/fuzz_captures.py --bombs [--heavy]
    .venv/bin/python bench/fuzz_captures.py --dump 1234 --seed 1 -o case.aio

Cases are made from the synthetic seeds, the golden vectors (format/vectors/) and the
recorded fixtures (fixtures/) by tests/fuzzing.py: bit flips, byte overwrites, numbers
in length fields, inserted and deleted bytes, truncation, splices of two captures, block
drops/repeats/swaps, and structure-aware mutations re-framed with valid checksums. Each
runs through open, chunk_infos, chunks, losses, meta, verify, info, strict open and
recover in a worker process that is killed and restarted when a case overruns
--budget seconds.

Prints: cases, clean errors (CaptureError), partial reads (read with warnings), cases
read whole, crashes (any other exception: bugs), hangs (over budget: bugs), and the
peak memory of the worker (VmHWM from /proc/self/status of the worker process, which
is fresh after exec; not ru_maxrss, which Linux carries across fork and exec). Crashes
and hangs are listed with their case number: --dump writes that case to a file.
Exit status 1 if any case crashed or hung.

--bombs runs the crafted bombs (zstd frames declaring or expanding to 10 GB, 2**32
events, 10**7 dictionary strings, 4 GB block lengths, huge and deeply nested msgpack,
zero-width column bombs, a resynchronisation storm; --heavy adds chunks overlapping in
time up to the ordered-merge limit) in one fresh process, with VmHWM after each.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]  # the fuzzer is test tooling (tests/fuzzing.py)

from fuzzing import SCRIPT, FuzzReport, FuzzRunner, default_seeds, dump_case  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--first", type=int, default=0, help="first case number")
    ap.add_argument("--budget", type=float, default=10.0, help="seconds per case before it is a hang")
    ap.add_argument("--bombs", action="store_true", help="run the crafted bombs instead")
    ap.add_argument("--heavy", action="store_true", help="with --bombs: the slow, GB-sized ones too")
    ap.add_argument("--dump", type=int, metavar="CASE", help="write case CASE to -o and exit")
    ap.add_argument("-o", "--output", default="case.aio")
    args = ap.parse_args()

    if args.dump is not None:
        desc = dump_case(args.seed, args.dump, args.output)
        print(f"case {args.dump} of seed {args.seed} ({desc}) written to {args.output}")
        return 0

    if args.bombs:
        cmd = [sys.executable, SCRIPT, "bombs"] + (["--heavy"] if args.heavy else [])
        proc = subprocess.run(cmd, capture_output=True, text=True)
        bad = proc.returncode != 0
        for line in proc.stdout.splitlines():
            r = json.loads(line)
            ok = r["kind"] in ("error", "partial") and r["hwm_kb"] < r["budget_mb"] * 1024
            bad = bad or not ok
            print(f"{'ok  ' if ok else 'FAIL'} {r['name'][:62]:62} {r['kind']:8} {r['secs']:6.2f} s "
                  f"{r['hwm_kb'] // 1024:5} MB (budget {r['budget_mb']})  {r['detail'][-100:]}")
        if proc.returncode:
            print(proc.stderr[-3000:])
        return 1 if bad else 0

    seeds = default_seeds()
    print(f"seeds: {len(seeds)} ({', '.join(n for n, _ in seeds)})")
    last = [time.monotonic()]

    def progress(rep: FuzzReport) -> None:
        if time.monotonic() - last[0] > 10:
            last[0] = time.monotonic()
            print(f"  {rep.cases} cases, {rep.counts['crash']} crashes, {rep.counts['hang']} hangs",
                  flush=True)

    with FuzzRunner(seeds, seed=args.seed, budget=args.budget) as runner:
        rep = runner.run(range(args.first, args.first + args.cases), progress)
    c = rep.counts
    print(f"cases:          {rep.cases}")
    print(f"clean errors:   {c['error']}")
    print(f"partial reads:  {c['partial']}")
    print(f"read whole:     {c['ok']}")
    print(f"crashes:        {c['crash']}")
    print(f"hangs:          {c['hang']}")
    print(f"peak memory:    {rep.peak_kb / 1024:.0f} MB (worker VmHWM)")
    print(f"time:           {rep.secs:.1f} s, slowest case {rep.slowest[0] * 1000:.0f} ms ({rep.slowest[1]})")
    for f in rep.failures[:20]:
        print(f"\n--- case {f['case']} ({f.get('desc', '')}): {f['kind']}\n{f['detail']}")
    return 1 if c["crash"] or c["hang"] else 0


if __name__ == "__main__":
    sys.exit(main())
