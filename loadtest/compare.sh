#!/usr/bin/env bash
# Side-by-side comparison of kreisel and crossbar.io on loopback, with kreisel-loadtest.
#
# Starts each router in turn (crossbar from a venv under target/compare/, kreisel from a release build), runs the
# same bounded scenarios against it, stops it (always, also on error or Ctrl-C), and writes the results into a
# fresh output directory (never over the committed docs unless asked with OUT_DIR=docs).
#
# Suites (each on a freshly started router):
#   throughput   8 small scenarios x WebSocket/RawSocket x JSON/MessagePack: COMPARISON.md (absolute numbers and
#                kreisel/crossbar ratios), comparison.svg, compare-results/*.json
#   slow         `slow`: 10 fast subscribers, then also 10 that never read; 1000 events/s of 1 KiB for 30 s
#   soak         `soak` for SOAK_DURATION
#   reliability  slow and soak. Both over RawSocket/MessagePack: reliability/<router>-{slow,soak}.{txt,json,svg}.
#                A router whose resident memory passes RSS_MAX_MIB is stopped (by the load generator's
#                --router-rss-max, and by a watchdog here), and that is reported.
#
# Usage: loadtest/compare.sh [options]
#   --suites "LIST"            suites to run, in order [throughput]; e.g. --suites "throughput reliability"
#   --routers "LIST"           routers to run, in this order (the first is the ratios' baseline) [crossbar kreisel]
#   --out-dir DIR              where everything goes [target/compare/out-<date>-<time>]; OUT_DIR=docs for the docs
#   --crossbar-ws-port N       crossbar's WebSocket port [18080]
#   --crossbar-rs-port N       crossbar's RawSocket port [18081]
#   --kreisel-ws-port N        kreisel's WebSocket port [18180]
#   --kreisel-rs-port N        kreisel's RawSocket port [18181]
#   --kreisel-metrics-port N   kreisel's metrics listener (reliability suite) [18190]
# Environment (the same settings, and more; defaults in brackets):
#   SUITES, ROUTERS, OUT_DIR, CROSSBAR_WS_PORT, CROSSBAR_RS_PORT, KREISEL_WS_PORT, KREISEL_RS_PORT,
#   KREISEL_METRICS_PORT   as the options above
#   CROSSBAR_VENV [target/compare/venv]   created with `pip install crossbar` when missing
#   CARGO_TARGET_DIR [target]    where cargo builds kreisel-loadtest and kreisel
#   TIMEOUT [20]                 --timeout of every loadtest run (seconds without progress)
#   QUICK [0]                    1: one transport/serializer pair and fewer throughput scenarios (a smoke run)
#   RSS_MAX_MIB [2048]           memory ceiling of a router in the reliability suite
#   SOAK_DURATION [120s]         length of each soak
# Only 127.0.0.1 is used. The exit status is 0 when results were written (failed runs are logged with their exit
# status and kept in the results, marked), 1 when there were none, 2 for a bad command line.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
SUITES=${SUITES:-throughput}
ROUTERS=${ROUTERS:-"crossbar kreisel"}
OUT_DIR=${OUT_DIR:-$ROOT/target/compare/out-$(date +%Y%m%d-%H%M%S)}
CROSSBAR_WS_PORT=${CROSSBAR_WS_PORT:-18080}
CROSSBAR_RS_PORT=${CROSSBAR_RS_PORT:-18081}
KREISEL_WS_PORT=${KREISEL_WS_PORT:-18180}
KREISEL_RS_PORT=${KREISEL_RS_PORT:-18181}
KREISEL_METRICS_PORT=${KREISEL_METRICS_PORT:-18190}
RSS_MAX_MIB=${RSS_MAX_MIB:-2048}
SOAK_DURATION=${SOAK_DURATION:-120s}

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
}

