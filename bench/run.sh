#!/usr/bin/env bash
# Benchmarks websocksy against websocat and websockify as WebSocket-to-TCP
# bridges and writes BENCHMARKS.md. Run by hand (never from cargo test):
#
#   bench/run.sh                     # everything, 3 runs each (~20-25 min)
#   RUNS=1 SCENARIOS="latency many" TOOLS=websocksy bench/run.sh
#
# The first section of the report is issue 9's table (direct TCP, websocat,
# websocksy, target, met?), computed from the scenarios latency-pinned,
# source, upload, upgrades, idle and many of the same run; every one of
# them must be in SCENARIOS (the default) for all its rows.
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
# Server-mode scenarios: latency (round trips, nothing pinned),
# latency-pinned (the same with the peer, the bridge and the client all
# under `taskset -c PIN_CPU`), echo64k echo16k echo1k, source (download:
# peer -> client), upload (client -> sink peer in UPLOAD_MSG messages),
# upgrades (UPGRADE_CONNS clients opening one connection each at once),
# idle, many (MANY_CONNS clients echoing at once; websocksy once per
# MANY_THREADS value, with `WEBSOCKSY_THREADS_FLAG N`), instr (instructions
# per round trip: `perf stat -e instructions:u,instructions -p BRIDGE_PID`
# where the PMU counts, else callgrind; once, not per run). latency,
# latency-pinned, source and upload also run the same client straight to
# the TCP peer: the floor, "direct".
#
# Knobs (environment): RUNS, TOOLS, SCENARIOS (latency latency-pinned
# echo64k echo16k echo1k source upload upgrades idle many instr
# client-latency client-upload client-download), LAT_COUNT, LAT_WARMUP,
# LAT_SIZE (also the client-latency round trips), PIN_CPU, ECHO64K_MIB,
# ECHO16K_MIB, ECHO1K_MIB, SOURCE_MIB, UPLOAD_MIB, UPLOAD_MSG,
# UPGRADE_CONNS, IDLE_N (lowered to what `ulimit -n` lets a bridge hold),
# IDLE_N_WEBSOCKIFY, MIN_AVAIL_MIB, MANY_CONNS, MANY_CONNS_WEBSOCKIFY,
# MANY_ROUNDS, MANY_THREADS, WEBSOCKSY_THREADS_FLAG (default --threads;
# empty: run websocksy without it, for a smoke test against a binary that
# lacks it; the report then says so), INSTR_TOOLS, INSTR_COUNT,
# INSTR_WARMUP, INSTR_METHOD (auto, perf or callgrind), QUIET_IDLE,
# QUIET_WAIT, CLIENT_UPLOAD_MIB, CLIENT_DOWNLOAD_MIB, CLIENT_MSG (the
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
SCENARIOS=${SCENARIOS:-"latency latency-pinned echo64k echo16k echo1k source upload upgrades idle many instr client-latency client-upload client-download"}
LAT_COUNT=${LAT_COUNT:-20000}
LAT_WARMUP=${LAT_WARMUP:-1000}
LAT_SIZE=${LAT_SIZE:-32}
PIN_CPU=${PIN_CPU:-0}
ECHO64K_MIB=${ECHO64K_MIB:-1024}
ECHO16K_MIB=${ECHO16K_MIB:-256}
ECHO1K_MIB=${ECHO1K_MIB:-256}
SOURCE_MIB=${SOURCE_MIB:-1024}
UPLOAD_MIB=${UPLOAD_MIB:-1024}
UPLOAD_MSG=${UPLOAD_MSG:-65536}
UPGRADE_CONNS=${UPGRADE_CONNS:-1000}
IDLE_N=${IDLE_N:-10000}
# websockify forks a Python process per connection, and past ~508
# concurrent ones its children die with "filedescriptor out of range in
# select()"; it is measured with fewer (the figure is per connection).
IDLE_N_WEBSOCKIFY=${IDLE_N_WEBSOCKIFY:-500}
MIN_AVAIL_MIB=${MIN_AVAIL_MIB:-6144}
MANY_CONNS=${MANY_CONNS:-1000}
# websockify again: one Python process per connection, select() past ~508.
MANY_CONNS_WEBSOCKIFY=${MANY_CONNS_WEBSOCKIFY:-500}
MANY_ROUNDS=${MANY_ROUNDS:-100}
MANY_THREADS=${MANY_THREADS:-"1 2"}
WEBSOCKSY_THREADS_FLAG=${WEBSOCKSY_THREADS_FLAG---threads}
INSTR_TOOLS=${INSTR_TOOLS:-"websocksy websocat"}
INSTR_COUNT=${INSTR_COUNT:-2000}
INSTR_WARMUP=${INSTR_WARMUP:-200}
INSTR_METHOD=${INSTR_METHOD:-auto}
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
# The command prefix of every process of a pinned run (latency-pinned).
PIN=()
# Extra websocksy arguments (many: the loop count).
WEBSOCKSY_EXTRA=
# A prefix for the bridge alone (instr: valgrind).
BRIDGE_WRAP=()

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
        latency | latency-pinned | echo64k | echo16k | echo1k | source | upload) ;;
        upgrades | idle | many | instr) ;;
        client-latency | client-upload | client-download) ;;
        *) die "unknown scenario $sc" ;;
    esac
