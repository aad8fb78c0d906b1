#!/usr/bin/env bash
# Installs the real peers wsworker is tested against: Python websockets and h2 (in a venv),
# Node ws + playwright-core (npm ci from the committed lockfile), Debian's Chromium, and
# Debian's redis-server (the Hub's engine tests start their own on free ports).
# Idempotent; meant for CI (root, CI=true, no stdin) and for developers.
#
#   bash interop/setup.sh
#
# Environment:
#   INTEROP_VENV=DIR        the Python venv (default: .interop-venv at the repo root)
#   INTEROP_NO_BROWSER=1    skip the Chromium install
#   PYTHON=python3          the interpreter that makes the venv
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${INTEROP_VENV:-$ROOT/.interop-venv}"
PYTHON="${PYTHON:-python3}"
NODE_DIR="$ROOT/interop/node"
CHROMIUM=/usr/bin/chromium

say() { printf '[interop/setup] %s\n' "$*"; }
die() { printf '[interop/setup] ERROR: %s\n' "$*" >&2; exit 1; }
trap 'die "failed at line $LINENO: $BASH_COMMAND"' ERR

export DEBIAN_FRONTEND=noninteractive
APT_UPDATED=0
apt_install() {
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install $* by hand"
    [ "$(id -u)" = 0 ] || die "need root to apt-get install $*"
    if [ "$APT_UPDATED" = 0 ]; then
        say "apt-get update"
        apt-get update -q </dev/null
        APT_UPDATED=1
    fi
    say "apt-get install -y $*"
    apt-get install -y -q "$@" </dev/null
}

# --- Python: websockets and h2 in a venv -----------------------------------------
command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found"
say "python: $("$PYTHON" --version 2>&1) ($(command -v "$PYTHON"))"
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
    say "venv $VENV exists, reusing it"
else
    rm -rf "$VENV"
    if ! "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1; then
        say "$PYTHON cannot make venvs (no ensurepip); installing python3-venv"
        apt_install python3-venv
    fi
    say "creating venv $VENV"
    "$PYTHON" -m venv "$VENV"
fi
say "pip install -r interop/python/requirements.txt"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    -r "$ROOT/interop/python/requirements.txt"
say "python peers: websockets $("$VENV/bin/python" -c 'import websockets; print(websockets.__version__)'), h2 $("$VENV/bin/python" -c 'import h2; print(h2.__version__)')"

# --- Node: ws + playwright-core from the lockfile ---------------------------------
# Use the machine's Node (>= 20); never install Debian's nodejs (18) over it.
command -v node >/dev/null 2>&1 || die "node not found (Node.js >= 20 is needed; do not use Debian's nodejs 18)"
command -v npm >/dev/null 2>&1 || die "npm not found"
node_major="$(node -p 'process.versions.node.split(".")[0]')"
[ "$node_major" -ge 20 ] || die "Node.js $(node --version) is too old: playwright-core needs >= 20"
say "node $(node --version), npm $(npm --version)"
say "npm ci in interop/node"
(
    cd "$NODE_DIR"
    # playwright-core downloads no browser, but make sure nothing tries to.
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error </dev/null
)
say "node peers: ws $(node -p 'require("'"$NODE_DIR"'/node_modules/ws/package.json").version'), playwright-core $(node -p 'require("'"$NODE_DIR"'/node_modules/playwright-core/package.json").version')"

# --- Chromium (Debian's; playwright's browser downloads do not work here) ---------
if [ "${INTEROP_NO_BROWSER:-}" = 1 ]; then
    say "INTEROP_NO_BROWSER=1: skipping Chromium (browser_check.mjs will not run)"
else
    if [ -x "$CHROMIUM" ]; then
        say "chromium present at $CHROMIUM"
    else
        apt_install chromium
        [ -x "$CHROMIUM" ] || die "apt-get installed chromium but $CHROMIUM is missing"
    fi
    # The Debian wrapper script prints a harmless shell warning on stderr on some machines.
    say "browser: $("$CHROMIUM" --version 2>/dev/null)"
fi

# --- redis-server (Debian's, 7.0): the cluster tests start their own, one per test ---
# Only the binary is used: each test runs `redis-server --port P` itself and stops it. If
# the package's postinst starts a system instance on 6379 too, no test talks to it.
if command -v redis-server >/dev/null 2>&1; then
    say "redis-server present at $(command -v redis-server)"
else
    apt_install redis-server
    command -v redis-server >/dev/null 2>&1 || die "apt-get installed redis-server but it is not on PATH"
fi
say "redis: $(redis-server --version)"

say "done (venv: $VENV)"
