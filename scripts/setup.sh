#!/usr/bin/env bash
# Set up everything aether-rec needs on a Debian/Ubuntu machine (run as root):
# OS packages (bcc from the OS, never from PyPI; kernel headers; perf for the benchmark),
# then a virtualenv in .venv with the project installed in editable mode.
# Idempotent: a second run installs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "setup: $*" >&2; }

apt_install() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" != 0 ]; then
        log "need root to install: ${missing[*]} (run: sudo $0)"; exit 1
    fi
    log "installing OS packages: ${missing[*]}"
    if [ ! -f /var/lib/apt/periodic/.aether-updated ]; then
        apt-get update -qq
        mkdir -p /var/lib/apt/periodic && touch /var/lib/apt/periodic/.aether-updated
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

headers_pkg() {
    # Exact headers when the distribution has them; else the distribution's generic
    # headers (aether-rec builds a fallback tree from them, see `aether-rec doctor`).
    local rel; rel=$(uname -r)
    if [ -e "/lib/modules/$rel/build" ]; then return 0; fi
    if apt-cache show "linux-headers-$rel" >/dev/null 2>&1; then echo "linux-headers-$rel"; return 0; fi
    if grep -qi ubuntu /etc/os-release 2>/dev/null; then echo linux-headers-generic; return 0; fi
    echo "linux-headers-$(dpkg --print-architecture)"
}

if command -v apt-get >/dev/null 2>&1; then
    [ -f /var/lib/apt/periodic/.aether-updated ] || { [ "$(id -u)" = 0 ] && apt-get update -qq && mkdir -p /var/lib/apt/periodic && touch /var/lib/apt/periodic/.aether-updated; } || true
    # gcc: a test compiles a C probe of struct aether_event's layout; fio, perf, strace:
    # independent tools the kernel tests check the recorder against; chromium: the
    # report test opens `aether-rec report` pages headless
    pkgs=(python3-bpfcc python3-venv python3-pip gcc fio linux-perf strace chromium)
    hp=$(headers_pkg || true); [ -n "$hp" ] && pkgs+=("$hp")
    apt_install "${pkgs[@]}"
else
    log "not a Debian/Ubuntu system: install bcc's Python bindings and kernel headers yourself"
fi

PY=${PYTHON:-python3}
stamp=.venv/.aether-installed
want=$(cat pyproject.toml | sha1sum | cut -c1-12)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    log "creating .venv with $($PY --version 2>&1)"
    [ -x .venv/bin/python ] || "$PY" -m venv .venv
    .venv/bin/python -m pip install -q --upgrade pip >&2 2>/dev/null || true
    .venv/bin/python -m pip install -q -e ".[test,bench]" >&2
    echo "$want" > "$stamp"
fi
