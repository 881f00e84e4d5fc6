#!/usr/bin/env bash
# Benchmarks websocksy against websocat and websockify as WebSocket-to-TCP
# bridges and writes BENCHMARKS.md. Run by hand (never from cargo test):
#
#   bench/run.sh                     # everything, 3 runs each (~20-30 min)
#   RUNS=1 SCENARIOS="latency many" TOOLS=websocksy bench/run.sh
#   RUNS=1 SCENARIOS="client-latency client-upload client-download" OUT=/tmp/c.md bench/run.sh
#
# Needs: cargo; websocat (cargo install websocat --locked); websockify
# (pip install websockify). A missing peer tool is reported and skipped.
#
# Server mode (sections 1-5): a WebSocket client (wsbench) -> the bridge
# listening -> TCP peers (wsbench serve). Client mode (section 7, the
# client-* scenarios): a TCP client (wsbench tcp-*) -> the bridge's local
# TCP port -> the bridge dials WebSocket servers (wsbench ws-serve):
#   websocksy connect ws://127.0.0.1:WSPORT/ --from tcp-listen://127.0.0.1:0
#   websocat --binary -E tcp-l:127.0.0.1:PORT ws://127.0.0.1:WSPORT/
# plus the same TCP client straight to the TCP peers (the floor, "direct").
# websockify has no client mode: it is skipped in the client-* scenarios.
#
# Knobs (environment): RUNS, TOOLS, SCENARIOS (latency echo64k echo16k
# echo1k source idle many client-latency client-upload client-download),
# LAT_COUNT, LAT_WARMUP, LAT_SIZE (also the client-latency round trips),
# ECHO64K_MIB, ECHO16K_MIB, ECHO1K_MIB, SOURCE_MIB, IDLE_N,
# IDLE_N_WEBSOCKIFY, MIN_AVAIL_MIB, MANY_CONNS, QUIET_IDLE, QUIET_WAIT,
# MANY_ROUNDS, CLIENT_UPLOAD_MIB, CLIENT_DOWNLOAD_MIB, CLIENT_MSG (the
# WebSocket source's message size, bytes), CLIENT_CHUNK (the TCP client's
# write size in client-upload, bytes), OUT (report path; default
# BENCHMARKS.md at the repository root), WEBSOCKSY (a prebuilt binary to
# measure instead of building one), WSBENCH (a prebuilt wsbench, likewise;
# with both, nothing is built), KEEP_WORK=1 (keep the work directory with
# logs and raw results).
#
# wss:// against ws:// is bench/tls.sh; its section (bench/last-tls.md) is
# carried into the report written here.
set -euo pipefail

# Everything is inside main(), which bash reads whole before running it, so
# editing this file while it runs cannot derail the run.
main() {

ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUNS=${RUNS:-3}
TOOLS=${TOOLS:-"websocksy websocat websockify"}
SCENARIOS=${SCENARIOS:-"latency echo64k echo16k echo1k source idle many client-latency client-upload client-download"}
LAT_COUNT=${LAT_COUNT:-20000}
LAT_WARMUP=${LAT_WARMUP:-1000}
LAT_SIZE=${LAT_SIZE:-64}
ECHO64K_MIB=${ECHO64K_MIB:-1024}
ECHO16K_MIB=${ECHO16K_MIB:-256}
ECHO1K_MIB=${ECHO1K_MIB:-256}
SOURCE_MIB=${SOURCE_MIB:-1024}
IDLE_N=${IDLE_N:-5000}
# websockify forks a Python process per connection, and past ~508
# concurrent ones its children die with "filedescriptor out of range in
# select()"; it is measured with fewer (the figure is per connection).
IDLE_N_WEBSOCKIFY=${IDLE_N_WEBSOCKIFY:-500}
MIN_AVAIL_MIB=${MIN_AVAIL_MIB:-6144}
MANY_CONNS=${MANY_CONNS:-100}
MANY_ROUNDS=${MANY_ROUNDS:-1000}
CLIENT_UPLOAD_MIB=${CLIENT_UPLOAD_MIB:-1024}
CLIENT_DOWNLOAD_MIB=${CLIENT_DOWNLOAD_MIB:-1024}
CLIENT_MSG=${CLIENT_MSG:-65536}
CLIENT_CHUNK=${CLIENT_CHUNK:-65536}
OUT=${OUT:-$ROOT/BENCHMARKS.md}
CLIENT_WALL=900 # seconds: hard bound on one client command
# Before each measurement, wait up to QUIET_WAIT seconds for a second in
# which the CPUs were at least QUIET_IDLE % idle (the machine is shared).
QUIET_IDLE=${QUIET_IDLE:-85}
QUIET_WAIT=${QUIET_WAIT:-120}

WORK=$(mktemp -d /tmp/wsbench.XXXXXX)
PEER_PID=
BRIDGE_PID=

log() { printf '[run.sh %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- setup

for sc in $SCENARIOS; do
    case $sc in
        latency | echo64k | echo16k | echo1k | source | idle | many) ;;
        client-latency | client-upload | client-download) ;;
        *) die "unknown scenario $sc" ;;
    esac
