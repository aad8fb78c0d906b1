#!/usr/bin/env bash
# The Autobahn|Testsuite against wsworker as a server (`wsworker serve --mode echo`) and as a
# client (`examples/autobahn_client`), with the harness in conformance/ (nothing outside the
# repository: the suite is installed from PyPI into a venv and ported to Python 3 there).
# Fails unless every case is OK or INFORMATIONAL: NON-STRICT counts as a failure here.
#
# The two suites run side by side: each is bound by its own single-threaded Python wstest,
# so on two cores this halves the wall time.
#
# env: AUTOBAHN_VENV  the suite's venv (default .autobahn-venv at the repository root)
#      AUTOBAHN_CASES case patterns (default: 1.* to 10.*, and 12.* and 13.*, permessage-deflate,
#                     which both testees negotiate with their documented defaults)
set -euo pipefail
cd "$(dirname "$0")/.."

CASES="${AUTOBAHN_CASES:-1.*,2.*,3.*,4.*,5.*,6.*,7.*,9.*,10.*,12.*,13.*}"
export AUTOBAHN_VENV="${AUTOBAHN_VENV:-$PWD/.autobahn-venv}"
OUT="$PWD/target/autobahn"
mkdir -p "$OUT"

bash conformance/install.sh "$AUTOBAHN_VENV" >"$OUT/install.log" 2>&1 || {
    tail -20 "$OUT/install.log"
    exit 1
}
tail -n 1 "$OUT/install.log"
cargo build --release --locked -p wsworker-cli -p wsworker --bin wsworker --example autobahn_client

run() { "$AUTOBAHN_VENV/bin/python" conformance/run.py "$@"; }

# Every case OK or INFORMATIONAL: the last line must show zeros elsewhere.
check() {
    local last
    last=$(tail -n 1 "$1")
    echo "$last"
    if ! grep -Eq 'NONSTRICT=0 INFO=[0-9]+ UNIMPL=0 FAILED=0 MISSING=0$' <<<"$last"; then
        echo "autobahn: not every case is OK (see ${1%.txt}/index.html)" >&2
        return 1
    fi
}

port=$("$AUTOBAHN_VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
target/release/wsworker serve "websocket://127.0.0.1:$port" --mode echo --count 1 --log-level warn \
    >"$OUT/server-testee.log" 2>&1 &
server_pid=$!
trap 'kill -TERM "$server_pid" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
    sleep 0.1
done

rm -f "$OUT/times.txt"
started=$(date +%s)
(
    run server "ws://127.0.0.1:$port" "$OUT/server" --cases "$CASES" --strict >"$OUT/server.txt" 2>&1 || true
    echo "server suite: $(( $(date +%s) - started )) s" >>"$OUT/times.txt"
) &
server_suite=$!
(
    run client "$OUT/client" --cases "$CASES" --strict --timeout 2400 \
        -- "$PWD/target/release/examples/autobahn_client" >"$OUT/client.txt" 2>&1 || true
    echo "client suite: $(( $(date +%s) - started )) s" >>"$OUT/times.txt"
) &
client_suite=$!
wait "$server_suite" || true
wait "$client_suite" || true
kill -TERM "$server_pid" 2>/dev/null || true
wait "$server_pid" || true
trap - EXIT

cat "$OUT/server.txt" "$OUT/client.txt" "$OUT/times.txt"
status=0
check "$OUT/server.txt" || status=1
check "$OUT/client.txt" || status=1
exit "$status"
