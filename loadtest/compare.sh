#!/usr/bin/env bash
# Side-by-side comparison of kreisel and crossbar.io on loopback, with kreisel-loadtest.
#
# Starts each router in turn (crossbar from a venv under target/compare/, kreisel from a release build), runs the
# same list of small, bounded scenarios against it over WebSocket and RawSocket with JSON and MessagePack, stops it
# (always, also on error or Ctrl-C), and writes a markdown table (absolute numbers and kreisel/crossbar ratios) and
# an SVG chart into docs/.
#
# Usage: loadtest/compare.sh            # both routers
#        ROUTERS=crossbar loadtest/compare.sh
# Environment (defaults in brackets):
#   ROUTERS [crossbar kreisel]   routers to run, in this order (the first is the ratios' baseline)
#   OUT_DIR [docs]               where COMPARISON.md, comparison.svg and the raw JSON results go
#   CROSSBAR_VENV [target/compare/venv]   created with `pip install crossbar` when missing
#   CARGO_TARGET_DIR [target]    where cargo builds kreisel-loadtest and kreisel
#   TIMEOUT [20]                 --timeout of every loadtest run (seconds without progress)
#   QUICK [0]                    1: one transport/serializer pair and fewer scenarios (a smoke run)
# Ports: crossbar 18080 (WebSocket) / 18081 (RawSocket); kreisel 18180 / 18181. Only 127.0.0.1 is used.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
ROUTERS=${ROUTERS:-"crossbar kreisel"}
OUT_DIR=${OUT_DIR:-$ROOT/docs}
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
WS_PORT=""
RS_PORT=""

log() { printf '[compare] %s\n' "$*" >&2; }

stop_router() {
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
    WS_PORT=18080
    RS_PORT=18081
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
# msgpack) and RawSocket on loopback.
kreisel_config() { # file ws_port rs_port
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

[log]
level = "warn"
EOF
}

start_kreisel() {
    WS_PORT=18180
    RS_PORT=18181
    log "building kreisel (release)"
    if ! cargo build --release --quiet -p kreisel-io; then
        log "kreisel does not build yet: skipping it"
        return 1
    fi
    kreisel_config "$WORK/kreisel.toml" "$WS_PORT" "$RS_PORT"
    "$TARGET_DIR/release/kreisel" --config "$WORK/kreisel.toml" >"$WORK/kreisel.log" 2>&1 &
    ROUTER_PID=$!
    ROUTER_MEASURE=$ROUTER_PID
    if ! wait_port "$RS_PORT" 20 || ! wait_port "$WS_PORT" 5; then
        log "kreisel did not start listening on $WS_PORT/$RS_PORT; its log:"
        tail -20 "$WORK/kreisel.log" >&2
        return 1
    fi
}

# --- scenarios ----------------------------------------------------------------------------------------------------

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

run_scenarios() { # router
    local router=$1 n=0 failed=0
    for pair in "${PAIRS[@]}"; do
        read -r scheme ser <<<"$pair"
        local url
        case $scheme in
            ws) url="ws://127.0.0.1:$WS_PORT/ws" ;;
            rs) url="rs://127.0.0.1:$RS_PORT" ;;
        esac
        for scenario in "${SCENARIOS[@]}"; do
            n=$((n + 1))
            local out=$RESULTS/$router-$(printf '%02d' "$n").json
            # shellcheck disable=SC2086 # the scenario string is a list of arguments
            if timeout $((TIMEOUT * 6 + 30)) "$LOADTEST" $scenario --url "$url" --serializer "$ser" \
                --label "$router" --router-pid "$ROUTER_MEASURE" --timeout "$TIMEOUT" --quiet --json "$out"; then
                log "$router: ok      $scenario ($url $ser)"
            else
                failed=$((failed + 1))
                log "$router: FAILED  $scenario ($url $ser), exit $?"
            fi
            if ! kill -0 "$ROUTER_PID" 2>/dev/null; then
                log "$router died; skipping its remaining scenarios"
                return 1
            fi
        done
    done
    if ((failed > 0)); then
        log "$router: $failed run(s) failed (kept in the report with their status)"
    fi
}

log "building kreisel-loadtest (release)"
cargo build --release --quiet -p kreisel-loadtest
for router in $ROUTERS; do
    log "starting $router"
    if "start_$router"; then
        run_scenarios "$router" || true
    else
        log "$router could not be started: no results for it"
    fi
    stop_router
done

shopt -s nullglob
files=("$RESULTS"/*.json)
if ((${#files[@]} == 0)); then
    log "no results"
    exit 1
fi
args=()
for f in "${files[@]}"; do
    args+=(--json "$f")
done
# The baseline of the ratios is the first router that produced results.
baseline=""
for router in $ROUTERS; do
    if compgen -G "$RESULTS/$router-*.json" >/dev/null; then
        baseline=$router
        break
    fi
done
mkdir -p "$OUT_DIR/compare-results"
cp "${files[@]}" "$OUT_DIR/compare-results/"
"$LOADTEST" report "${args[@]}" --baseline "$baseline" --md "$OUT_DIR/COMPARISON.md" --svg "$OUT_DIR/comparison.svg"
log "wrote $OUT_DIR/COMPARISON.md and $OUT_DIR/comparison.svg"
