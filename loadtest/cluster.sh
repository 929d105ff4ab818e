#!/usr/bin/env bash
# The cost of a cluster, in one run on loopback: 3 nats-servers (one NATS cluster with JetStream) and 3 kreisel
# nodes of 1 shard each (tests/cluster/up.sh), driven by kreisel-loadtest with sessions placed on chosen nodes. CPU
# is summed over all six processes (--router-pid of node 1, --extra-pid of the others), so idle nodes and servers
# count too. On a 2-core machine the 3 nodes share the cores: compare costs, not throughput.
#
# Rows:
#   fanout1000 1 node     1000 subscribers and the publisher on node 1
#   fanout1000 3 nodes    1000 subscribers spread over nodes 1-3 (session i on node i mod 3), publisher on node 2
#   fanout100 local       100 subscribers and the publisher on node 1
#   fanout100 cross       100 subscribers on node 2, the publisher on node 1 (every delivery crosses)
#   ...-paced             the two above at 4000 publications/s
#   rpc local             1 caller and 1 echo callee on node 1, one call at a time
#   rpc cross             the callee on node 2, the caller on node 1
#
# Usage: loadtest/cluster.sh [OUT.md]   (default: target/cluster-bench/RESULTS.md; raw JSON beside it)
# Environment: QUICK=1 (smaller counts), PORT_BASE (default 16200), NATS_SERVER, CARGO_TARGET_DIR.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=${1:-$TARGET_DIR/cluster-bench/RESULTS.md}
RAW=$(dirname "$OUT")/raw
QUICK=${QUICK:-0}
LOADTEST=$TARGET_DIR/release/kreisel-loadtest
export KREISEL=$TARGET_DIR/release/kreisel
export PORT_BASE=${PORT_BASE:-16200}
DIR=$(mktemp -d "${TMPDIR:-/tmp}/kreisel-cluster-bench.XXXXXX")
rmdir "$DIR"
mkdir -p "$RAW"
[[ -x "$LOADTEST" && -x "$KREISEL" ]] || {
    echo "build first: cargo build --release -p kreisel-io -p kreisel-loadtest" >&2
    exit 1
}

log() { printf '[cluster] %s\n' "$*" >&2; }
trap 'tests/cluster/down.sh "$DIR" >/dev/null 2>&1 || true' EXIT

SHARDS=1 tests/cluster/up.sh "$DIR" >/dev/null
# shellcheck disable=SC1091
source "$DIR/env"
pid() { cat "$DIR/$1.pid"; }
PIDS=(--router-pid "$(pid kreisel-1)")
for p in kreisel-2 kreisel-3 nats-1 nats-2 nats-3; do PIDS+=(--extra-pid "$(pid "$p")"); done
# Until every node hears the two others.
for i in 1 2 3; do
    url_var="NODE_${i}_METRICS"
    for _ in $(seq 1 200); do
        curl -s "${!url_var}" | grep -q '^kreisel_cluster_nodes 2' && break
        sleep 0.1
    done
done

# The idle cost of the six processes (heartbeats, JetStream's own traffic), to read the rows against.
ticks() {
    local total=0 p
    for p in kreisel-1 kreisel-2 kreisel-3 nats-1 nats-2 nats-3; do
        total=$((total + $(awk '{print $14 + $15}' "/proc/$(pid "$p")/stat")))
    done
    echo "$total"
}
idle_before=$(ticks)
sleep 5
idle_after=$(ticks)
IDLE_CPU_PER_S=$(python3 -c "print(f'{($idle_after - $idle_before) / $(getconf CLK_TCK) / 5:.3f}')")
log "idle: $IDLE_CPU_PER_S CPU s per s (6 processes)"

events=$((QUICK == 1 ? 200 : 2000))
events100=$((QUICK == 1 ? 2000 : 20000))
calls=$((QUICK == 1 ? 2000 : 20000))
N1=$NODE_1_RS N2=$NODE_2_RS N3=$NODE_3_RS

run() {
    local name=$1
    shift
    log "$name"
    "$LOADTEST" "$@" --serializer msgpack --quiet --timeout 60 --label "$name" "${PIDS[@]}" \
        --json "$RAW/$name.json"
}

run fanout1000-1node fanout --url "$N1" --subscribers 1000 --events "$events" --window 4
run fanout1000-3nodes fanout --url "$N1" --url "$N2" --url "$N3" --subscribers 1000 --events "$events" --window 4
run fanout100-local fanout --url "$N1" --subscribers 100 --events "$events100" --window 4
cross=()
for _ in $(seq 1 100); do cross+=(--url "$N2"); done
run fanout100-cross fanout "${cross[@]}" --url "$N1" --subscribers 100 --events "$events100" --window 4
# The same at a fixed rate (4000 publications/s, 400,000 deliveries/s, under what one node keeps up with), so
# that neither side batches more than the other.
rate_events=$((QUICK == 1 ? 2000 : 20000))
run fanout100-local-paced fanout --url "$N1" --subscribers 100 --events "$rate_events" --rate 4000
run fanout100-cross-paced fanout "${cross[@]}" --url "$N1" --subscribers 100 --events "$rate_events" --rate 4000
run rpc-local rpc --url "$N1" --callers 1 --callees 1 --window 1 --calls "$calls"
run rpc-cross rpc --url "$N2" --url "$N1" --callers 1 --callees 1 --window 1 --calls "$calls"

python3 - "$RAW" "$OUT" "$IDLE_CPU_PER_S" <<'PY'
import json, sys, pathlib
raw, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
idle = float(sys.argv[3])
rows = []
for name in ["fanout1000-1node", "fanout1000-3nodes", "fanout100-local", "fanout100-cross",
             "fanout100-local-paced", "fanout100-cross-paced", "rpc-local", "rpc-cross"]:
    r = json.loads((raw / f"{name}.json").read_text())
    received = r["received"] or 1
    cpu = r.get("router_cpu_s") or 0.0
    lat = r["latency_us"]
    rows.append(f"| {name} | {r['status']} | {r['sent']:,} | {r['received']:,} | {r['lost']} | {r['msgs_per_s']:,.0f} | "
                f"{cpu:.2f} | {cpu / received * 1e6:.2f} | {lat['p50']:.0f} | {lat['p99']:.0f} |")
head = ("| run | status | sent | delivered (events or results) | lost | per s | CPU s (6 processes) | "
        "CPU s per million delivered | p50 µs | p99 µs |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
tail = f"\nIdle: the six processes use {idle:.3f} CPU s per s with no client (heartbeats, JetStream).\n"
out.write_text(head + "\n" + "\n".join(rows) + "\n" + tail)
print(out.read_text())
PY