done

# 5000 idle connections need 5000 client sockets here, 10000 in a
# single-process bridge and 5000 in the peer server.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if (($(ulimit -n) < 3 * IDLE_N + 1000)); then
    log "warning: ulimit -n is $(ulimit -n); the idle scenario may stop early"
fi

BUILD_PKGS=()
[[ -n ${WSBENCH:-} ]] || BUILD_PKGS+=(-p websocksy-bench)
[[ -n ${WEBSOCKSY:-} ]] || BUILD_PKGS+=(-p websocksy)
if ((${#BUILD_PKGS[@]})); then
    log "building (release)"
    (cd "$ROOT" && cargo build --release "${BUILD_PKGS[@]}" 2>&1 | tail -n 2) >&2
fi
# Snapshot the binaries: the tree may be rebuilt while we measure.
mkdir -p "$WORK/bin"
cp "${WSBENCH:-$ROOT/target/release/wsbench}" "$WORK/bin/wsbench"
WSBENCH=$WORK/bin/wsbench
if [[ -z ${WEBSOCKSY:-} ]]; then
    cp "$ROOT/target/release/websocksy" "$WORK/bin/"
    WEBSOCKSY=$WORK/bin/websocksy
fi
WEBSOCAT=$(command -v websocat || echo "$HOME/.cargo/bin/websocat")
# The real script, not a pyenv shim, so the pid we measure is websockify's.
WEBSOCKIFY=$( (command -v pyenv >/dev/null && pyenv which websockify 2>/dev/null) || command -v websockify || true)

AVAILABLE=()
for t in $TOOLS; do
    case $t in
        websocksy) [[ -x $WEBSOCKSY ]] && AVAILABLE+=("$t") || log "websocksy binary missing" ;;
        websocat) [[ -x $WEBSOCAT ]] && AVAILABLE+=("$t") || log "websocat not installed: skipped" ;;
        websockify) [[ -n $WEBSOCKIFY && -x $WEBSOCKIFY ]] && AVAILABLE+=("$t") || log "websockify not installed: skipped" ;;
        *) die "unknown tool $t" ;;
    esac
done
# The client-* scenarios: the tools with a client mode.
CLIENT_TOOLS=()
for t in ${AVAILABLE[@]+"${AVAILABLE[@]}"}; do
    if [[ $t == websockify ]]; then
        [[ " $SCENARIOS " == *" client-"* ]] && log "websockify has no client mode: skipped in the client-* scenarios"
    else
        CLIENT_TOOLS+=("$t")
    fi
done

# ------------------------------------------------------------ processes

