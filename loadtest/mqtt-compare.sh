#!/usr/bin/env bash
# kreisel's MQTT listener (1 and 2 shards) and mosquitto side by side in one run on loopback, with kreisel-loadtest's
# MQTT mode: the figures of docs/PERFORMANCE.md, "MQTT: kreisel vs mosquitto".
#
# Scenarios (each router fresh for each, one after another, so every row compares them under the same load):
#   fanin10k-q0    10,000 devices publish to one subscriber (sensors/<n>/temp, the subscriber on sensors/#), QoS 0,
#                  as fast as allowed (closed loop: a window per device, confirmed by PINGRESP)
#   fanin10k-q1    the same at QoS 1 (every PUBLISH acknowledged by PUBACK; the subscriber at QoS 1)
#   fanin10k-q1-50k  the same at a fixed 50,000 msg/s (open loop, latency from the intended send time)
#   fanout1000-q0  one publisher to 1,000 subscribers, QoS 0, closed loop
#   fanout1000-q1  the same at QoS 1
#   idle10k        10,000 connections that connect and stay idle: RSS growth per connection, connects/s
# Every result has throughput, latency percentiles and the broker's CPU time per message (--router-pid).
#
# Usage: loadtest/mqtt-compare.sh [OUT.md]     (default: target/mqtt-compare/RESULTS.md; raw JSON beside it)
# Environment: QUICK=1 (smaller counts: a smoke run), SCENARIOS="fanin10k-q0 ..." (a subset),
#              EVENTS_50K (publications per device in fanin10k-q1-50k; default 11: 110,000 in 2.2 s),
#              THREADS (the generator's worker threads; default 1), SHARDS (kreisel's shard counts; default "1 2"),
#              BROKER_CPUS and GENERATOR_CPUS (CPU lists for `taskset -c`: keep the broker and the generator on
#              cores of their own, e.g. BROKER_CPUS=0 GENERATOR_CPUS=1; default: unpinned),
#              MOSQUITTO (default /usr/sbin/mosquitto; Debian's package `mosquitto`), CARGO_TARGET_DIR.
# Ports (127.0.0.1 only): kreisel 19883, mosquitto 19884.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=${1:-$TARGET_DIR/mqtt-compare/RESULTS.md}
RAW=$(dirname "$OUT")/raw
MOSQUITTO=${MOSQUITTO:-/usr/sbin/mosquitto}
QUICK=${QUICK:-0}
THREADS=${THREADS:-1}
SHARDS=${SHARDS:-"1 2"}
BROKER_CPUS=${BROKER_CPUS:-}
GENERATOR_CPUS=${GENERATOR_CPUS:-}
SCENARIOS=${SCENARIOS:-"fanin10k-q0 fanin10k-q1 fanin10k-q1-50k fanout1000-q0 fanout1000-q1 idle10k"}
LOADTEST=$TARGET_DIR/release/kreisel-loadtest
KREISEL=$TARGET_DIR/release/kreisel
WORK=$(mktemp -d "${TMPDIR:-/tmp}/kreisel-mqtt-compare.XXXXXX")
rm -rf "$RAW"
mkdir -p "$RAW"
PID=""

log() { printf '[mqtt-compare] %s\n' "$*" >&2; }

# Command prefixes that pin to those CPUs (taskset, which execs the command: `$!` stays the broker's PID), or
# nothing. Not a shell function: a function run with `&` is a subshell, whose PID `stop` would kill, leaving the
# broker running.
BROKER_PIN=()
[[ -z $BROKER_CPUS ]] || BROKER_PIN=(taskset -c "$BROKER_CPUS")
GENERATOR_PIN=()
[[ -z $GENERATOR_CPUS ]] || GENERATOR_PIN=(taskset -c "$GENERATOR_CPUS")

# 10,000 connections need descriptors: as many as allowed (65536, or the hard limit where it is lower).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
if (($(ulimit -n) < 10100)); then
    log "ulimit -n is $(ulimit -n): 10,000 connections need more descriptors"
    exit 1
fi

# shellcheck source=loadtest/lib.sh
source "$ROOT/loadtest/lib.sh"

start_kreisel() { # shards
    cat >"$WORK/kreisel.toml" <<EOF
[router]
shards = $1
[[realms]]
name = "realm1"
[[listeners]]
listen = "127.0.0.1:19883"
transports = ["mqtt"]
realm = "realm1"
[limits]
connections_max = 30000
sessions_per_realm_max = 30000
[log]
level = "warn"
EOF
    ${BROKER_PIN[@]+"${BROKER_PIN[@]}"} "$KREISEL" --config "$WORK/kreisel.toml" 2>>"$WORK/kreisel.log" &
    PID=$!
    wait_port 19883
}

start_mosquitto() {
    # No persistence, no limits on in-flight or queued messages per client (so that a burst is queued rather than
    # dropped, as kreisel's outboxes queue it), anonymous access on loopback.
    cat >"$WORK/mosquitto.conf" <<EOF
listener 19884 127.0.0.1
allow_anonymous true
persistence false
max_connections -1
max_inflight_messages 0
max_queued_messages 0
max_queued_bytes 0
sys_interval 0
log_dest none
EOF
    ${BROKER_PIN[@]+"${BROKER_PIN[@]}"} "$MOSQUITTO" -c "$WORK/mosquitto.conf" >>"$WORK/mosquitto.log" 2>&1 &
    PID=$!
    wait_port 19884
}

