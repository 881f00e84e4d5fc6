#!/usr/bin/env bash
# wss:// against ws:// through one websocksy process, and the raw cipher
# rate of this machine (issue 7). Writes the "wss:// against ws://" section
# into BENCHMARKS.md (replacing the previous one; bench/run.sh keeps it)
# and bench/last-tls.md. Run by hand (never from cargo test):
#
#   bench/tls.sh                         # 3 runs each, 1 GiB transfers (~5 min)
#   RUNS=1 TLS_MIB=256 bench/tls.sh      # quicker
#
# For each scenario and run: fresh `wsbench serve` peers, then one bridge
#   websocksy --cert C --key K --bind ws://127.0.0.1:0 --bind wss://127.0.0.1:0
#             -c host=tcp://127.0.0.1:PEER
# measured over ws:// and over wss:// (ws first in odd runs, wss first in
# even ones). Scenarios: latency (round trips through the echo peer),
# source (download: peer -> client) and upload (client -> sink peer, which
# answers one byte after the last).
#
# Knobs (environment): RUNS, LAT_COUNT, LAT_WARMUP, LAT_SIZE, TLS_MIB
# (both transfers), SOURCE_MIB, UPLOAD_MIB, UPLOAD_MSG, CIPHERSUITES (TLS
# 1.3 suites offered by the client, e.g. TLS_AES_128_GCM_SHA256; default
# OpenSSL's), SPEED_SECS (per cipher for openssl speed), QUIET_IDLE,
# QUIET_WAIT, OUT (default BENCHMARKS.md at the repository root),
# WEBSOCKSY (a prebuilt binary instead of building one), KEEP_WORK=1.
set -euo pipefail

