#!/usr/bin/env bash
# Stops what tests/cluster/up.sh started in DIR, by the PIDs it recorded (SIGTERM, then SIGKILL after 5 s), and
# removes DIR. Usage: tests/cluster/down.sh [DIR]   (default DIR: /tmp/kreisel-cluster)
set -uo pipefail
dir=${1:-/tmp/kreisel-cluster}
[ -f "$dir/pids" ] || { echo "no cluster in $dir" >&2; exit 0; }
pids=$(awk '{print $2}' "$dir/pids")
# kreisel nodes first (they say goodbye through NATS), then the servers.
for pid in $(grep '^kreisel' "$dir/pids" | awk '{print $2}'); do kill -TERM "$pid" 2>/dev/null || true; done
for _ in $(seq 1 50); do
  alive=0
  for pid in $(grep '^kreisel' "$dir/pids" | awk '{print $2}'); do kill -0 "$pid" 2>/dev/null && alive=1; done
  [ $alive = 0 ] && break
  sleep 0.1
done
for pid in $pids; do kill -TERM "$pid" 2>/dev/null || true; done
for _ in $(seq 1 50); do
  alive=0
  for pid in $pids; do kill -0 "$pid" 2>/dev/null && alive=1; done
  [ $alive = 0 ] && break
  sleep 0.1
done
for pid in $pids; do kill -KILL "$pid" 2>/dev/null || true; done
rm -rf "$dir"