# run LABEL NAME PORT COMMAND ARGS...: one measurement against the broker started last; JSON into $RAW.
run() {
    local label=$1 name=$2 port=$3
    shift 3
    local file="$RAW/$name--${label// /_}.json"
    if ! ${GENERATOR_PIN[@]+"${GENERATOR_PIN[@]}"} "$LOADTEST" "$@" -u "mqtt://127.0.0.1:$port" --label "$label" --router-pid "$PID" --json "$file" -q \
        --timeout 30 --connect-concurrency "$CONCURRENCY" --threads "$THREADS"; then
        log "$name against $label did not complete (see $file)"
    fi
}

# each NAME COMMAND ARGS: the scenario against kreisel with 1 and 2 shards and mosquitto, each started fresh.
each() {
    local name=$1
    shift
    for shards in $SHARDS; do
        start_kreisel "$shards"
        run "kreisel $shards shard$([[ $shards == 1 ]] || echo s)" "$name" 19883 "$@"
        stop
    done
    start_mosquitto
    run "mosquitto" "$name" 19884 "$@"
    stop
}

cargo build --release -q -p kreisel-io -p kreisel-loadtest
[[ -x "$MOSQUITTO" ]] || { log "mosquitto not found at $MOSQUITTO (apt-get install mosquitto)"; exit 1; }
if [[ $QUICK == 1 ]]; then devices=1000 per=5 events=200 idle=1000; else devices=10000 per=30 events=2000 idle=10000; fi
log "mosquitto: $("$MOSQUITTO" -h 2>/dev/null | head -1)"
log "load before: $(uptime)"
[[ -z $BROKER_CPUS$GENERATOR_CPUS ]] || log "pinned: broker on CPUs ${BROKER_CPUS:-any}, generator on ${GENERATOR_CPUS:-any}"
for scenario in $SCENARIOS; do
    log "$scenario"
    # Connections opened at once while setting up (idle10k: at most 100, so that no broker's listen backlog
    # overflows and the connect rate is the broker's, not SYN retries').
    CONCURRENCY=1000
    [[ $scenario == idle10k ]] && CONCURRENCY=100
    case $scenario in
        fanin10k-q0) each "$scenario" fanin --publishers "$devices" --events "$per" --window 8 --qos 0 ;;
        fanin10k-q1) each "$scenario" fanin --publishers "$devices" --events "$per" --window 8 --qos 1 ;;
        fanin10k-q1-50k) each "$scenario" fanin --publishers "$devices" --events "${EVENTS_50K:-$((per / 3 + 1))}" --rate 50000 --qos 1 ;;
        fanout1000-q0) each "$scenario" fanout --subscribers 1000 --events "$events" --qos 0 ;;
        fanout1000-q1) each "$scenario" fanout --subscribers 1000 --events "$events" --qos 1 ;;
        idle10k) each "$scenario" connect --sessions "$idle" --hold 0.5 ;;
        *) log "unknown scenario $scenario"; exit 2 ;;
    esac
done
log "load after: $(uptime)"

python3 - "$RAW" "$OUT" "$(uptime)" <<'EOF'
import glob, json, os, sys
raw, out, load = sys.argv[1:4]
results = {}
for path in sorted(glob.glob(os.path.join(raw, "*.json"))):
    r = json.load(open(path))
    r = r[-1] if isinstance(r, list) else r
    name = os.path.basename(path).split("--")[0]
    results.setdefault(name, {})[r.get("label")] = r
def fmt(x, digits=0):
    return "-" if x is None else f"{x:,.{digits}f}"
def ratio(a, b):
    return "-" if not a or not b else f"{a / b:.2f}x"
lines = [
    "| scenario | broker | status | msgs/s | p50 µs | p99 µs | broker CPU ns/msg | RSS per connection B | msgs/s vs mosquitto | CPU/msg vs mosquitto |",
    "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
]
for name, by_label in results.items():
    base = by_label.get("mosquitto", {})
    for label in ["kreisel 1 shard", "kreisel 2 shards", "mosquitto"]:
        r = by_label.get(label)
        if not r:
            continue
        lat = r.get("latency_us") or {}
        rate = r.get("msgs_per_s")
        if name.startswith("idle"):
            rate = r.get("sessions", 0) / r["duration_s"] if r.get("duration_s") else None
        base_rate = base.get("msgs_per_s")
        if name.startswith("idle") and base.get("duration_s"):
            base_rate = base.get("sessions", 0) / base["duration_s"]
        lines.append(
            f"| {name} | {label} | {r.get('status')} | {fmt(rate)} | {fmt(lat.get('p50'))} | {fmt(lat.get('p99'))} | "
            f"{fmt(r.get('router_cpu_ns_per_msg'))} | {fmt(r.get('router_rss_per_session_bytes'))} | "
            f"{ratio(rate, base_rate)} | {ratio(r.get('router_cpu_ns_per_msg'), base.get('router_cpu_ns_per_msg'))} |"
        )
text = "\n".join(lines) + f"\n\n(idle10k: msgs/s is connects per second.) Load after the run: {load}\n"
os.makedirs(os.path.dirname(out), exist_ok=True)
open(out, "w").write(text)
print(text)
EOF