while (($# > 0)); do
    case $1 in
        --suites) SUITES=$2 ;;
        --routers) ROUTERS=$2 ;;
        --out-dir) OUT_DIR=$2 ;;
        --crossbar-ws-port) CROSSBAR_WS_PORT=$2 ;;
        --crossbar-rs-port) CROSSBAR_RS_PORT=$2 ;;
        --kreisel-ws-port) KREISEL_WS_PORT=$2 ;;
        --kreisel-rs-port) KREISEL_RS_PORT=$2 ;;
        --kreisel-metrics-port) KREISEL_METRICS_PORT=$2 ;;
        -h | --help)
            usage
            exit 0
            ;;
        *)
            echo "compare.sh: unknown option $1 (see --help)" >&2
            exit 2
            ;;
    esac
    if (($# < 2)); then
        echo "compare.sh: $1 needs a value" >&2
        exit 2
    fi
    shift 2
done
for port in "$CROSSBAR_WS_PORT" "$CROSSBAR_RS_PORT" "$KREISEL_WS_PORT" "$KREISEL_RS_PORT" "$KREISEL_METRICS_PORT"; do
    if ! [[ "$port" =~ ^[0-9]+$ ]] || ((port < 1 || port > 65535)); then
        echo "compare.sh: bad port $port" >&2
        exit 2
    fi
done

CROSSBAR_VENV=${CROSSBAR_VENV:-$ROOT/target/compare/venv}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
TIMEOUT=${TIMEOUT:-20}
QUICK=${QUICK:-0}
LOADTEST=$TARGET_DIR/release/kreisel-loadtest
WORK=$(mktemp -d "${TMPDIR:-/tmp}/kreisel-compare.XXXXXX")
RESULTS=$WORK/results
mkdir -p "$RESULTS" "$OUT_DIR"

ROUTER_PID=""      # the process we started (and must stop)
ROUTER_MEASURE=""  # the process that routes (crossbar: its router worker), for CPU and memory
WATCHDOG_PID=""
WS_PORT=""
RS_PORT=""
METRICS_URL=""
FAILED_RUNS=()

log() { printf '[compare] %s\n' "$*" >&2; }

stop_watchdog() {
    if [[ -n "$WATCHDOG_PID" ]]; then
        kill "$WATCHDOG_PID" 2>/dev/null || true
        wait "$WATCHDOG_PID" 2>/dev/null || true
        WATCHDOG_PID=""
    fi
}

stop_router() {
    stop_watchdog
    if [[ -n "$ROUTER_PID" ]] && kill -0 "$ROUTER_PID" 2>/dev/null; then
        kill -TERM "$ROUTER_PID" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$ROUTER_PID" 2>/dev/null || break
            sleep 0.2
        done
        kill -KILL "$ROUTER_PID" 2>/dev/null || true
        wait "$ROUTER_PID" 2>/dev/null || true
    fi
    # crossbar's worker is a child of its controller: make sure it went too.
    if [[ -n "$ROUTER_MEASURE" && "$ROUTER_MEASURE" != "$ROUTER_PID" ]] && kill -0 "$ROUTER_MEASURE" 2>/dev/null; then
        kill -KILL "$ROUTER_MEASURE" 2>/dev/null || true
    fi
    ROUTER_PID=""
    ROUTER_MEASURE=""
}

cleanup() {
    stop_router
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_port() { # port seconds
    local port=$1 deadline=$((SECONDS + $2))
    until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
        if ((SECONDS >= deadline)); then
            return 1
        fi
        if [[ -n "$ROUTER_PID" ]] && ! kill -0 "$ROUTER_PID" 2>/dev/null; then
            return 1
        fi
        sleep 0.2
    done
}

# Stops the router when the routing process's resident memory passes RSS_MAX_MIB (checked every second), and
# leaves a note in $1.
start_watchdog() { # note-file
    local note=$1 measure=$ROUTER_MEASURE limit_kib=$((RSS_MAX_MIB * 1024))
    (
        while kill -0 "$measure" 2>/dev/null; do
            rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$measure/status" 2>/dev/null || echo 0)
            if ((${rss:-0} > limit_kib)); then
                echo "the router's RSS reached $((rss / 1024)) MiB, past the ceiling of $RSS_MAX_MIB MiB: stopped" >"$note"
                kill -KILL "$measure" 2>/dev/null || true
                exit 0
            fi
            sleep 1
        done
    ) &
    WATCHDOG_PID=$!
}

# --- crossbar -----------------------------------------------------------------------------------------------------

ensure_crossbar() {
    if [[ ! -x "$CROSSBAR_VENV/bin/crossbar" ]]; then
        log "installing crossbar into $CROSSBAR_VENV (takes a few minutes)"
        python3 -m venv "$CROSSBAR_VENV"
        "$CROSSBAR_VENV/bin/pip" install --quiet crossbar
    fi
}

# realm1, the anonymous role may do everything; WebSocket and RawSocket, both with JSON and MessagePack.
crossbar_config() { # dir ws_port rs_port
    mkdir -p "$1/.crossbar"
    cat >"$1/.crossbar/config.json" <<EOF
{
  "version": 2,
  "controller": {},
  "workers": [{
    "type": "router",
    "realms": [{
      "name": "realm1",
      "roles": [{
        "name": "anonymous",
        "permissions": [{
          "uri": "", "match": "prefix",
          "allow": {"call": true, "register": true, "publish": true, "subscribe": true},
          "disclose": {"caller": false, "publisher": false},
          "cache": true
        }]
      }]
    }],
    "transports": [
      {
        "type": "websocket",
        "endpoint": {"type": "tcp", "interface": "127.0.0.1", "port": $2, "backlog": 1024},
        "serializers": ["json", "msgpack"],
        "options": {"max_message_size": 16777216}
      },
      {
        "type": "rawsocket",
        "endpoint": {"type": "tcp", "interface": "127.0.0.1", "port": $3, "backlog": 1024},
        "serializers": ["json", "msgpack"],
        "options": {"max_message_size": 16777216}
      }
    ]
  }]
}
EOF
}

start_crossbar() {
    ensure_crossbar
    WS_PORT=$CROSSBAR_WS_PORT
    RS_PORT=$CROSSBAR_RS_PORT
    METRICS_URL=""
    local dir=$WORK/crossbar
    crossbar_config "$dir" "$WS_PORT" "$RS_PORT"
    "$CROSSBAR_VENV/bin/crossbar" start --cbdir "$dir/.crossbar" >"$WORK/crossbar.log" 2>&1 &
    ROUTER_PID=$!
    if ! wait_port "$RS_PORT" 60 || ! wait_port "$WS_PORT" 10; then
        log "crossbar did not start; its log:"
        tail -20 "$WORK/crossbar.log" >&2
        return 1
    fi
    # The controller forks one router worker: that is where the routing happens.
    ROUTER_MEASURE=$(pgrep -P "$ROUTER_PID" | head -1 || true)
    ROUTER_MEASURE=${ROUTER_MEASURE:-$ROUTER_PID}
}

# --- kreisel ------------------------------------------------------------------------------------------------------

# kreisel's configuration equivalent to the crossbar one: realm1 open to anonymous clients, WebSocket (json,
# msgpack) and RawSocket on loopback, every limit at its default; plus a metrics listener.
kreisel_config() { # file ws_port rs_port metrics_port
    cat >"$1" <<EOF
# Written by loadtest/compare.sh.
[[realms]]
name = "realm1"

[[listeners]]
listen = "127.0.0.1:$2"
transports = ["websocket"]
path = "/ws"
serializers = ["json", "msgpack"]

[[listeners]]
listen = "127.0.0.1:$3"
transports = ["rawsocket"]
serializers = ["json", "msgpack"]

[[listeners]]
listen = "127.0.0.1:$4"
transports = ["websocket"]
metrics = "/metrics"

[log]
level = "warn"
EOF
}

start_kreisel() {
    WS_PORT=$KREISEL_WS_PORT
    RS_PORT=$KREISEL_RS_PORT
    METRICS_URL="http://127.0.0.1:$KREISEL_METRICS_PORT/metrics"
    log "building kreisel (release)"
    if ! cargo build --release --quiet -p kreisel-io; then
        log "kreisel did not build: skipping it"
        return 1
    fi
    kreisel_config "$WORK/kreisel.toml" "$WS_PORT" "$RS_PORT" "$KREISEL_METRICS_PORT"
    "$TARGET_DIR/release/kreisel" --config "$WORK/kreisel.toml" >"$WORK/kreisel.log" 2>&1 &
    ROUTER_PID=$!
    ROUTER_MEASURE=$ROUTER_PID
    if ! wait_port "$RS_PORT" 20 || ! wait_port "$WS_PORT" 5; then
        log "kreisel did not start listening on $WS_PORT/$RS_PORT; its log:"
        tail -20 "$WORK/kreisel.log" >&2
        return 1
    fi
}

# --- throughput ---------------------------------------------------------------------------------------------------

# Small, bounded counts: every run takes a few seconds at most even against a slow router.
SCENARIOS=(
    "fanout --subscribers 10 --events 2000"
    "fanout --subscribers 10 --events 1000 --rate 500"
    "fanin --publishers 10 --events 500"
    "fanin --publishers 10 --events 500 --exact"
    "rpc --callers 4 --callees 2 --calls 500 --window 8"
    "rpc --calls 500 --rate 200"
    "connect --sessions 200"
    "churn --sessions 4 --duration 2"
)
PAIRS=("ws json" "ws msgpack" "rs json" "rs msgpack")
if [[ "$QUICK" == 1 ]]; then
    SCENARIOS=("${SCENARIOS[0]}" "${SCENARIOS[4]}" "${SCENARIOS[6]}")
    PAIRS=("rs msgpack")
fi

# Runs one loadtest command, bounded in time; logs it with its real exit status.
run_loadtest() { # router what limit-seconds args...
    local router=$1 what=$2 limit=$3 rc=0
    shift 3
    timeout "$limit" "$LOADTEST" "$@" || rc=$?
    if ((rc == 0)); then
        log "$router: ok      $what"
    else
        case $rc in
            1) why="lost, duplicated or reordered messages" ;;
            3) why="no progress within --timeout" ;;
            4) why="error" ;;
            5) why="the router passed the memory ceiling" ;;
            124) why="killed after $limit s" ;;
            *) why="" ;;
        esac
        log "$router: FAILED  $what: exit $rc${why:+ ($why)}"
        FAILED_RUNS+=("$router: $what (exit $rc)")
    fi
    return "$rc"
}

