#!/usr/bin/env bash
# The main job, end to end: set up, record a few seconds of real I/O on this machine with
# a built-in workload, then summarise the capture. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
out=${1:-demo.aio}
.venv/bin/aether-rec record -o "$out" --force --duration 5s -- .venv/bin/python -m aether_rec.workload --seconds 4
.venv/bin/aether-rec stats "$out"
