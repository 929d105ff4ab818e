#!/usr/bin/env bash
# A/B of two kreisel binaries on the two latency scenarios of loadtest/shards.sh, alternating runs so that both see
# the same machine: open loop (100 subscribers, 500 publications/s, 5000 events) and RPC (10 callers x window 10,
# one echo callee, 20000 calls), over RawSocket on loopback, each run against a freshly started router.
#
# Usage: loadtest/ab.sh BEFORE AFTER [RUNS] [SHARDS]   (defaults: 5 runs of each, 2 shards)
# Prints one line per run: p50/p99 of the open loop, calls/s and p50/p99 of the RPC run. Port 19281 (127.0.0.1).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
LOADTEST=$TARGET_DIR/release/kreisel-loadtest
BEFORE=${1:?usage: loadtest/ab.sh BEFORE AFTER [RUNS] [SHARDS]}
AFTER=${2:?usage: loadtest/ab.sh BEFORE AFTER [RUNS] [SHARDS]}
RUNS=${3:-5}
SHARDS=${4:-2}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/kreisel-ab.XXXXXX")
PID=""
# shellcheck source=loadtest/lib.sh
source "$ROOT/loadtest/lib.sh"

(cd "$ROOT" && cargo build --release -q -p kreisel-loadtest)
cat >"$WORK/kreisel.toml" <<EOF
[router]
shards = $SHARDS
[[realms]]
name = "realm1"
[[listeners]]
listen = "127.0.0.1:19281"
transports = ["rawsocket"]
[log]
level = "warn"
EOF

run() { # binary label
    "$1" --config "$WORK/kreisel.toml" 2>>"$WORK/kreisel.log" &
    PID=$!
    wait_port 19281
    "$LOADTEST" fanout --subscribers 100 --rate 500 --events 5000 -u rs://127.0.0.1:19281 --router-pid "$PID" -q \
        --timeout 20 --json "$WORK/open.json" >/dev/null
    "$LOADTEST" rpc --callers 10 --callees 1 --window 10 --calls 20000 -u rs://127.0.0.1:19281 --router-pid "$PID" \
        -q --timeout 20 --json "$WORK/rpc.json" >/dev/null
    stop
    python3 - "$2" "$WORK/open.json" "$WORK/rpc.json" <<'PY'
import json, sys
def load(path):
    r = json.load(open(path))
    return r[-1] if isinstance(r, list) else r
label, o, c = sys.argv[1], load(sys.argv[2]), load(sys.argv[3])
print(f"{label:<8} open loop p50 {o['latency_us']['p50'] / 1000:.2f} p99 {o['latency_us']['p99'] / 1000:.2f} ms | "
      f"rpc {c['msgs_per_s'] / 1000:.0f} k/s p50 {c['latency_us']['p50'] / 1000:.2f} p99 {c['latency_us']['p99'] / 1000:.2f} ms")
PY
}

echo "load before: $(uptime)"
for _ in $(seq 1 "$RUNS"); do
    run "$BEFORE" before
    run "$AFTER" after
done
echo "load after: $(uptime)"