done

# N idle connections need N client sockets here, 2N in the bridge (one
# process, or websockify's children) and N in the peer server: the limit is
# per process, and the bridge's 2N is the bound (websocksy itself accepts
# (nofile - 64) / 2). IDLE_N is lowered to what fits, in hundreds, with
# room for the bridge's own descriptors.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
IDLE_FIT=$((((NOFILE - 64) / 2 - 50) / 100 * 100))
IDLE_N_ASKED=$IDLE_N
if ((IDLE_N > IDLE_FIT)); then
    log "ulimit -n is $NOFILE (hard limit $(ulimit -Hn)): a bridge holds at most $IDLE_FIT idle connections with their peer sockets; IDLE_N $IDLE_N -> $IDLE_FIT"
    IDLE_N=$IDLE_FIT
fi
if ((NOFILE < 2 * MANY_CONNS + 200 || NOFILE < 2 * UPGRADE_CONNS + 200)); then
    log "warning: ulimit -n is $NOFILE; many or upgrades may fail"
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

has() { [[ " $SCENARIOS " == *" $1 "* ]]; }
tool_on() { [[ " ${AVAILABLE[*]} " == *" $1 "* ]]; }

# many runs websocksy with `--threads N` for each N of MANY_THREADS.
THREADS_NOTE=
if has many && tool_on websocksy; then
    if [[ -z $WEBSOCKSY_THREADS_FLAG ]]; then
        THREADS_NOTE="WEBSOCKSY_THREADS_FLAG was empty: websocksy ran without a thread-count option, so its --threads rows are all its default"
        log "warning: $THREADS_NOTE"
    elif ! "$WEBSOCKSY" --help 2>&1 | grep -q -- "$WEBSOCKSY_THREADS_FLAG"; then
        die "$WEBSOCKSY has no $WEBSOCKSY_THREADS_FLAG option (for a smoke test against such a binary: WEBSOCKSY_THREADS_FLAG= bench/run.sh)"
    fi
fi

# instr: perf where the PMU counts instructions (not in every VM), else
# callgrind.
if has instr; then
    if [[ $INSTR_METHOD == auto ]]; then
        INSTR_METHOD=callgrind
        if command -v perf >/dev/null &&
            perf stat -x, -e instructions:u true 2>&1 >/dev/null | grep -q '^[0-9]'; then
            INSTR_METHOD=perf
        fi
    fi
    case $INSTR_METHOD in
        perf) command -v perf >/dev/null || die "INSTR_METHOD=perf, but there is no perf" ;;
        callgrind) command -v valgrind >/dev/null || die "instr: no working perf and no valgrind (drop instr from SCENARIOS)" ;;
        *) die "INSTR_METHOD is auto, perf or callgrind, not $INSTR_METHOD" ;;
    esac
    log "instr: instruction counts by $INSTR_METHOD"
fi

# ------------------------------------------------------------ processes

# start_peer [ws-serve ARGS...]: starts the TCP peers (`wsbench serve`)
# or, with `ws-serve ...`, the WebSocket servers of the client-mode
# scenarios; sets PEER_PID ECHO_PORT SOURCE_PORT SINK_PORT.
start_peer() {
    local fifo=$WORK/peer.fifo line fd cmd=("$@")
    ((${#cmd[@]})) || cmd=(serve)
    rm -f "$fifo"
    mkfifo "$fifo"
    ${PIN[@]+"${PIN[@]}"} "$WSBENCH" "${cmd[@]}" --max-secs 3600 >"$fifo" 2>>"$WORK/peer.log" &
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
        websocksy) echo "$WEBSOCKSY -l 127.0.0.1 -p 0 -c host=tcp://127.0.0.1:$3${WEBSOCKSY_EXTRA:+ $WEBSOCKSY_EXTRA}" ;;
        websocat) echo "$WEBSOCAT --binary -E ws-l:127.0.0.1:$2 tcp:127.0.0.1:$3" ;;
        websockify) echo "$WEBSOCKIFY 127.0.0.1:$2 127.0.0.1:$3" ;;
    esac
}