# start_peer [ws-serve ARGS...]: starts the TCP peers (`wsbench serve`)
# or, with `ws-serve ...`, the WebSocket servers of the client-mode
# scenarios; sets PEER_PID ECHO_PORT SOURCE_PORT SINK_PORT.
start_peer() {
    local fifo=$WORK/peer.fifo line fd cmd=("$@")
    ((${#cmd[@]})) || cmd=(serve)
    rm -f "$fifo"
    mkfifo "$fifo"
    "$WSBENCH" "${cmd[@]}" --max-secs 3600 >"$fifo" 2>>"$WORK/peer.log" &
    PEER_PID=$!
    exec {fd}<"$fifo"
    read -r -t 10 -u "$fd" line || die "wsbench ${cmd[0]} printed no ports"
    exec {fd}<&-
    [[ $line =~ ^echo=([0-9]+)\ source=([0-9]+)(\ sink=([0-9]+))?$ ]] || die "wsbench ${cmd[0]} said: $line"
    ECHO_PORT=${BASH_REMATCH[1]}
    SOURCE_PORT=${BASH_REMATCH[2]}
    SINK_PORT=${BASH_REMATCH[4]}
}

# bridge_cmd TOOL PORT TARGET_PORT: the command line, for running and for
# the report (PORT is 0 for websocksy, which prints the port it bound).
bridge_cmd() {
    case $1 in
        websocksy) echo "$WEBSOCKSY -l 127.0.0.1 -p 0 -c host=tcp://127.0.0.1:$3" ;;
        websocat) echo "$WEBSOCAT --binary -E ws-l:127.0.0.1:$2 tcp:127.0.0.1:$3" ;;
        websockify) echo "$WEBSOCKIFY 127.0.0.1:$2 127.0.0.1:$3" ;;
    esac
}

# start_bridge TOOL TARGET_PORT; sets BRIDGE_PID BRIDGE_PORT.
start_bridge() {
    local tool=$1 target=$2 logf=$WORK/$1.log
    if [[ $tool == websocksy ]]; then
        # It binds port 0 and logs `listening on 127.0.0.1:PORT`: read its
        # stderr through a fifo until that line, then keep draining it.
        local fifo=$WORK/bridge.fifo line fd
        rm -f "$fifo"
        mkfifo "$fifo"
        # shellcheck disable=SC2046
        $(bridge_cmd websocksy 0 "$target") 2>"$fifo" >>"$logf" &
        BRIDGE_PID=$!
        exec {fd}<"$fifo"
        BRIDGE_PORT=
        while IFS= read -r -t 10 -u "$fd" line; do
            echo "$line" >>"$logf"
            if [[ $line =~ listening\ on\ 127\.0\.0\.1:([0-9]+) ]]; then
                BRIDGE_PORT=${BASH_REMATCH[1]}
                break
            fi
        done
        [[ -n $BRIDGE_PORT ]] || die "websocksy did not report its port (see $logf)"
        cat <&"$fd" >>"$logf" &
        exec {fd}<&-
    else
        BRIDGE_PORT=$("$WSBENCH" free-port)
        # shellcheck disable=SC2046
        $(bridge_cmd "$tool" "$BRIDGE_PORT" "$target") >>"$logf" 2>&1 &
        BRIDGE_PID=$!
    fi
    "$WSBENCH" wait --addr "127.0.0.1:$BRIDGE_PORT" --timeout 15 || die "$tool is not accepting on $BRIDGE_PORT"
}

# client_bridge_cmd TOOL PORT URL: a bridge in client mode, listening on
# local TCP PORT (0 for websocksy, which logs the port it bound) and
# dialing the WebSocket server at URL for each connection.
client_bridge_cmd() {
    case $1 in
        websocksy) echo "$WEBSOCKSY connect $3 --from tcp-listen://127.0.0.1:$2" ;;
        websocat) echo "$WEBSOCAT --binary -E tcp-l:127.0.0.1:$2 $3" ;;
    esac
}

