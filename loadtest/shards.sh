#!/usr/bin/env bash
# kreisel with 1 shard, kreisel with 2 shards, and nats-server, side by side in one run on loopback, with
# kreisel-loadtest: the figures of docs/PERFORMANCE.md, "Shards".
#
# For each scenario the three routers run one after another (fresh process each time), so every row compares
# them under the same machine load; the table gives throughput, latency percentiles and the router's CPU time per
# delivery (or call, or join). nats-server runs the fan-out scenarios only (through the generator's NATS mode).
#
# Usage: loadtest/shards.sh [OUT.md]          (default: target/shards/RESULTS.md; raw JSON beside it)
# Environment: QUICK=1 (smaller counts: a smoke run), SCENARIOS="fanout1000 fanout10 ..." (a subset),
#              CARGO_TARGET_DIR (default target), NATS_SERVER (default /usr/sbin/nats-server).
# Ports (127.0.0.1 only): kreisel 19180 (WebSocket) / 19181 (RawSocket), nats-server 19222.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=${1:-$TARGET_DIR/shards/RESULTS.md}
RAW=$(dirname "$OUT")/raw
NATS_SERVER=${NATS_SERVER:-/usr/sbin/nats-server}
QUICK=${QUICK:-0}
SCENARIOS=${SCENARIOS:-"fanout1000 fanout10 fanin100 rpc10 latency100 joins5000 idle5000"}
LOADTEST=$TARGET_DIR/release/kreisel-loadtest
KREISEL=$TARGET_DIR/release/kreisel
WORK=$(mktemp -d "${TMPDIR:-/tmp}/kreisel-shards.XXXXXX")
mkdir -p "$RAW"
PID=""

log() { printf '[shards] %s\n' "$*" >&2; }

# shellcheck source=loadtest/lib.sh
source "$ROOT/loadtest/lib.sh"

start_kreisel() { # shards
    cat >"$WORK/kreisel.toml" <<EOF
[router]
shards = $1
[[realms]]
name = "realm1"
[[listeners]]
listen = "127.0.0.1:19180"
transports = ["websocket"]
[[listeners]]
listen = "127.0.0.1:19181"
transports = ["rawsocket"]
[limits]
connections_max = 20000
sessions_per_realm_max = 20000
[log]
level = "warn"
EOF
    "$KREISEL" --config "$WORK/kreisel.toml" 2>>"$WORK/kreisel.log" &
    PID=$!
    wait_port 19181 && wait_port 19180
}

start_nats() {
    "$NATS_SERVER" -a 127.0.0.1 -p 19222 >>"$WORK/nats.log" 2>&1 &
    PID=$!
    wait_port 19222
}

# run LABEL NAME COMMAND ARGS...: one measurement against the router started last; JSON into $RAW.
run() {
    local label=$1 name=$2
    shift 2
    local file="$RAW/$name--${label// /_}.json"
    ulimit -n 65536 2>/dev/null || true
    if ! "$LOADTEST" "$@" --label "$label" --router-pid "$PID" --json "$file" -q --timeout 20; then
        log "$name against $label did not complete (see $file)"
    fi
}

# each NAME nats|no COMMAND ARGS: the scenario against kreisel 1 shard, 2 shards (RawSocket and WebSocket) and, for fan-out,
# nats-server.
each() {
    local name=$1 nats=$2 command=$3
    shift 3
    for shards in 1 2; do
        for url in rs://127.0.0.1:19181 ws://127.0.0.1:19180/ws; do
            start_kreisel "$shards"
            run "kreisel $shards shard$([[ $shards == 1 ]] || echo s)" "$name-${url%%:*}" "$command" -u "$url" "$@"
            stop
        done
    done
    if [[ $nats == nats ]]; then
        start_nats
        run "nats-server" "$name-nats" "$command" -u nats://127.0.0.1:19222 "$@"
        stop
    fi
}

cargo build --release -q -p kreisel-io -p kreisel-loadtest
[[ -x "$NATS_SERVER" ]] || { log "nats-server not found at $NATS_SERVER (apt-get install nats-server)"; exit 1; }
if [[ $QUICK == 1 ]]; then big=1000 small=20000 calls=2000 joins=1000; else big=10000 small=300000 calls=20000 joins=5000; fi
log "load before: $(uptime)"
for scenario in $SCENARIOS; do
    log "$scenario"
    case $scenario in
        fanout1000) each fanout1000 nats fanout --subscribers 1000 --events "$big" ;;
        fanout10) each fanout10 nats fanout --subscribers 10 --events "$small" ;;
        fanin100) each fanin100 no fanin --publishers 100 --events $((small / 100)) ;;
        rpc10) each rpc10 no rpc --callers 10 --callees 1 --window 10 --calls "$calls" ;;
        latency100) each latency100 nats fanout --subscribers 100 --rate 500 --events $((QUICK == 1 ? 500 : 5000)) ;;
        joins5000) each joins5000 no connect --sessions "$joins" --connect-concurrency "$joins" ;;
        idle5000) each idle5000 no connect --sessions "$joins" --connect-concurrency 100 --hold 0.5 ;;
        *) log "unknown scenario $scenario"; exit 2 ;;
    esac
done
log "load after: $(uptime)"

python3 - "$RAW" "$OUT" "$(uptime)" <<'EOF'
import glob, json, os, sys
raw, out, load = sys.argv[1:4]
rows = []
for path in sorted(glob.glob(os.path.join(raw, "*.json"))):
    r = json.load(open(path))
    r = r[-1] if isinstance(r, list) else r
    name = os.path.basename(path).split("--")[0]
    lat = r.get("latency_us") or {}
    rows.append((name, r.get("label"), r))
def fmt(x, digits=0):
    return "-" if x is None else f"{x:,.{digits}f}"
lines = [
    "| scenario | router | status | msgs/s | p50 µs | p99 µs | router CPU ns/msg | router RSS per session B |",
    "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
]
for name, label, r in rows:
    lat = r.get("latency_us") or {}
    lines.append(
        f"| {name} | {label} | {r.get('status')} | {fmt(r.get('msgs_per_s'))} | {fmt(lat.get('p50'))} | "
        f"{fmt(lat.get('p99'))} | {fmt(r.get('router_cpu_ns_per_msg'))} | {fmt(r.get('router_rss_per_session_bytes'))} |"
    )
text = "\n".join(lines) + f"\n\nload after the run: {load}\n"
os.makedirs(os.path.dirname(out), exist_ok=True)
open(out, "w").write(text)
print(text)
EOF