# start_bridge TOOL TARGET_PORT; sets BRIDGE_PID BRIDGE_PORT. PIN and
# BRIDGE_WRAP (in that order) go in front of the command.
start_bridge() {
    local tool=$1 target=$2 logf=$WORK/$1.log
    if [[ $tool == websocksy ]]; then
        # It binds port 0 and logs `listening on 127.0.0.1:PORT`: read its
        # stderr through a fifo until that line, then keep draining it.
        local fifo=$WORK/bridge.fifo line fd
        rm -f "$fifo"
        mkfifo "$fifo"
        # shellcheck disable=SC2046
        ${PIN[@]+"${PIN[@]}"} ${BRIDGE_WRAP[@]+"${BRIDGE_WRAP[@]}"} $(bridge_cmd websocksy 0 "$target") 2>"$fifo" >>"$logf" &
        BRIDGE_PID=$!
        exec {fd}<"$fifo"
        BRIDGE_PORT=
        while IFS= read -r -t 30 -u "$fd" line; do
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
        ${PIN[@]+"${PIN[@]}"} ${BRIDGE_WRAP[@]+"${BRIDGE_WRAP[@]}"} $(bridge_cmd "$tool" "$BRIDGE_PORT" "$target") >>"$logf" 2>&1 &
        BRIDGE_PID=$!
    fi
    "$WSBENCH" wait --addr "127.0.0.1:$BRIDGE_PORT" --timeout 30 || die "$tool is not accepting on $BRIDGE_PORT"
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
        latency | latency-pinned) echo "latency --url $2 --pid $3 --count $LAT_COUNT --warmup $LAT_WARMUP --size $LAT_SIZE" ;;
        echo64k) echo "echo --url $2 --pid $3 --total-mib $ECHO64K_MIB --msg 65536" ;;
        echo16k) echo "echo --url $2 --pid $3 --total-mib $ECHO16K_MIB --msg 16384" ;;
        echo1k) echo "echo --url $2 --pid $3 --total-mib $ECHO1K_MIB --msg 1024" ;;
        source) echo "source --url $2 --pid $3 --total-mib $SOURCE_MIB" ;;
        upload) echo "upload --url $2 --pid $3 --total-mib $UPLOAD_MIB --msg $UPLOAD_MSG" ;;
        upgrades) echo "upgrades --url $2 --pid $3 --conns $UPGRADE_CONNS" ;;
        idle)
            local n=$IDLE_N
            [[ ${4:-} == websockify ]] && ((IDLE_N_WEBSOCKIFY < n)) && n=$IDLE_N_WEBSOCKIFY
            echo "idle --url $2 --pid $3 --conns $n --min-avail-mib $MIN_AVAIL_MIB"
            ;;
        many)
            local n=$MANY_CONNS
            [[ ${4:-} == websockify ]] && ((MANY_CONNS_WEBSOCKIFY < n)) && n=$MANY_CONNS_WEBSOCKIFY
            echo "many --url $2 --pid $3 --conns $n --rounds $MANY_ROUNDS --size $LAT_SIZE"
            ;;
        *) die "unknown scenario $1" ;;
    esac
}

# The floor of a server-mode scenario: the same work by a plain TCP client
# straight to the TCP peer (ADDR), no bridge and no WebSocket.
direct_args() { # SCENARIO ADDR
    case $1 in
        latency | latency-pinned) echo "tcp-latency --addr $2 --count $LAT_COUNT --warmup $LAT_WARMUP --size $LAT_SIZE" ;;
        source) echo "tcp-download --addr $2 --total-mib $SOURCE_MIB" ;;
        upload) echo "tcp-upload --addr $2 --total-mib $UPLOAD_MIB --chunk $UPLOAD_MSG" ;;
        *) die "no direct floor for $1" ;;
    esac
}

# The TCP peer a server-mode scenario points the bridge at.
server_target() {
    case $1 in
        source) echo "$SOURCE_PORT" ;;
        upload) echo "$SINK_PORT" ;;
        *) echo "$ECHO_PORT" ;;
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
# Appended to the next recorded line (many without a thread-count option).
RESULT_EXTRA=

