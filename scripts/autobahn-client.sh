#!/usr/bin/env bash
# Autobahn|Testsuite (wstest fuzzingserver) against the client mode:
# `websocksy connect URL --from mirror://`, one process per case.
#
# Usage:
#   scripts/autobahn-client.sh                build, run the cases, summarise
#   scripts/autobahn-client.sh --tls          the same over wss:// (a throwaway
#                                             certificate made with openssl,
#                                             which websocksy verifies with
#                                             --ca); reports in
#                                             reports/autobahn-client-wss/
#   scripts/autobahn-client.sh --cases '1.*,2.*'   a subset (same as AUTOBAHN_CASES)
#   scripts/autobahn-client.sh --summary      only summarise the last run's
#                                             report again (with --tls: the wss one)
#   scripts/autobahn-client.sh --check        only tell whether wstest and Python 3's
#                                             websockets are installed (exit 3 if not)
#   scripts/autobahn-client.sh --install      install wstest (as scripts/autobahn.sh --install)
#
# How: wstest -m fuzzingserver listens on 127.0.0.1 on a port chosen at run
# time (another one if it was taken meanwhile); the number of cases comes
# from its /getCaseCount; then for each case N one
#   websocksy connect "ws://127.0.0.1:PORT/runCase?case=N&agent=websocksy" \
#       --from mirror:// --max-message-size 64M
# runs until the server ends the case; then /updateReports writes the
# report. The case count and the report are asked for by
# scripts/autobahn/fuzzingserver.py (Python 3 `websockets`), not by
# websocksy, so they do not depend on the client under test.
#
# Environment:
#   AUTOBAHN_CASES         comma-separated case patterns; default: the list in
#                          scripts/autobahn/fuzzingserver.json (1-7, 9, 10: all but
#                          the compression cases 12/13)
#   AUTOBAHN_STRICT_CLOSE  default 1: a close-behavior deviation (UNCLEAN, WRONG
#                          CODE, FAILED BY CLIENT) fails the run like a FAILED
#                          case, as in scripts/autobahn.sh. 0: only report them.
#   AUTOBAHN_TIMEOUT       seconds the whole run may take (default 1200)
#   AUTOBAHN_CASE_TIMEOUT  seconds one case's websocksy may take (default 60)
#   WSTEST                 wstest to use (default: $(pyenv root)/versions/2.7.18/bin/wstest)
#   WEBSOCKSY_BIN          binary to test (default: build target/release/websocksy)
#   PYTHON3                Python 3 with websockets (default: python3)
#
# Reports: reports/autobahn-client/ (index.html, index.json, one report per
# case, spec.json, wstest.log; websocksy.log: every case's log after a
# "== case N (ID)" line; exits.txt: "N ID STATUS" per case).
#
# Exit status: 0 no case FAILED; 1 some case FAILED, had a close deviation
# (see AUTOBAHN_STRICT_CLOSE) or is missing from the report, or websocksy
# hung (case timeout), crashed, panicked or exited with a status other than
# 0 or 1 in some case; 2 the run itself broke (also: a binary without the
# connect mode); 3 wstest or Python 3's websockets is not installed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TAG=autobahn-client
# shellcheck source=scripts/autobahn/common.sh
. "$ROOT/scripts/autobahn/common.sh"
OUT="$ROOT/reports/autobahn-client"
CASES="${AUTOBAHN_CASES:-}"
MODE=run
TLS=0
PY3="${PYTHON3:-python3}"
HELPER="$HERE/fuzzingserver.py"
CASE_TIMEOUT="${AUTOBAHN_CASE_TIMEOUT:-60}"
RUN_TIMEOUT="${AUTOBAHN_TIMEOUT:-1200}"
AGENT=websocksy

while [ $# -gt 0 ]; do
    case "$1" in
        --check) MODE=check ;;
        --tls) TLS=1 ;;
        --install) MODE=install ;;
        --summary) MODE=summary ;;
        --cases) [ $# -ge 2 ] || { echo "$TAG: --cases needs a value" >&2; exit 2; }; CASES="$2"; shift ;;
        --cases=*) CASES="${1#--cases=}" ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "$TAG: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done

