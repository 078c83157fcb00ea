#!/usr/bin/env bash
# Install what the tests need (scripts/setup.sh) and run them: lint, types, pytest.
# Kernel tests need root; with CI set, a kernel test that would skip fails instead.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check aether_rec tests bench
.venv/bin/mypy aether_rec
exec .venv/bin/pytest -q -p no:cacheprovider "$@"