# measure SCENARIO LABEL RUN WSBENCH_ARGS...: waits for a quiet machine,
# runs the client (under PIN) and records its line (or its error) as
# LABEL's.
measure() {
    local sc=$1 tool=$2 run=$3 out
    shift 3
    wait_quiet
    if out=$(timeout "$CLIENT_WALL" ${PIN[@]+"${PIN[@]}"} "$WSBENCH" "$@" 2>"$WORK/client.err"); then
        out+=$RESULT_EXTRA
    else
        out="error=$(tr '\n' ' ' <"$WORK/client.err")"
    fi
    printf '%s\t%s\t%s\t%s quiet_idle_pct=%s\n' "$sc" "$tool" "$run" "$out" "$IDLE_PCT" >>"$RESULTS"
    log "$sc $tool run $run: $out"
}

stop_all() {
    stop_pid "$BRIDGE_PID"
    BRIDGE_PID=
    stop_pid "$PEER_PID"
    PEER_PID=
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
    stop_all
}

# The floor of a client-* scenario: the same TCP client straight to the
# TCP peers, no bridge.
run_client_direct() { # SCENARIO RUN
    start_peer
    # shellcheck disable=SC2046
    measure "$1" direct "$2" $(tcp_client_args "$1" "127.0.0.1:$(client_target "$1")")
    stop_all
}

run_one() { # SCENARIO TOOL RUN [LABEL]
    local sc=$1 tool=$2 run=$3 label=${4:-$2}
    start_peer
    start_bridge "$tool" "$(server_target "$sc")"
    # shellcheck disable=SC2046
    measure "$sc" "$label" "$run" $(client_args "$sc" "ws://127.0.0.1:$BRIDGE_PORT/" "$BRIDGE_PID" "$tool")
    stop_all
}

# The floor of latency, latency-pinned, source and upload.
run_direct() { # SCENARIO RUN
    start_peer
    # shellcheck disable=SC2046
    measure "$1" direct "$2" $(direct_args "$1" "127.0.0.1:$(server_target "$1")")
    stop_all
}

# many: websocksy once per MANY_THREADS value (as websocksy-tN).
run_many_websocksy() { # RUN
    local n
    for n in $MANY_THREADS; do
        if [[ -n $WEBSOCKSY_THREADS_FLAG ]]; then
            WEBSOCKSY_EXTRA="$WEBSOCKSY_THREADS_FLAG $n"
        else
            RESULT_EXTRA=" threads_flag=none"
        fi
        run_one many websocksy "$1" "websocksy-t$n"
        WEBSOCKSY_EXTRA=
        RESULT_EXTRA=
    done
}

# Stops the bridge of an instr run gently (callgrind writes its counts at
# exit), then as usual.
stop_counted_bridge() {
    kill -TERM "$BRIDGE_PID" 2>/dev/null || true
    for _ in $(seq 600); do
        kill -0 "$BRIDGE_PID" 2>/dev/null || break
        sleep 0.1
    done
    stop_all
}

