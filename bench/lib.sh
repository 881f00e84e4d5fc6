# Shared by bench/run.sh and bench/tls.sh (sourced inside their main, so
# it needs their log function and QUIET_IDLE / QUIET_WAIT).

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
