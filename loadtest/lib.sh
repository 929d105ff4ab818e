# shellcheck shell=bash
# Sourced by the loadtest scripts that start one server at a time on loopback: PID is the server under test (empty
# when none runs), WORK the script's scratch folder. `source` it after setting both; it installs the EXIT trap.

# Stops the server under test: SIGTERM, up to 5 s to exit, then SIGKILL.
stop() {
    if [[ -n "$PID" ]] && kill -0 "$PID" 2>/dev/null; then
        kill -TERM "$PID" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
    fi
    PID=""
}
cleanup() { stop; rm -rf "$WORK"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# Waits until 127.0.0.1:PORT accepts connections (at most 10 s); fails at once if the server exited.
wait_port() { # port
    local deadline=$((SECONDS + 10))
    until (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do
        ((SECONDS < deadline)) || return 1
        kill -0 "$PID" 2>/dev/null || return 1
        sleep 0.1
    done
}