# instr TOOL: user-space instructions the bridge executes per round trip of
# LAT_SIZE bytes. perf: counted during INSTR_WARMUP + INSTR_COUNT round
# trips (user, and user + kernel). callgrind: two bridges under callgrind,
# one doing INSTR_WARMUP + 1 round trips and one INSTR_WARMUP +
# INSTR_COUNT + 1, counters zeroed once it listens
# (callgrind_control -z); the difference divided by INSTR_COUNT (the
# handshake and the exit cancel out).
run_instr() { # TOOL
    local tool=$1 out n k ir lo hi
    if [[ $INSTR_METHOD == perf ]]; then
        start_peer
        start_bridge "$tool" "$ECHO_PORT"
        wait_quiet
        perf stat -x, -e instructions:u,instructions -p "$BRIDGE_PID" -o "$WORK/perf-$tool.csv" &
        local perf_pid=$!
        sleep 0.5
        if out=$(timeout "$CLIENT_WALL" "$WSBENCH" latency --url "ws://127.0.0.1:$BRIDGE_PORT/" --count "$INSTR_COUNT" --warmup "$INSTR_WARMUP" --size "$LAT_SIZE" 2>"$WORK/client.err"); then
            kill -INT "$perf_pid" 2>/dev/null || true
            wait "$perf_pid" 2>/dev/null || true
            n=$((INSTR_COUNT + INSTR_WARMUP))
            local u a
            u=$(awk -F, '$3 ~ /^instructions:u/ {print $1}' "$WORK/perf-$tool.csv")
            a=$(awk -F, '$3 ~ /^instructions/ && $3 !~ /:u/ {print $1}' "$WORK/perf-$tool.csv")
            if [[ $u =~ ^[0-9]+$ ]]; then
                out="method=perf count=$n instr_per_rt=$((u / n))"
                [[ $a =~ ^[0-9]+$ ]] && out+=" instr_all_per_rt=$((a / n))"
            else
                out="error=perf counted nothing: $(tr '\n' ' ' <"$WORK/perf-$tool.csv")"
            fi
        else
            kill -INT "$perf_pid" 2>/dev/null || true
            wait "$perf_pid" 2>/dev/null || true
            out="error=$(tr '\n' ' ' <"$WORK/client.err")"
        fi
        stop_all
    else
        for k in lo hi; do
            n=1
            [[ $k == hi ]] && n=$((INSTR_COUNT + 1))
            BRIDGE_WRAP=(valgrind --tool=callgrind "--callgrind-out-file=$WORK/cg-$tool-$k.out" "--log-file=$WORK/cg-$tool-$k.log")
            start_peer
            start_bridge "$tool" "$ECHO_PORT"
            BRIDGE_WRAP=()
            # Start-up is not counted (it is the bulk, and not quite the
            # same from one start to the next).
            callgrind_control -z "$BRIDGE_PID" >/dev/null 2>&1 || true
            if ! timeout "$CLIENT_WALL" "$WSBENCH" latency --url "ws://127.0.0.1:$BRIDGE_PORT/" --count "$n" --warmup "$INSTR_WARMUP" --size "$LAT_SIZE" >/dev/null 2>"$WORK/client.err"; then
                out="error=$(tr '\n' ' ' <"$WORK/client.err")"
                stop_counted_bridge
                break
            fi
            stop_counted_bridge
            ir=$(awk '/^totals:/ {print $2; exit}' "$WORK/cg-$tool-$k.out" 2>/dev/null || true)
            [[ $ir =~ ^[0-9]+$ ]] || {
                out="error=callgrind wrote no total (see $WORK/cg-$tool-$k.log)"
                break
            }
            if [[ $k == lo ]]; then lo=$ir; else hi=$ir; fi
        done
        if [[ -n ${hi:-} ]]; then
            out="method=callgrind count=$INSTR_COUNT instr_per_rt=$(((hi - lo) / INSTR_COUNT)) ir_lo=$lo ir_hi=$hi"
        fi
    fi
    printf '%s\t%s\t%s\t%s\n' instr "$tool" 1 "$out" >>"$RESULTS"
    log "instr $tool: $out"
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
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
            instr)
                # Instruction counts repeat: one run.
                ((run == 1)) || continue
                for tool in $INSTR_TOOLS; do
                    tool_on "$tool" && run_instr "$tool"
                done
                ;;
            many)
                for tool in "${AVAILABLE[@]}"; do
                    if [[ $tool == websocksy ]]; then
                        run_many_websocksy "$run"
                    else
                        run_one "$sc" "$tool" "$run"
                    fi
                done
                ;;
            *)
                [[ $sc == latency-pinned ]] && PIN=(taskset -c "$PIN_CPU")
                for tool in "${AVAILABLE[@]}"; do
                    run_one "$sc" "$tool" "$run"
                done
                case $sc in
                    latency | latency-pinned | source | upload) run_direct "$sc" "$run" ;;
                esac
                PIN=()
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
    printf 'upload_mib\t%s\n' "$UPLOAD_MIB"
    printf 'upload_msg\t%s\n' "$UPLOAD_MSG"
    printf 'upgrade_conns\t%s\n' "$UPGRADE_CONNS"
    printf 'pin_cpu\t%s\n' "$PIN_CPU"
    printf 'idle_n\t%s\n' "$IDLE_N"
    printf 'idle_n_asked\t%s\n' "$IDLE_N_ASKED"
    printf 'ulimit_hard\t%s\n' "$(ulimit -Hn)"
    printf 'idle_n_websockify\t%s\n' "$IDLE_N_WEBSOCKIFY"
    printf 'many_conns\t%s\n' "$MANY_CONNS"
    printf 'many_rounds\t%s\n' "$MANY_ROUNDS"
    printf 'many_conns_websockify\t%s\n' "$MANY_CONNS_WEBSOCKIFY"
    printf 'many_threads\t%s\n' "$MANY_THREADS"
    printf 'threads_flag\t%s\n' "$WEBSOCKSY_THREADS_FLAG"
    printf 'threads_note\t%s\n' "$THREADS_NOTE"
    has instr && printf 'instr_method\t%s\n' "$INSTR_METHOD"
    printf 'instr_count\t%s\n' "$INSTR_COUNT"
    printf 'instr_warmup\t%s\n' "$INSTR_WARMUP"
    printf 'valgrind_version\t%s\n' "$(valgrind --version 2>/dev/null || echo none)"
    printf 'perf_version\t%s\n' "$(perf --version 2>/dev/null || echo none)"
    printf 'client_upload_mib\t%s\n' "$CLIENT_UPLOAD_MIB"
    printf 'client_download_mib\t%s\n' "$CLIENT_DOWNLOAD_MIB"
    printf 'client_msg\t%s\n' "$CLIENT_MSG"
    printf 'client_chunk\t%s\n' "$CLIENT_CHUNK"
    printf 'notes\t%s\n' "$ROOT/bench/ANALYSIS.md"
} >"$META"