SCHEME=ws
if [ "$TLS" = 1 ]; then
    OUT="$ROOT/reports/autobahn-client-wss"
    SCHEME=wss
fi
PROBLEMS=0

if [ "$MODE" = summary ]; then
    [ -f "$OUT/casecount" ] || { echo "$TAG: no earlier run in ${OUT#"$ROOT"/}" >&2; exit 2; }
    summarise_and_exit "$OUT" fuzzingserver "$(cat "$OUT/casecount")"
fi

# Python 3's websockets, for the case count and the report (--check says
# so too; --install leaves it to pip, as .ci/run does).
need_py3() {
    "$PY3" -c 'import websockets.asyncio.client' >/dev/null 2>&1 && return 0
    echo "$TAG: $PY3 has no websockets package: $PY3 -m pip install websockets==17.4 (.ci/run does)" >&2
    exit 3
}
[ "$MODE" != check ] || need_py3
check_or_install "$MODE"
wstest_ok || { install_hint; exit 3; }
need_py3
release_binary

# Without a client mode there is nothing to run: say so once, not per case.
HELP="$("$WEBSOCKSY_BIN" connect --help 2>&1 || true)"
case "$HELP" in
    *--from*) ;;
    *)
        echo "$TAG: $WEBSOCKSY_BIN has no client mode ('websocksy connect --help' shows no --from)" >&2
        exit 2
        ;;
esac

mkdir -p "$OUT"
find "$OUT" -mindepth 1 -delete
LOG="$OUT/websocksy.log"
: >"$LOG"
: >"$OUT/exits.txt"
TLS_ARGS=()
CA_ARG=()
SPEC_TLS=()
if [ "$TLS" = 1 ]; then
    throwaway_cert "$OUT"
    TLS_ARGS=(--ca "$OUT/cert.pem")
    CA_ARG=("$OUT/cert.pem")
    SPEC_TLS=("$OUT/key.pem" "$OUT/cert.pem")
fi

WSTEST_PID=""
cleanup() {
    if [ -n "$WSTEST_PID" ] && kill -0 "$WSTEST_PID" 2>/dev/null; then
        kill -KILL "$WSTEST_PID" 2>/dev/null || true
    fi
}
trap cleanup EXIT

# wstest on a port that was free a moment ago; if another process takes it
# first, wstest cannot bind it and exits: try another. Ready means it
# accepts connections and answers getCaseCount.
COUNT=""
for attempt in 1 2 3 4 5; do
    PORT="$("$PY3" "$HELPER" free-port)"
    BASE="$SCHEME://127.0.0.1:$PORT"
    SELECTED="$("$PY" "$HERE/autobahn.py" spec "$HERE/fuzzingserver.json" "$OUT/spec.json" \
        "$BASE" "$OUT" "$CASES" ${SPEC_TLS[@]+"${SPEC_TLS[@]}"})"
    # -u: unbuffered, so wstest.log shows its case list at once.
    (cd "$OUT" && exec "$PY" -u "$WSTEST" -m fuzzingserver -s "$OUT/spec.json" --webport 0) \
        >"$OUT/wstest.log" 2>&1 &
    WSTEST_PID=$!
    set +e
    "$PY3" "$HELPER" wait-listen "$PORT" 30 "$WSTEST_PID"
    LISTEN_RC=$?
    if [ "$LISTEN_RC" -eq 0 ]; then
        COUNT="$("$PY3" "$HELPER" count "$BASE" ${CA_ARG[@]+"${CA_ARG[@]}"} 2>>"$OUT/wstest.log")"
    fi
    set -e
    [ -n "$COUNT" ] && kill -0 "$WSTEST_PID" 2>/dev/null && break
    COUNT=""
    kill -KILL "$WSTEST_PID" 2>/dev/null || true
    wait "$WSTEST_PID" 2>/dev/null || true
    WSTEST_PID=""
    if grep -qiE 'address already in use|CannotListenError' "$OUT/wstest.log"; then
        echo "$TAG: port $PORT was taken (attempt $attempt), trying another"
        continue
    fi
    echo "$TAG: wstest fuzzingserver did not come up on port $PORT; ${OUT#"$ROOT"/}/wstest.log:" >&2
    tail -n 30 "$OUT/wstest.log" >&2
    exit 2
