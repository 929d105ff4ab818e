#!/usr/bin/env bash
# Starts a cluster on loopback: 3 nats-servers (one NATS cluster, JetStream) and 3 kreisel nodes, each node listing
# all three servers with its own first. Everything runs in the background; PIDs, configurations and logs go to DIR.
# Stop it with tests/cluster/down.sh DIR (by the recorded PIDs).
#
# Usage: tests/cluster/up.sh [DIR]        (default DIR: /tmp/kreisel-cluster)
# Environment:
#   KREISEL        the kreisel binary (default: target/release/kreisel, else target/debug/kreisel)
#   NATS_SERVER    the nats-server binary (default: /usr/sbin/nats-server, else nats-server on the PATH)
#   PORT_BASE      first port (default 14200): NATS clients PORT_BASE+1..3, NATS routes +11..13, NATS monitoring
#                  +21..23, kreisel WebSocket (with /metrics) +31..33, kreisel RawSocket +41..43
#   SHARDS         shards per kreisel node (default 2)
#   DEAD_AFTER_MS  cluster.dead_after_ms (default 3000), HEARTBEAT_MS cluster.heartbeat_ms (default 250)
#   NODES          kreisel nodes to start (default 3; the NATS cluster has 3 servers regardless)
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=${1:-/tmp/kreisel-cluster}
base=${PORT_BASE:-14200}
shards=${SHARDS:-2}
dead_after=${DEAD_AFTER_MS:-3000}
heartbeat=${HEARTBEAT_MS:-250}
nodes=${NODES:-3}
kreisel=${KREISEL:-}
if [ -z "$kreisel" ]; then
  if [ -x target/release/kreisel ]; then kreisel=target/release/kreisel; else kreisel=target/debug/kreisel; fi
fi
[ -x "$kreisel" ] || { echo "no kreisel binary at $kreisel (cargo build -p kreisel-io, or set KREISEL)" >&2; exit 1; }
nats=${NATS_SERVER:-/usr/sbin/nats-server}
[ -x "$nats" ] || nats=$(command -v nats-server || true)
[ -n "$nats" ] && [ -x "$nats" ] || { echo "nats-server not found (apt-get install nats-server, or set NATS_SERVER)" >&2; exit 1; }

if [ -e "$dir/pids" ]; then
  echo "$dir holds a running cluster (tests/cluster/down.sh $dir first)" >&2
  exit 1
fi
mkdir -p "$dir"
: > "$dir/pids"

# Waits until host:port accepts connections (bounded).
wait_port() {
  local port=$1 what=$2 pid=$3
  for _ in $(seq 1 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    if ! kill -0 "$pid" 2>/dev/null; then echo "$what exited; see its log in $dir" >&2; return 1; fi
    sleep 0.1
  done
  echo "$what does not listen on $port after 20 s; see its log in $dir" >&2
  return 1
}

routes=""
for i in 1 2 3; do routes+="nats-route://127.0.0.1:$((base + 10 + i)),"; done
routes=${routes%,}
for i in 1 2 3; do
  cat > "$dir/nats-$i.conf" <<CONF
server_name: n$i
listen: 127.0.0.1:$((base + i))
http: 127.0.0.1:$((base + 20 + i))
max_payload: 2MB
jetstream {
  store_dir: "$dir/jetstream-$i"
  max_memory_store: 64MB
  max_file_store: 1GB
}
cluster {
  name: kreisel-local
  listen: 127.0.0.1:$((base + 10 + i))
  routes: [$routes]
}
CONF
  "$nats" -c "$dir/nats-$i.conf" > "$dir/nats-$i.log" 2>&1 &
  echo $! > "$dir/nats-$i.pid"
  echo "nats-$i $!" >> "$dir/pids"
done
for i in 1 2 3; do wait_port $((base + i)) "nats-server $i" "$(cat "$dir/nats-$i.pid")"; done

for i in $(seq 1 "$nodes"); do
  urls="\"nats://127.0.0.1:$((base + i))\""
  for j in 1 2 3; do [ "$j" = "$i" ] || urls+=", \"nats://127.0.0.1:$((base + j))\""; done
  cat > "$dir/kreisel-$i.toml" <<CONF
[router]
shards = $shards

[[realms]]
name = "realm1"

[[listeners]]
listen = "127.0.0.1:$((base + 30 + i))"
transports = ["websocket"]
metrics = "/metrics"

[[listeners]]
listen = "127.0.0.1:$((base + 40 + i))"
transports = ["rawsocket"]

[cluster]
name = "local"
nats = [$urls]
heartbeat_ms = $heartbeat
dead_after_ms = $dead_after
replicas = 3
connect_timeout_ms = 20000
CONF
  RUST_LOG=${RUST_LOG:-info} "$kreisel" --config "$dir/kreisel-$i.toml" > "$dir/kreisel-$i.log" 2>&1 &
  echo $! > "$dir/kreisel-$i.pid"
  echo "kreisel-$i $!" >> "$dir/pids"
done
for i in $(seq 1 "$nodes"); do wait_port $((base + 30 + i)) "kreisel node $i" "$(cat "$dir/kreisel-$i.pid")"; done

{
  echo "NATS_URLS=nats://127.0.0.1:$((base + 1)),nats://127.0.0.1:$((base + 2)),nats://127.0.0.1:$((base + 3))"
  for i in $(seq 1 "$nodes"); do
    echo "NODE_${i}_WS=ws://127.0.0.1:$((base + 30 + i))/ws"
    echo "NODE_${i}_RS=rs://127.0.0.1:$((base + 40 + i))"
    echo "NODE_${i}_METRICS=http://127.0.0.1:$((base + 30 + i))/metrics"
  done
} > "$dir/env"
echo "cluster up in $dir:"
cat "$dir/env"