COMMANDS=$WORK/commands.txt
{
    echo "# everything (builds websocksy and wsbench in release mode, $RUNS runs each; OUT=/tmp/x.md keeps BENCHMARKS.md):"
    echo "bench/run.sh"
    echo "# a prebuilt pair instead of building (here websocksy from another worktree):"
    echo "WEBSOCKSY=/path/to/websocksy WSBENCH=target/release/wsbench bench/run.sh"
    echo
    echo "# one run of one scenario by hand (PEER/SOURCE/SINK from 'wsbench serve', PORT from 'wsbench free-port'):"
    echo "cargo build --release -p websocksy -p websocksy-bench"
    echo "ulimit -n $(ulimit -n)"
    echo "target/release/wsbench serve &                  # prints echo=PEER source=SOURCE sink=SINK"
    echo "target/release/websocksy -l 127.0.0.1 -p 0 -c host=tcp://127.0.0.1:PEER   # logs 'listening on 127.0.0.1:PORT'"
    echo "websocat --binary -E ws-l:127.0.0.1:PORT tcp:127.0.0.1:PEER"
    echo "websockify 127.0.0.1:PORT 127.0.0.1:PEER"
    echo "# (source points the bridge at SOURCE instead of PEER, upload at SINK)"
    for sc in latency echo64k echo16k echo1k source upload upgrades idle many; do
        echo "target/release/wsbench $(client_args "$sc" "ws://127.0.0.1:PORT/" BRIDGE_PID)"
    done
    echo "# websockify's idle run uses --conns $IDLE_N_WEBSOCKIFY, its many run --conns $MANY_CONNS_WEBSOCKIFY"
    echo "# many, websocksy with each loop count:"
    for n in $MANY_THREADS; do
        echo "target/release/websocksy -l 127.0.0.1 -p 0 -c host=tcp://127.0.0.1:PEER ${WEBSOCKSY_THREADS_FLAG:-(thread-count option)} $n"
    done
    echo "# the floor, no bridge (latency, source, upload):"
    echo "target/release/wsbench $(direct_args latency 127.0.0.1:PEER)"
    echo "target/release/wsbench $(direct_args source 127.0.0.1:SOURCE)"
    echo "target/release/wsbench $(direct_args upload 127.0.0.1:SINK)"
    echo "# latency-pinned: the same latency commands (bridge, peer, client and floor), each under:"
    echo "taskset -c $PIN_CPU COMMAND"
    echo "# instructions per round trip (instr), with the bridge's pid:"
    echo "perf stat -x, -e instructions:u,instructions -p BRIDGE_PID &   # then: wsbench latency --url ws://127.0.0.1:PORT/ --count $INSTR_COUNT --warmup $INSTR_WARMUP --size $LAT_SIZE; kill -INT %1"
    echo "# or, where perf counts nothing (a VM without a PMU), twice under callgrind: N=1 and N=$((INSTR_COUNT + 1)), (Ir(hi) - Ir(lo)) / $INSTR_COUNT"
    echo "valgrind --tool=callgrind --callgrind-out-file=cg.out target/release/websocksy -l 127.0.0.1 -p 0 -c host=tcp://127.0.0.1:PEER"
    echo "callgrind_control -z BRIDGE_PID   # once it listens: start-up not counted"
    echo "target/release/wsbench latency --url ws://127.0.0.1:PORT/ --count N --warmup $INSTR_WARMUP --size $LAT_SIZE; kill -TERM BRIDGE_PID; grep ^totals: cg.out"
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
