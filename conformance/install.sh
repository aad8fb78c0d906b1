#!/usr/bin/env bash
# Installs the Autobahn|Testsuite (`wstest`) into a Python virtualenv and ports it to Python 3.
#
#   bash conformance/install.sh [VENV]     (default: $AUTOBAHN_VENV, else .autobahn-venv at the
#                                           repository root)
#
# The suite's last release on PyPI (autobahntestsuite 25.10.1) is Python 2 code. This script
# installs it, pinned, beside the Python 3 packages it needs (requirements.txt), then runs
# port.py over the pristine files. It is idempotent: when the venv already holds a port made by
# this very port.py and requirements.txt, it does nothing and needs no network. When either
# file changed, the two ported packages are reinstalled pristine from PyPI and ported again.
#
# Environment:
#   AUTOBAHN_PYTHON=python3.11   the interpreter that makes the venv: Python 3.11 or 3.12, where the pins
#                       are tested (the port needs lib2to3, which Python 3.13 removed).
#                       Default: python3.11 if it runs, else python3.12, else python3.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
VENV="${1:-${AUTOBAHN_VENV:-$ROOT/.autobahn-venv}}"
SUITE_PIN="autobahntestsuite==25.10.1"
LIB_PIN="autobahn==0.10.9"
# Does $1 run, and is it a Python 3.11 or 3.12 (with lib2to3)?
can_port() { "$1" -W ignore -c 'import sys, lib2to3.refactor; sys.exit(sys.version_info[:2] not in ((3, 11), (3, 12)))' >/dev/null 2>&1; }
if [ -z "${AUTOBAHN_PYTHON:-}" ]; then
    AUTOBAHN_PYTHON=python3
    for candidate in python3.11 python3.12; do
        if can_port "$candidate"; then AUTOBAHN_PYTHON=$candidate; break; fi
    done
fi

say() { printf '[conformance/install] %s\n' "$*"; }
die() { printf '[conformance/install] ERROR: %s\n' "$*" >&2; exit 1; }

# The stamp: a hash of the port's inputs, then the SHA-256 of every file the port wrote. A venv
# is up to date when the inputs are the same and the ported files are still as written (a pip
# reinstall of either package, say, puts pristine files back).
stamp="$VENV/conformance-port.stamp"
inputs="inputs $(cat "$HERE/port.py" "$HERE/requirements.txt" | sha256sum | cut -d' ' -f1) $SUITE_PIN"
site_packages() { "$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'; }
if [ -x "$VENV/bin/wstest" ] && [ "$(head -n 1 "$stamp" 2>/dev/null)" = "$inputs" ] &&
    (cd "$(site_packages)" && tail -n +2 "$stamp" | sha256sum --quiet --status -c -); then
    say "up to date: $VENV/bin/wstest"
    exit 0
fi

can_port "$AUTOBAHN_PYTHON" || die "$AUTOBAHN_PYTHON does not run, or is not Python 3.11 or 3.12 with lib2to3 (3.13 removed it): set AUTOBAHN_PYTHON"

if [ ! -x "$VENV/bin/python" ]; then
    say "creating venv $VENV with $("$AUTOBAHN_PYTHON" --version 2>&1)"
    "$AUTOBAHN_PYTHON" -m venv "$VENV"
fi
py="$VENV/bin/python"
pip=("$py" -m pip install --quiet --disable-pip-version-check --no-input)

say "pip install -r conformance/requirements.txt"
"${pip[@]}" -r "$HERE/requirements.txt"

# Always port pristine files: drop whatever an earlier port left (pip removes only the files
# it installed, not the helper module port.py adds), then reinstall both packages as published.
rm -f "$stamp"
site="$(site_packages)"
"$py" -m pip uninstall --quiet --yes autobahntestsuite autobahn >/dev/null 2>&1 || true
rm -rf "$site/autobahntestsuite" "$site/autobahn"
say "pip install --no-deps $SUITE_PIN $LIB_PIN (pristine)"
"${pip[@]}" --no-deps --force-reinstall "$SUITE_PIN" "$LIB_PIN"

say "porting to Python 3 (conformance/port.py)"
"$py" "$HERE/port.py"

# A smoke test of the port: wstest starts and the case list loads.
"$VENV/bin/wstest" --autobahnversion >/dev/null || die "the ported wstest does not start"
"$py" -W ignore -c 'from autobahntestsuite.case import Cases; assert len(Cases) == 517, len(Cases)' \
    || die "the ported suite does not list its cases"
{
    echo "$inputs"
    cd "$site" && find autobahntestsuite autobahn -name '*.py' | LC_ALL=C sort | xargs sha256sum
} >"$stamp"
say "ok: $VENV/bin/wstest"
