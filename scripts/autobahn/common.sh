# Shared by scripts/autobahn.sh (wstest fuzzingclient against websocksy's
# server mode) and scripts/autobahn-client.sh (wstest fuzzingserver against
# `websocksy connect`). Sourced, not run. The caller sets ROOT (the
# repository) and TAG (its name for messages); this sets HERE,
# REQUIREMENTS, PY27, WSTEST and PY.

HERE="$ROOT/scripts/autobahn"
REQUIREMENTS="$HERE/requirements-py27.txt"

pyenv_root() {
    if [ -n "${PYENV_ROOT:-}" ]; then
        echo "$PYENV_ROOT"
    elif command -v pyenv >/dev/null 2>&1; then
        pyenv root
    else
        echo "$HOME/.pyenv"
    fi
}
PY27="$(pyenv_root)/versions/2.7.18/bin/python"
WSTEST="${WSTEST:-$(dirname "$PY27")/wstest}"
# The helper runs under wstest's own interpreter (always there when wstest is).
PY="$(dirname "$WSTEST")/python"
[ -x "$PY" ] || PY="$(command -v python3 || command -v python || true)"

install_hint() {
    cat >&2 <<EOF
$TAG: wstest (Autobahn|Testsuite 0.8.2) is not installed at $WSTEST.
  Install it with:   scripts/autobahn.sh --install
  which runs:        $PY27 -m pip install -r scripts/autobahn/requirements-py27.txt
  (needs pyenv's Python 2.7.18 and gcc; .ci/run does this on CI)
  Or point WSTEST at another wstest; set WEBSOCKSY_SKIP_AUTOBAHN=1 to skip the cargo test.
EOF
}

wstest_ok() {
    [ -x "$WSTEST" ] && [ -x "$PY" ] &&
        "$PY" -c 'import autobahntestsuite, autobahn, twisted' >/dev/null 2>&1
}

# --check and --install: do it and exit.
check_or_install() {
    case "$1" in
        check)
            if wstest_ok; then echo "$TAG: wstest at $WSTEST"; exit 0; fi
            install_hint
            exit 3
            ;;
        install)
            if [ ! -x "$PY27" ]; then
                echo "$TAG: $PY27 not found: Python 2.7.18 under pyenv is required (pyenv install 2.7.18)" >&2
                exit 2
            fi
            # Every version is pinned, so this is a no-op once installed. Quiet
            # when it works, the whole pip output when it does not.
            local piplog
            piplog="$(mktemp)"
            if ! "$PY27" -m pip install --disable-pip-version-check --no-warn-script-location \
                -r "$REQUIREMENTS" >"$piplog" 2>&1; then
                cat "$piplog" >&2
                rm -f "$piplog"
                echo "$TAG: pip install -r scripts/autobahn/requirements-py27.txt failed" >&2
                exit 2
            fi
            rm -f "$piplog"
            wstest_ok || { echo "$TAG: install finished but wstest does not work" >&2; exit 2; }
            echo "$TAG: wstest installed at $WSTEST"
            exit 0
            ;;
    esac
}

# Set WEBSOCKSY_BIN: as given, else build the release binary.
release_binary() {
    if [ -z "${WEBSOCKSY_BIN:-}" ]; then
        echo "$TAG: building the release binary"
        (cd "$ROOT" && "${CARGO:-cargo}" build --release --quiet -p websocksy --bin websocksy)
        WEBSOCKSY_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/websocksy"
    fi
    [ -x "$WEBSOCKSY_BIN" ] || { echo "$TAG: no binary at $WEBSOCKSY_BIN" >&2; exit 2; }
}

# A self-signed P-256 certificate for 127.0.0.1, for this run only:
# $1/cert.pem and $1/key.pem.
throwaway_cert() {
    if ! openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$1/key.pem" -out "$1/cert.pem" -days 2 -subj /CN=127.0.0.1 \
        -addext subjectAltName=IP:127.0.0.1 >"$1/openssl.log" 2>&1; then
        cat "$1/openssl.log" >&2
        echo "$TAG: cannot make a certificate with openssl" >&2
        exit 2
    fi
}

# Summarise the report in $1 with autobahn.py (mode name $2, expected case
# count $3 or empty), then exit: 2 when there is no usable report, 1 when
# the summary or $PROBLEMS (set by the caller) says something failed, 0
# otherwise.
summarise_and_exit() {
    local out="$1" rc
    set +e
    "$PY" "$HERE/autobahn.py" summary "$out" "$2" ${3:+"$3"}
    rc=$?
    set -e
    echo ""
    echo "$TAG: reports in ${out#"$ROOT"/}/index.html (per case: ${out#"$ROOT"/}/*.json)"
    if [ "$rc" -eq 2 ]; then exit 2; fi
    if [ "$rc" -ne 0 ] || [ "$PROBLEMS" -ne 0 ]; then
        echo "$TAG: FAILED"
        exit 1
    fi
    echo "$TAG: passed (no FAILED case)"
    exit 0
}
