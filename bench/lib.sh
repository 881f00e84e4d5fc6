# Shared by bench/run.sh and bench/tls.sh (sourced inside their main, so
# it needs their log function, QUIET_IDLE / QUIET_WAIT, WORK, PEER_PID and
# BRIDGE_PID).

# All descendants of a pid (websockify forks one process per connection).
tree_of() {
    local p c
    for p in "$@"; do
        echo "$p"
        for c in $(pgrep -P "$p" 2>/dev/null || true); do tree_of "$c"; done
    done
}

# Stops a process we started, and whatever it forked.
stop_pid() {
    local pid=$1 p
    [[ -n $pid ]] || return 0
    local tree
    tree=$(tree_of "$pid")
    for p in $tree; do kill "$p" 2>/dev/null || true; done
    for _ in $(seq 50); do
        local alive=0
        for p in $tree; do kill -0 "$p" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.1
    done
    for p in $tree; do kill -9 "$p" 2>/dev/null || true; done
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    stop_pid "$BRIDGE_PID"
    stop_pid "$PEER_PID"
    if [[ ${KEEP_WORK:-0} == 1 ]]; then log "work directory kept: $WORK"; else rm -rf "$WORK"; fi
}

# Sets IDLE_PCT to the CPU idle percentage over the next second.
sample_idle() {
    local a b
    read -r -a a </proc/stat
    sleep 1
    read -r -a b </proc/stat
    local i total=0 idle
    for i in 1 2 3 4 5 6 7 8; do total=$((total + b[i] - a[i])); done
    idle=$((b[4] - a[4] + b[5] - a[5]))
    IDLE_PCT=$((total > 0 ? 100 * idle / total : 100))
}

# Waits up to QUIET_WAIT seconds for a second in which the CPUs were at
# least QUIET_IDLE % idle (the machine is shared).
wait_quiet() {
    local start=$SECONDS
    while :; do
        sample_idle
        ((IDLE_PCT >= QUIET_IDLE)) && return 0
        if ((SECONDS - start >= QUIET_WAIT)); then
            log "machine still busy (${IDLE_PCT}% idle) after ${QUIET_WAIT}s; measuring anyway"
            return 0
        fi
    done
}