run_throughput() { # router
    local router=$1 n=0
    for pair in "${PAIRS[@]}"; do
        read -r scheme ser <<<"$pair"
        local url
        case $scheme in
            ws) url="ws://127.0.0.1:$WS_PORT/ws" ;;
            rs) url="rs://127.0.0.1:$RS_PORT" ;;
        esac
        for scenario in "${SCENARIOS[@]}"; do
            n=$((n + 1))
            local out
            out=$RESULTS/$router-$(printf '%02d' "$n").json
            # shellcheck disable=SC2086 # the scenario string is a list of arguments
            run_loadtest "$router" "$scenario ($url $ser)" $((TIMEOUT * 6 + 30)) $scenario --url "$url" \
                --serializer "$ser" --label "$router" --router-pid "$ROUTER_MEASURE" --timeout "$TIMEOUT" \
                --quiet --json "$out" || true
            if ! kill -0 "$ROUTER_PID" 2>/dev/null; then
                log "$router died; skipping its remaining scenarios"
                return 1
            fi
        done
    done
}

write_throughput_report() {
    shopt -s nullglob
    local files=("$RESULTS"/*.json)
    if ((${#files[@]} == 0)); then
        log "throughput: no results"
        return 1
    fi
    local args=()
    for f in "${files[@]}"; do
        args+=(--json "$f")
    done
    # The baseline of the ratios is the first router that produced results.
    local baseline=""
    for router in $ROUTERS; do
        if compgen -G "$RESULTS/$router-*.json" >/dev/null; then
            baseline=$router
            break
        fi
    done
    mkdir -p "$OUT_DIR/compare-results"
    cp "${files[@]}" "$OUT_DIR/compare-results/"
    "$LOADTEST" report "${args[@]}" --baseline "$baseline" --md "$OUT_DIR/COMPARISON.md" \
        --svg "$OUT_DIR/comparison.svg"
    log "wrote $OUT_DIR/COMPARISON.md and $OUT_DIR/comparison.svg"
}

# --- reliability --------------------------------------------------------------------------------------------------

# The router's limit on bytes queued per connection, for the memory budget in the report (crossbar has none).
outbox_args() { # router
    case $1 in
        kreisel) echo "--outbox-max 16777216" ;;
        *) echo "" ;;
    esac
}

run_slow() { # router
    local router=$1 dir=$OUT_DIR/reliability
    mkdir -p "$dir"
    local url="rs://127.0.0.1:$RS_PORT" metrics=()
    if [[ -n "$METRICS_URL" ]]; then
        metrics=(--metrics-url "$METRICS_URL")
    fi
    start_watchdog "$dir/$router-slow-ceiling.txt"
    log "$router: slow (10 fast subscribers; 0, then 10 that never read; 1000 events/s of 1 KiB for 30 s)"
    # shellcheck disable=SC2046 # outbox_args is a list of arguments
    run_loadtest "$router" "slow" 600 slow --url "$url" --serializer msgpack --subscribers 10 --slow 0,10 \
        --rate 1000 --size 1024 --duration 30 --label "$router" --router-pid "$ROUTER_MEASURE" \
        --router-rss-max "$RSS_MAX_MIB" "${metrics[@]}" $(outbox_args "$router") --timeout "$TIMEOUT" \
        --json "$dir/$router-slow.json" --svg "$dir/$router-slow.svg" >"$dir/$router-slow.txt" || true
    if ! kill -0 "$ROUTER_MEASURE" 2>/dev/null; then
        log "$router: stopped during slow: $(cat "$dir/$router-slow-ceiling.txt" 2>/dev/null || echo "it died")"
        return 1
    fi
    stop_watchdog
}

run_soak() { # router
    local router=$1 dir=$OUT_DIR/reliability
    mkdir -p "$dir"
    local url="rs://127.0.0.1:$RS_PORT" metrics=()
    if [[ -n "$METRICS_URL" ]]; then
        metrics=(--metrics-url "$METRICS_URL")
    fi
    start_watchdog "$dir/$router-soak-ceiling.txt"
    log "$router: soak for $SOAK_DURATION"
    run_loadtest "$router" "soak $SOAK_DURATION" 7200 soak --url "$url" --serializer msgpack \
        --duration "$SOAK_DURATION" --label "$router" --router-pid "$ROUTER_MEASURE" \
        --router-rss-max "$RSS_MAX_MIB" "${metrics[@]}" --timeout "$TIMEOUT" \
        --json "$dir/$router-soak.json" --svg "$dir/$router-soak.svg" >"$dir/$router-soak.txt" || true
    if ! kill -0 "$ROUTER_MEASURE" 2>/dev/null; then
        log "$router: stopped during soak: $(cat "$dir/$router-soak-ceiling.txt" 2>/dev/null || echo "it died")"
        return 1
    fi
    stop_watchdog
}

# --- main ---------------------------------------------------------------------------------------------------------

SUITES=${SUITES//reliability/slow soak}
for suite in $SUITES; do
    case $suite in
        throughput | slow | soak) ;;
        *)
            echo "compare.sh: unknown suite $suite (throughput, slow, soak, reliability)" >&2
            exit 2
            ;;
    esac
done
log "results go to $OUT_DIR"
log "building kreisel-loadtest (release)"
cargo build --release --quiet -p kreisel-loadtest
wrote=0
for router in $ROUTERS; do
    for suite in $SUITES; do
        log "starting $router ($suite)"
        if "start_$router"; then
            "run_$suite" "$router" || true
        else
            log "$router could not be started: no $suite results for it"
        fi
        stop_router
    done
done
if [[ " $SUITES " == *" throughput "* ]] && write_throughput_report; then
    wrote=1
fi
if compgen -G "$OUT_DIR/reliability/*.json" >/dev/null; then
    log "wrote $OUT_DIR/reliability/"
    wrote=1
fi
if ((${#FAILED_RUNS[@]} > 0)); then
    log "${#FAILED_RUNS[@]} run(s) failed (kept in the results with their status):"
    for f in "${FAILED_RUNS[@]}"; do
        log "  $f"
    done
fi
if ((wrote == 0)); then
    log "no results"
    exit 1
fi