main() {

ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUNS=${RUNS:-3}
LAT_COUNT=${LAT_COUNT:-20000}
LAT_WARMUP=${LAT_WARMUP:-1000}
LAT_SIZE=${LAT_SIZE:-64}
TLS_MIB=${TLS_MIB:-1024}
SOURCE_MIB=${SOURCE_MIB:-$TLS_MIB}
UPLOAD_MIB=${UPLOAD_MIB:-$TLS_MIB}
UPLOAD_MSG=${UPLOAD_MSG:-65536}
CIPHERSUITES=${CIPHERSUITES:-}
SPEED_SECS=${SPEED_SECS:-3}
QUIET_IDLE=${QUIET_IDLE:-85}
QUIET_WAIT=${QUIET_WAIT:-120}
OUT=${OUT:-$ROOT/BENCHMARKS.md}
CLIENT_WALL=900

WORK=$(mktemp -d /tmp/wsbench-tls.XXXXXX)
PEER_PID=
BRIDGE_PID=

log() { printf '[tls.sh %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- setup

command -v openssl >/dev/null || die "the openssl command is needed (certificate, cipher rate)"
log "building (release)"
BUILD_PKGS=(-p websocksy-bench)
[[ -n ${WEBSOCKSY:-} ]] || BUILD_PKGS+=(-p websocksy)
(cd "$ROOT" && cargo build --release "${BUILD_PKGS[@]}" 2>&1 | tail -n 2) >&2
mkdir -p "$WORK/bin"
cp "$ROOT/target/release/wsbench" "$WORK/bin/"
WSBENCH=$WORK/bin/wsbench
if [[ -z ${WEBSOCKSY:-} ]]; then
    cp "$ROOT/target/release/websocksy" "$WORK/bin/"
    WEBSOCKSY=$WORK/bin/websocksy
    REV="built from $(cd "$ROOT" && git rev-parse --short HEAD)"
    [[ -z $(cd "$ROOT" && git status --porcelain -- core plugins) ]] || REV+=" with uncommitted changes"
else
    REV="prebuilt binary $WEBSOCKSY"
fi
REV="$("$WEBSOCKSY" --version | head -n1), $REV (release build: lto, codegen-units 1)"
[[ $("$WEBSOCKSY" --help) == *--cert* ]] || die "$WEBSOCKSY has no --cert: it does not serve wss://"

# A throwaway certificate: EC P-256, self-signed, CN=localhost.
CERT=$WORK/cert.pem
KEY=$WORK/key.pem
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$KEY" -out "$CERT" -days 2 -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost,IP:127.0.0.1 2>"$WORK/openssl-req.log" ||
    die "openssl req failed: $(cat "$WORK/openssl-req.log")"
# The client verifies against it (name localhost).
CLIENT_TLS=(--ca "$CERT")
[[ -n $CIPHERSUITES ]] && CLIENT_TLS+=(--ciphersuites "$CIPHERSUITES")

# ------------------------------------------------------------ processes

# Starts the TCP peers; sets PEER_PID ECHO_PORT SOURCE_PORT SINK_PORT.
start_peer() {
    local fifo=$WORK/peer.fifo line fd
    rm -f "$fifo"
    mkfifo "$fifo"
    "$WSBENCH" serve --max-secs 3600 >"$fifo" 2>>"$WORK/peer.log" &
    PEER_PID=$!
    exec {fd}<"$fifo"
    read -r -t 10 -u "$fd" line || die "wsbench serve printed no ports"
    exec {fd}<&-
    [[ $line =~ ^echo=([0-9]+)\ source=([0-9]+)\ sink=([0-9]+)$ ]] || die "wsbench serve said: $line"
    ECHO_PORT=${BASH_REMATCH[1]}
    SOURCE_PORT=${BASH_REMATCH[2]}
    SINK_PORT=${BASH_REMATCH[3]}
}

bridge_cmd() { # TARGET_PORT
    echo "$WEBSOCKSY --cert $CERT --key $KEY --bind ws://127.0.0.1:0 --bind wss://127.0.0.1:0 -c host=tcp://127.0.0.1:$1"
}

# start_bridge TARGET_PORT; sets BRIDGE_PID WS_PORT WSS_PORT from its
# `listening on ws://...` and `listening on wss://...` lines.
start_bridge() {
    local logf=$WORK/websocksy.log fifo=$WORK/bridge.fifo line fd
    rm -f "$fifo"
    mkfifo "$fifo"
    # shellcheck disable=SC2046
    $(bridge_cmd "$1") 2>"$fifo" >>"$logf" &
    BRIDGE_PID=$!
    exec {fd}<"$fifo"
    WS_PORT=
    WSS_PORT=
    while IFS= read -r -t 10 -u "$fd" line; do
        echo "$line" >>"$logf"
        if [[ $line =~ listening\ on\ ws://127\.0\.0\.1:([0-9]+) ]]; then
            WS_PORT=${BASH_REMATCH[1]}
        elif [[ $line =~ listening\ on\ wss://127\.0\.0\.1:([0-9]+) ]]; then
            WSS_PORT=${BASH_REMATCH[1]}
        fi
        [[ -n $WS_PORT && -n $WSS_PORT ]] && break
    done
    [[ -n $WS_PORT && -n $WSS_PORT ]] || die "websocksy did not report both listeners (see $logf)"
    cat <&"$fd" >>"$logf" &
    exec {fd}<&-
    "$WSBENCH" wait --addr "127.0.0.1:$WS_PORT" --timeout 15 || die "ws:// listener not accepting"
    "$WSBENCH" wait --addr "127.0.0.1:$WSS_PORT" --timeout 15 || die "wss:// listener not accepting"
}

# ------------------------------------------------------------ scenarios

client_args() { # SCENARIO URL BRIDGE_PID
    case $1 in
        latency) echo "latency --url $2 --pid $3 --count $LAT_COUNT --warmup $LAT_WARMUP --size $LAT_SIZE" ;;
        source) echo "source --url $2 --pid $3 --total-mib $SOURCE_MIB" ;;
        upload) echo "upload --url $2 --pid $3 --total-mib $UPLOAD_MIB --msg $UPLOAD_MSG" ;;
        *) die "unknown scenario $1" ;;
    esac
}

RESULTS=$WORK/results.tsv
: >"$RESULTS"

measure() { # SCENARIO PROTO PORT RUN
    local out
    wait_quiet
    # shellcheck disable=SC2046
    if out=$(timeout "$CLIENT_WALL" "$WSBENCH" $(client_args "$1" "$2://127.0.0.1:$3/" "$BRIDGE_PID") "${CLIENT_TLS[@]}" 2>"$WORK/client.err"); then
        :
    else
        out="error=$(tr '\n' ' ' <"$WORK/client.err")"
    fi
    printf '%s\t%s\t%s\t%s quiet_idle_pct=%s\n' "$1" "$2" "$4" "$out" "$IDLE_PCT" >>"$RESULTS"
    log "$1 $2:// run $4: $out"
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
T0=$SECONDS
for sc in latency source upload; do
    for run in $(seq "$RUNS"); do
        start_peer
        case $sc in
            latency) start_bridge "$ECHO_PORT" ;;
            source) start_bridge "$SOURCE_PORT" ;;
            upload) start_bridge "$SINK_PORT" ;;
        esac
        if ((run % 2)); then
            measure "$sc" ws "$WS_PORT" "$run"
            measure "$sc" wss "$WSS_PORT" "$run"
        else
            measure "$sc" wss "$WSS_PORT" "$run"
            measure "$sc" ws "$WS_PORT" "$run"
        fi
        stop_pid "$BRIDGE_PID"
        BRIDGE_PID=
        stop_pid "$PEER_PID"
        PEER_PID=
    done
done

