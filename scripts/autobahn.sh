#!/usr/bin/env bash
# Autobahn|Testsuite (wstest fuzzingclient) against `websocksy -c host=mirror://`.
#
# Usage:
#   scripts/autobahn.sh                  build, run the cases, summarise
#   scripts/autobahn.sh --tls            the same over wss:// (a throwaway
#                                        certificate made with openssl; wstest
#                                        0.8.2 does not verify it); reports
#                                        in reports/autobahn-wss/
#   scripts/autobahn.sh --cases '1.*,2.*'   a subset (same as AUTOBAHN_CASES)
#   scripts/autobahn.sh --check          only tell whether wstest is installed (exit 3 if not)
#   scripts/autobahn.sh --install        install wstest into pyenv's Python 2.7.18 (idempotent)
#
# Environment:
#   AUTOBAHN_CASES         comma-separated case patterns; default: the list in
#                          scripts/autobahn/fuzzingclient.json (1-7, 9, 10: all but
#                          the compression cases 12/13)
#   AUTOBAHN_STRICT_CLOSE  default 1: a close-behavior deviation (FAILED BY CLIENT:
#                          the server left the TCP close to the client; UNCLEAN;
#                          WRONG CODE) fails the run like a FAILED case, although
#                          Autobahn's own report does not count it as FAILED.
#                          0: only report them.
#   AUTOBAHN_TIMEOUT       seconds wstest may take (default 1200)
#   WSTEST                 wstest to use (default: $(pyenv root)/versions/2.7.18/bin/wstest)
#   WEBSOCKSY_BIN          bridge binary to test (default: build target/release/websocksy)
#
# Reports: reports/autobahn/ (index.html, index.json, one report per case,
# spec.json, websocksy.log, wstest.log).
#
# The client mode has its own run against wstest's fuzzingserver:
# scripts/autobahn-client.sh (the two share scripts/autobahn/common.sh).
#
# Exit status: 0 no case FAILED; 1 some case FAILED or had a close deviation
# (see AUTOBAHN_STRICT_CLOSE), or the bridge crashed or did not exit cleanly;
# 2 the run itself broke; 3 wstest is not installed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TAG=autobahn
# shellcheck source=scripts/autobahn/common.sh
. "$ROOT/scripts/autobahn/common.sh"
OUT="$ROOT/reports/autobahn"
CASES="${AUTOBAHN_CASES:-}"
MODE=run
TLS=0

while [ $# -gt 0 ]; do
    case "$1" in
        --check) MODE=check ;;
        --tls) TLS=1 ;;
        --install) MODE=install ;;
        --cases) [ $# -ge 2 ] || { echo "autobahn: --cases needs a value" >&2; exit 2; }; CASES="$2"; shift ;;
        --cases=*) CASES="${1#--cases=}" ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "autobahn: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done

check_or_install "$MODE"
wstest_ok || { install_hint; exit 3; }
release_binary

SCHEME=ws
TLS_ARGS=()
if [ "$TLS" = 1 ]; then
    OUT="$ROOT/reports/autobahn-wss"
    SCHEME=wss
fi
mkdir -p "$OUT"
find "$OUT" -mindepth 1 -delete
LOG="$OUT/websocksy.log"
if [ "$TLS" = 1 ]; then
    throwaway_cert "$OUT"
    TLS_ARGS=(--cert "$OUT/cert.pem" --key "$OUT/key.pem")
fi

BRIDGE=""
cleanup() {
    if [ -n "$BRIDGE" ] && kill -0 "$BRIDGE" 2>/dev/null; then
        kill -KILL "$BRIDGE" 2>/dev/null || true
    fi
}
trap cleanup EXIT

"$WEBSOCKSY_BIN" -l 127.0.0.1 -p 0 -c host=mirror:// ${TLS_ARGS[@]+"${TLS_ARGS[@]}"} 2>"$LOG" &
BRIDGE=$!

# Readiness is the log line, not a guess: poll it, bounded at 10 s.
PORT=""
for _ in $(seq 1 200); do
    PORT="$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$LOG" | head -n 1)"
    [ -n "$PORT" ] && break
    kill -0 "$BRIDGE" 2>/dev/null || break
    sleep 0.05
done
if [ -z "$PORT" ]; then
    echo "autobahn: websocksy did not report its port; its log:" >&2
    cat "$LOG" >&2
    exit 2
fi
echo "autobahn: websocksy (pid $BRIDGE) listening on $SCHEME://127.0.0.1:$PORT"

SELECTED="$("$PY" "$HERE/autobahn.py" spec "$HERE/fuzzingclient.json" "$OUT/spec.json" \
    "$SCHEME://127.0.0.1:$PORT" "$OUT" "$CASES")"
echo "autobahn: running wstest -m fuzzingclient, cases: $SELECTED"
START=$SECONDS
set +e
(cd "$OUT" && timeout "${AUTOBAHN_TIMEOUT:-1200}" "$WSTEST" -m fuzzingclient -s "$OUT/spec.json") >"$OUT/wstest.log" 2>&1
WSTEST_RC=$?
set -e
echo "autobahn: wstest finished in $((SECONDS - START)) s (exit $WSTEST_RC)"

PROBLEMS=0
if [ "$WSTEST_RC" -ne 0 ]; then
    echo "autobahn: wstest failed (exit $WSTEST_RC); last lines of ${OUT#"$ROOT"/}/wstest.log:" >&2
    tail -n 30 "$OUT/wstest.log" >&2
    exit 2
fi

# The bridge must have survived every case and must shut down cleanly.
if ! kill -0 "$BRIDGE" 2>/dev/null; then
    set +e; wait "$BRIDGE"; RC=$?; set -e
    echo "autobahn: websocksy died during the run (exit $RC); last log lines:" >&2
    tail -n 20 "$LOG" >&2
    PROBLEMS=1
else
    kill -TERM "$BRIDGE"
    for _ in $(seq 1 200); do
        kill -0 "$BRIDGE" 2>/dev/null || break
        sleep 0.05
    done
    if kill -0 "$BRIDGE" 2>/dev/null; then
        echo "autobahn: websocksy still running 10 s after SIGTERM" >&2
        PROBLEMS=1
    else
        set +e; wait "$BRIDGE"; RC=$?; set -e
        if [ "$RC" -ne 0 ]; then
            echo "autobahn: websocksy exited with status $RC after SIGTERM" >&2
            PROBLEMS=1
        fi
    fi
fi
kill -0 "$BRIDGE" 2>/dev/null || BRIDGE=""
if grep -q 'panicked' "$LOG"; then
    echo "autobahn: websocksy panicked:" >&2
    grep -A3 'panicked' "$LOG" >&2
    PROBLEMS=1
fi

summarise_and_exit "$OUT" fuzzingclient