# start_client_bridge TOOL URL; sets BRIDGE_PID BRIDGE_PORT, or returns 1
# with BRIDGE_ERR set (the run is recorded as failed, the others go on).
start_client_bridge() {
    local tool=$1 url=$2 logf=$WORK/$1-client.log from
    BRIDGE_PORT=
    BRIDGE_ERR=
    # Where this start's lines begin in the log (for an error message).
    from=$(($(cat "$logf" 2>/dev/null | wc -l) + 1))
    if [[ $tool == websocksy ]]; then
        # It binds port 0 and logs `listening on tcp-listen://127.0.0.1:PORT
        # for ws://...`: read its stderr through a fifo until that line.
        local fifo=$WORK/bridge.fifo line fd
        rm -f "$fifo"
        mkfifo "$fifo"
        # shellcheck disable=SC2046
        $(client_bridge_cmd websocksy 0 "$url") 2>"$fifo" >>"$logf" &
        BRIDGE_PID=$!
        exec {fd}<"$fifo"
        while IFS= read -r -t 10 -u "$fd" line; do
            echo "$line" >>"$logf"
            if [[ $line =~ listening\ on\ tcp-listen://127\.0\.0\.1:([0-9]+) ]]; then
                BRIDGE_PORT=${BASH_REMATCH[1]}
                break
            fi
        done
        if [[ -z $BRIDGE_PORT ]]; then
            exec {fd}<&-
            BRIDGE_ERR="websocksy connect did not report its tcp-listen port: $(tail -n "+$from" "$logf" | tail -n 3 | tr '\n' ' ')"
            return 1
        fi
        cat <&"$fd" >>"$logf" &
        exec {fd}<&-
    else
        BRIDGE_PORT=$("$WSBENCH" free-port)
        # shellcheck disable=SC2046
        $(client_bridge_cmd "$tool" "$BRIDGE_PORT" "$url") >>"$logf" 2>&1 &
        BRIDGE_PID=$!
    fi
    # (A connection that only checks the port makes the bridge dial the
    # WebSocket server once; its sink, echo and source send nothing unasked.)
    if ! "$WSBENCH" wait --addr "127.0.0.1:$BRIDGE_PORT" --timeout 15 2>>"$logf"; then
        BRIDGE_ERR="$tool is not accepting on $BRIDGE_PORT: $(tail -n "+$from" "$logf" | tail -n 3 | tr '\n' ' ')"
        return 1
    fi
}

# ------------------------------------------------------------ scenarios

client_args() { # SCENARIO URL BRIDGE_PID TOOL
    case $1 in
        latency) echo "latency --url $2 --pid $3 --count $LAT_COUNT --warmup $LAT_WARMUP --size $LAT_SIZE" ;;
        echo64k) echo "echo --url $2 --pid $3 --total-mib $ECHO64K_MIB --msg 65536" ;;
        echo16k) echo "echo --url $2 --pid $3 --total-mib $ECHO16K_MIB --msg 16384" ;;
        echo1k) echo "echo --url $2 --pid $3 --total-mib $ECHO1K_MIB --msg 1024" ;;
        source) echo "source --url $2 --pid $3 --total-mib $SOURCE_MIB" ;;
        idle)
            local n=$IDLE_N
            [[ ${4:-} == websockify ]] && ((IDLE_N_WEBSOCKIFY < n)) && n=$IDLE_N_WEBSOCKIFY
            echo "idle --url $2 --pid $3 --conns $n --min-avail-mib $MIN_AVAIL_MIB"
            ;;
        many) echo "many --url $2 --pid $3 --conns $MANY_CONNS --rounds $MANY_ROUNDS --size $LAT_SIZE" ;;
        *) die "unknown scenario $1" ;;
    esac
}

# tcp_client_args SCENARIO ADDR [BRIDGE_PID]: a client-* scenario's
# wsbench command, into a bridge's port (with its pid) or a TCP peer.
tcp_client_args() {
    local to="--addr $2${3:+ --pid $3}"
    case $1 in
        client-latency) echo "tcp-latency $to --count $LAT_COUNT --warmup $LAT_WARMUP --size $LAT_SIZE" ;;
        client-upload) echo "tcp-upload $to --total-mib $CLIENT_UPLOAD_MIB --chunk $CLIENT_CHUNK" ;;
        client-download) echo "tcp-download $to --total-mib $CLIENT_DOWNLOAD_MIB" ;;
        *) die "unknown scenario $1" ;;
    esac
}

# The peer a client-* scenario needs: echo, sink or source (of `wsbench
# ws-serve` for the bridges, of `wsbench serve` for the floor).
client_target() {
    case $1 in
        client-latency) echo "$ECHO_PORT" ;;
        client-upload) echo "$SINK_PORT" ;;
        client-download) echo "$SOURCE_PORT" ;;
    esac
}