# The cipher alone, one process (one core), 16 KiB blocks. Bytes per
# second from the machine-readable line `+F:N:NAME:BYTES_PER_S`.
declare -A SPEED
for c in aes-128-gcm aes-256-gcm chacha20-poly1305; do
    wait_quiet
    SPEED[$c]=$(openssl speed -mr -seconds "$SPEED_SECS" -bytes 16384 -evp "$c" 2>/dev/null |
        awk -F: '/^\+F:/ {print $NF}' | tail -n1)
    log "openssl speed -evp $c: ${SPEED[$c]:-?} bytes/s"
done
MINUTES=$(((SECONDS - T0 + 59) / 60))

# --------------------------------------------------------------- report

META=$WORK/meta.tsv
{
    printf 'date\t%s\n' "$(date -u '+%Y-%m-%d %H:%M UTC')"
    printf 'minutes\t%s\n' "$MINUTES"
    printf 'load_before\t%s\n' "$LOAD_BEFORE"
    printf 'load_after\t%s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
    printf 'runs\t%s\n' "$RUNS"
    printf 'nproc\t%s\n' "$(nproc)"
    printf 'aes_ni\t%s\n' "$(grep -qw aes /proc/cpuinfo && echo "present (the aes CPU flag)" || echo "absent")"
    printf 'websocksy_rev\t%s\n' "$REV"
    printf 'openssl_version\t%s\n' "$(openssl version | cut -d' ' -f1-2)"
    printf 'websocksy_cmd\t%s\n' "websocksy --cert cert.pem --key key.pem --bind ws://127.0.0.1:0 --bind wss://127.0.0.1:0 -c host=tcp://127.0.0.1:PEER"
    printf 'lat_count\t%s\n' "$LAT_COUNT"
    printf 'lat_size\t%s\n' "$LAT_SIZE"
    printf 'source_mib\t%s\n' "$SOURCE_MIB"
    printf 'upload_mib\t%s\n' "$UPLOAD_MIB"
    printf 'upload_msg\t%s\n' "$UPLOAD_MSG"
    for c in "${!SPEED[@]}"; do printf 'speed_%s\t%s\n' "$c" "${SPEED[$c]}"; done
} >"$META"

COMMANDS=$WORK/commands.txt
{
    echo "# all of it ($RUNS runs each; TLS_MIB=256 for shorter transfers):"
    echo "RUNS=$RUNS TLS_MIB=$TLS_MIB bench/tls.sh"
    echo
    echo "# by hand:"
    echo "cargo build --release -p websocksy -p websocksy-bench"
    echo "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout key.pem -out cert.pem -days 2 -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1"
    echo "target/release/wsbench serve &     # prints echo=PEER source=SOURCE sink=SINK"
    echo "target/release/websocksy --cert cert.pem --key key.pem --bind ws://127.0.0.1:0 --bind wss://127.0.0.1:0 -c host=tcp://127.0.0.1:PEER"
    echo "#   logs 'listening on ws://127.0.0.1:WS' and 'listening on wss://127.0.0.1:WSS'; SOURCE for source, SINK for upload"
    for sc in latency source upload; do
        for p in ws wss; do
            local port=WS
            [[ $p == wss ]] && port=WSS
            echo "target/release/wsbench $(client_args "$sc" "$p://127.0.0.1:$port/" BRIDGE_PID) --ca cert.pem${CIPHERSUITES:+ --ciphersuites $CIPHERSUITES}"
        done
    done
    for c in aes-128-gcm aes-256-gcm chacha20-poly1305; do
        echo "openssl speed -mr -seconds $SPEED_SECS -bytes 16384 -evp $c"
    done
} >"$COMMANDS"

"$WSBENCH" tls-report --results "$RESULTS" --meta "$META" --commands "$COMMANDS" >"$WORK/section.md"
cp "$WORK/section.md" "$ROOT/bench/last-tls.md"
cp "$RESULTS" "$ROOT/bench/last-tls-results.tsv"

# Put the section into OUT: in place of the previous one, else before
# "## Against the targets", else at the end.
if [[ -f $OUT ]]; then
    python3 - "$OUT" "$WORK/section.md" <<'PY'
import sys
out, sec = sys.argv[1], open(sys.argv[2]).read()
text = open(out).read()
begin = "<!-- wss section: generated by bench/tls.sh -->"
end = "<!-- end of wss section -->"
if begin in text and end in text:
    a = text.index(begin)
    b = text.index(end) + len(end)
    while text[b:b + 1] == "\n":
        b += 1
    text = text[:a] + sec + text[b:]
elif "\n## Against the targets" in text:
    i = text.index("\n## Against the targets") + 1
    text = text[:i] + sec + text[i:]
else:
    text = text.rstrip("\n") + "\n\n" + sec
open(out, "w").write(text)
PY
else
    cp "$WORK/section.md" "$OUT"
fi
log "wrote the wss:// section into $OUT (and bench/last-tls.md; raw results: bench/last-tls-results.tsv)"

}

main "$@"
exit $?