done
if [ -z "$COUNT" ]; then
    echo "$TAG: no free port for wstest after 5 attempts" >&2
    exit 2
fi
echo "$COUNT" >"$OUT/casecount"
echo "$TAG: wstest fuzzingserver (pid $WSTEST_PID) on $BASE, $COUNT cases: $SELECTED"

# The case ids in run order, from wstest's "Cases = [...]" line (for the
# logs only; "?" if it is not there).
IDS=()
read -r -a IDS <<<"$(sed -n "s/^Cases = \[\(.*\)\]\$/\1/p" "$OUT/wstest.log" | head -n 1 | tr -d "',")" || true

START=$SECONDS
for N in $(seq 1 "$COUNT"); do
    ID="${IDS[$((N - 1))]:-?}"
    if [ $((SECONDS - START)) -ge "$RUN_TIMEOUT" ]; then
        echo "$TAG: the run took over $RUN_TIMEOUT s; stopped before case $N ($ID)" >&2
        PROBLEMS=1
        break
    fi
    if ! kill -0 "$WSTEST_PID" 2>/dev/null; then
        echo "$TAG: wstest died before case $N ($ID); last lines of ${OUT#"$ROOT"/}/wstest.log:" >&2
        tail -n 30 "$OUT/wstest.log" >&2
        exit 2
    fi
    echo "== case $N ($ID)" >>"$LOG"
    set +e
    timeout -k 5 "$CASE_TIMEOUT" "$WEBSOCKSY_BIN" connect "$BASE/runCase?case=$N&agent=$AGENT" \
        --from mirror:// --max-message-size 64M ${TLS_ARGS[@]+"${TLS_ARGS[@]}"} \
        </dev/null >>"$LOG" 2>&1
    RC=$?
    set -e
    echo "$N $ID $RC" >>"$OUT/exits.txt"
    if [ "$N" = 1 ] && [ "$RC" = 2 ]; then
        # A usage error: every case would repeat it.
        echo "$TAG: websocksy connect refused its arguments (exit 2):" >&2
        tail -n 5 "$LOG" >&2
        exit 2
    fi
    case "$RC" in
        0 | 1) ;;
        124 | 137)
            echo "$TAG: case $N ($ID): websocksy still running after $CASE_TIMEOUT s, killed" >&2
            PROBLEMS=1
            ;;
        *)
            if [ "$RC" -gt 128 ]; then
                echo "$TAG: case $N ($ID): websocksy died of signal $((RC - 128))" >&2
            else
                echo "$TAG: case $N ($ID): websocksy exited with status $RC" >&2
            fi
            PROBLEMS=1
            ;;
    esac
done
echo "$TAG: $COUNT cases in $((SECONDS - START)) s; exit statuses in ${OUT#"$ROOT"/}/exits.txt"

set +e
"$PY3" "$HELPER" update "$BASE" "$AGENT" ${CA_ARG[@]+"${CA_ARG[@]}"} 2>>"$OUT/wstest.log"
UPDATE_RC=$?
set -e
kill -TERM "$WSTEST_PID" 2>/dev/null || true
wait "$WSTEST_PID" 2>/dev/null || true
WSTEST_PID=""
if [ "$UPDATE_RC" -ne 0 ]; then
    echo "$TAG: updateReports failed; last lines of ${OUT#"$ROOT"/}/wstest.log:" >&2
    tail -n 30 "$OUT/wstest.log" >&2
    exit 2
fi

if grep -q 'panicked' "$LOG"; then
    echo "$TAG: websocksy panicked:" >&2
    grep -B1 -A3 'panicked' "$LOG" >&2
    PROBLEMS=1
fi

summarise_and_exit "$OUT" fuzzingserver "$COUNT"