RESULTS=$WORK/results.tsv
: >"$RESULTS"

# measure SCENARIO TOOL RUN WSBENCH_ARGS...: waits for a quiet machine,
# runs the client and records its line (or its error).
measure() {
    local sc=$1 tool=$2 run=$3 out
    shift 3
    wait_quiet
    if out=$(timeout "$CLIENT_WALL" "$WSBENCH" "$@" 2>"$WORK/client.err"); then
        :
    else
        out="error=$(tr '\n' ' ' <"$WORK/client.err")"
    fi
    printf '%s\t%s\t%s\t%s quiet_idle_pct=%s\n' "$sc" "$tool" "$run" "$out" "$IDLE_PCT" >>"$RESULTS"
    log "$sc $tool run $run: $out"
}

run_client_one() { # SCENARIO TOOL RUN
    local sc=$1 tool=$2 run=$3
    start_peer ws-serve --msg "$CLIENT_MSG"
    if start_client_bridge "$tool" "ws://127.0.0.1:$(client_target "$sc")/"; then
        # shellcheck disable=SC2046
        measure "$sc" "$tool" "$run" $(tcp_client_args "$sc" "127.0.0.1:$BRIDGE_PORT" "$BRIDGE_PID")
    else
        printf '%s\t%s\t%s\terror=%s\n' "$sc" "$tool" "$run" "$BRIDGE_ERR" >>"$RESULTS"
        log "$sc $tool run $run: error=$BRIDGE_ERR"
    fi
    stop_pid "$BRIDGE_PID"
    BRIDGE_PID=
    stop_pid "$PEER_PID"
    PEER_PID=
}

# The floor of a client-* scenario: the same TCP client straight to the
# TCP peers, no bridge.
run_client_direct() { # SCENARIO RUN
    start_peer
    # shellcheck disable=SC2046
    measure "$1" direct "$2" $(tcp_client_args "$1" "127.0.0.1:$(client_target "$1")")
    stop_pid "$PEER_PID"
    PEER_PID=
}

run_one() { # SCENARIO TOOL RUN
    local sc=$1 tool=$2 run=$3 target out
    start_peer
    target=$ECHO_PORT
    [[ $sc == source ]] && target=$SOURCE_PORT
    start_bridge "$tool" "$target"
    wait_quiet
    # shellcheck disable=SC2046
    if out=$(timeout "$CLIENT_WALL" "$WSBENCH" $(client_args "$sc" "ws://127.0.0.1:$BRIDGE_PORT/" "$BRIDGE_PID" "$tool") 2>"$WORK/client.err"); then
        :
    else
        out="error=$(tr '\n' ' ' <"$WORK/client.err")"
    fi
    printf '%s\t%s\t%s\t%s quiet_idle_pct=%s\n' "$sc" "$tool" "$run" "$out" "$IDLE_PCT" >>"$RESULTS"
    log "$sc $tool run $run: $out"
    stop_pid "$BRIDGE_PID"
    BRIDGE_PID=
    stop_pid "$PEER_PID"
    PEER_PID=
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
# Baseline for the latency scenario: the same client and echo peer over
# plain TCP, no bridge.
run_direct() { # RUN
    local out
    start_peer
    wait_quiet
    if out=$(timeout "$CLIENT_WALL" "$WSBENCH" tcp-latency --addr "127.0.0.1:$ECHO_PORT" --count "$LAT_COUNT" --warmup "$LAT_WARMUP" --size "$LAT_SIZE" 2>"$WORK/client.err"); then
        :
    else
        out="error=$(tr '\n' ' ' <"$WORK/client.err")"
    fi
    printf '%s\t%s\t%s\t%s quiet_idle_pct=%s\n' latency direct "$1" "$out" "$IDLE_PCT" >>"$RESULTS"
    log "latency direct run $1: $out"
    stop_pid "$PEER_PID"
    PEER_PID=
}

T0=$SECONDS
for sc in $SCENARIOS; do
    for run in $(seq "$RUNS"); do
        case $sc in
            client-*)
                for tool in ${CLIENT_TOOLS[@]+"${CLIENT_TOOLS[@]}"}; do
                    run_client_one "$sc" "$tool" "$run"
                done
                run_client_direct "$sc" "$run"
                ;;
            *)
                for tool in "${AVAILABLE[@]}"; do
                    run_one "$sc" "$tool" "$run"
                done
                [[ $sc == latency ]] && run_direct "$run"
                ;;
        esac
    done
done
MINUTES=$(((SECONDS - T0 + 59) / 60))

# --------------------------------------------------------------- report

websockify_version() {
    local py
    py=$(head -n1 "$WEBSOCKIFY" | sed 's/^#!//')
    "$py" - <<'PY' 2>/dev/null || echo "?"
import importlib.metadata as m, sys
try:
    np = "numpy " + m.version("numpy")
except Exception:
    np = "no numpy"
print("websockify %s (Python %s, %s)" % (m.version("websockify"), sys.version.split()[0], np))
PY
}

META=$WORK/meta.tsv
{
    printf 'date\t%s\n' "$(date -u '+%Y-%m-%d %H:%M UTC')"
    printf 'minutes\t%s\n' "$MINUTES"
    printf 'load_before\t%s\n' "$LOAD_BEFORE"
    printf 'load_after\t%s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
    printf 'runs\t%s\n' "$RUNS"
    printf 'nproc\t%s\n' "$(nproc)"
    printf 'cpu\t%s\n' "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    printf 'mem\t%s\n' "$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
    printf 'kernel\t%s\n' "$(uname -sr)"
    printf 'ulimit\t%s\n' "$(ulimit -n)"
    printf 'rustc\t%s\n' "$(rustc --version)"
    printf 'websocksy_version\t%s\n' "$("$WEBSOCKSY" --version 2>/dev/null | head -n1) (release build: lto, codegen-units 1)"
    printf 'websocat_version\t%s\n' "$("$WEBSOCAT" --version 2>/dev/null | head -n1)"
    printf 'websockify_version\t%s\n' "$(websockify_version)"
    printf 'websocksy_cmd\t%s\n' "websocksy -l 127.0.0.1 -p 0 -c host=tcp://127.0.0.1:PEER"
    printf 'websocat_cmd\t%s\n' "websocat --binary -E ws-l:127.0.0.1:PORT tcp:127.0.0.1:PEER"
    printf 'websockify_cmd\t%s\n' "websockify 127.0.0.1:PORT 127.0.0.1:PEER"
    printf 'websocksy_client_cmd\t%s\n' "websocksy connect ws://127.0.0.1:WSPORT/ --from tcp-listen://127.0.0.1:0"
    printf 'websocat_client_cmd\t%s\n' "websocat --binary -E tcp-l:127.0.0.1:PORT ws://127.0.0.1:WSPORT/"
    printf 'warmup\t%s\n' "$LAT_WARMUP"
    printf 'min_avail_mib\t%s\n' "$MIN_AVAIL_MIB"
    printf 'quiet_idle\t%s\n' "$QUIET_IDLE"
    printf 'quiet_wait\t%s\n' "$QUIET_WAIT"
    printf 'lat_count\t%s\n' "$LAT_COUNT"
    printf 'lat_size\t%s\n' "$LAT_SIZE"
    printf 'echo64k_mib\t%s\n' "$ECHO64K_MIB"
    printf 'echo16k_mib\t%s\n' "$ECHO16K_MIB"
    printf 'echo1k_mib\t%s\n' "$ECHO1K_MIB"
    printf 'source_mib\t%s\n' "$SOURCE_MIB"
    printf 'idle_n\t%s\n' "$IDLE_N"
    printf 'idle_n_websockify\t%s\n' "$IDLE_N_WEBSOCKIFY"
    printf 'many_conns\t%s\n' "$MANY_CONNS"
    printf 'many_rounds\t%s\n' "$MANY_ROUNDS"
    printf 'client_upload_mib\t%s\n' "$CLIENT_UPLOAD_MIB"
    printf 'client_download_mib\t%s\n' "$CLIENT_DOWNLOAD_MIB"
    printf 'client_msg\t%s\n' "$CLIENT_MSG"
    printf 'client_chunk\t%s\n' "$CLIENT_CHUNK"
    printf 'notes\t%s\n' "$ROOT/bench/ANALYSIS.md"
} >"$META"

COMMANDS=$WORK/commands.txt
{
    echo "# everything (builds websocksy and wsbench in release mode, $RUNS runs each):"
    echo "bench/run.sh"
    echo
    echo "# one run of one scenario by hand (PEER/SOURCE from 'wsbench serve', PORT from 'wsbench free-port'):"
    echo "cargo build --release -p websocksy -p websocksy-bench"
    echo "ulimit -n $(ulimit -n)"
    echo "target/release/wsbench serve &                  # prints echo=PEER source=SOURCE"
    echo "target/release/websocksy -l 127.0.0.1 -p 0 -c host=tcp://127.0.0.1:PEER   # logs 'listening on 127.0.0.1:PORT'"
    echo "websocat --binary -E ws-l:127.0.0.1:PORT tcp:127.0.0.1:PEER"
    echo "websockify 127.0.0.1:PORT 127.0.0.1:PEER"
    echo "# (scenario 3 points the bridge at SOURCE instead of PEER)"
    echo "target/release/wsbench tcp-latency --addr 127.0.0.1:PEER --count $LAT_COUNT --warmup $LAT_WARMUP --size $LAT_SIZE   # baseline, no bridge"
    for sc in latency echo64k echo16k echo1k source idle many; do
        echo "target/release/wsbench $(client_args "$sc" "ws://127.0.0.1:PORT/" BRIDGE_PID)"
    done
    echo "# websockify's idle run uses --conns $IDLE_N_WEBSOCKIFY"
} >"$COMMANDS"

CLIENT_COMMANDS=$WORK/client-commands.txt
{
    echo "# the client-mode scenarios only ($RUNS runs each; OUT= keeps BENCHMARKS.md):"
    echo "RUNS=$RUNS SCENARIOS=\"client-latency client-upload client-download\" OUT=/tmp/client.md bench/run.sh"
    echo
    echo "# one run by hand:"
    echo "cargo build --release -p websocksy -p websocksy-bench"
    echo "target/release/wsbench ws-serve --msg $CLIENT_MSG &   # WebSocket servers: prints echo=WSECHO source=WSSOURCE sink=WSSINK"
    echo "target/release/websocksy connect ws://127.0.0.1:WSECHO/ --from tcp-listen://127.0.0.1:0   # logs 'listening on tcp-listen://127.0.0.1:PORT for ws://...'"
    echo "websocat --binary -E tcp-l:127.0.0.1:PORT ws://127.0.0.1:WSECHO/   # PORT from 'wsbench free-port'"
    echo "# (WSSINK for client-upload, WSSOURCE for client-download)"
    for sc in client-latency client-upload client-download; do
        echo "target/release/wsbench $(tcp_client_args "$sc" 127.0.0.1:PORT BRIDGE_PID)"
    done
    echo "# the floor, no bridge:"
    echo "target/release/wsbench serve &   # TCP peers: prints echo=PEER source=SOURCE sink=SINK"
    echo "target/release/wsbench $(tcp_client_args client-latency 127.0.0.1:PEER)"
    echo "target/release/wsbench $(tcp_client_args client-upload 127.0.0.1:SINK)"
    echo "target/release/wsbench $(tcp_client_args client-download 127.0.0.1:SOURCE)"
} >"$CLIENT_COMMANDS"

# The wss:// section bench/tls.sh last wrote is kept in the report.
TLS_ARGS=()
[[ -f $ROOT/bench/last-tls.md ]] && TLS_ARGS=(--tls "$ROOT/bench/last-tls.md")
"$WSBENCH" report --results "$RESULTS" --meta "$META" --commands "$COMMANDS" --client-commands "$CLIENT_COMMANDS" ${TLS_ARGS[@]+"${TLS_ARGS[@]}"} >"$OUT.tmp"
mv "$OUT.tmp" "$OUT"
cp "$RESULTS" "$ROOT/bench/last-results.tsv"
log "wrote $OUT (raw results: bench/last-results.tsv)"

}

main "$@"
exit $?
