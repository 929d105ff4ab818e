#!/usr/bin/env bash
# kreisel's one test command: installs what the tests need (autobahn-python into tests/.venv and crossbar.io into
# tests/.venv-crossbar from PyPI; autobahn-js, the autobahn-js browser bundle and playwright-core from npm into the
# node_modules folders of tests/interop-js, examples/node, examples/browser and tests/browser; Debian's chromium,
# nats-server and mosquitto-clients with apt-get when they are missing), then runs formatting and lint gates and
# every test of the workspace, the examples included.
# Usage: tests/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== nothing refers outside the repository"
tests/self_contained.sh

venv=tests/.venv
requirements=tests/interop/requirements.txt
stamp="$venv/.installed"
if [ ! -x "$venv/bin/python" ] || ! cmp -s "$requirements" "$stamp"; then
  echo "== installing interop clients into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
  cp "$requirements" "$stamp"
fi

# npm packages, exactly as in each folder's package-lock.json (Node.js >= 20 and npm on PATH); installed again when
# the lock file changes.
npm_ci() {
  local dir=$1 stamp="$1/node_modules/.installed"
  if [ ! -f "$stamp" ] || ! cmp -s "$dir/package-lock.json" "$stamp"; then
    echo "== installing $dir/node_modules (npm ci)"
    rm -rf "$dir/node_modules"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
    cp "$dir/package-lock.json" "$stamp"
  fi
}
npm_ci tests/interop-js   # autobahn-js: interop tests
npm_ci examples/node      # autobahn-js: the Node.js example
npm_ci examples/browser   # the autobahn-js browser bundle: the browser example
npm_ci tests/browser      # playwright-core (no browser download): drives chromium for the browser example

# The browser example's test runs Debian's chromium (CHROMIUM=/path/to/chromium to use another build).
chromium=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$chromium" ]; then
  if [ -n "${CHROMIUM:-}" ]; then
    echo "CHROMIUM=$CHROMIUM is not an executable" >&2
    exit 1
  elif ! command -v apt-get >/dev/null; then
    echo "chromium is missing and apt-get is not available: install Chromium, then run CHROMIUM=/path/to/chromium tests/run.sh" >&2
    exit 1
  fi
  sudo=()
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || { echo "installing chromium needs root (apt-get install chromium)" >&2; exit 1; }
    sudo=(sudo)
  fi
  echo "== installing chromium (apt-get)"
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq chromium >/dev/null
fi

# The load generator's NATS mode (loadtest/tests/nats.rs) and the cluster (tests/tests/cluster.rs, and the one-node
# cluster run at the end) are tested against Debian's nats-server
# (NATS_SERVER=/path/to/nats-server to use another build).
nats_server=${NATS_SERVER:-/usr/sbin/nats-server}
if [ ! -x "$nats_server" ]; then
  if [ -n "${NATS_SERVER:-}" ]; then
    echo "NATS_SERVER=$NATS_SERVER is not an executable" >&2
    exit 1
  elif ! command -v apt-get >/dev/null; then
    echo "nats-server is missing and apt-get is not available: install nats-server, then run NATS_SERVER=/path/to/nats-server tests/run.sh" >&2
    exit 1
  fi
  sudo=()
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || { echo "installing nats-server needs root (apt-get install nats-server)" >&2; exit 1; }
    sudo=(sudo)
  fi
  echo "== installing nats-server (apt-get)"
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq nats-server >/dev/null
fi

# The MQTT listener is tested with Debian's mosquitto_pub and mosquitto_sub (tests/tests/mqtt.rs), besides
# paho-mqtt from PyPI.
if [ ! -x /usr/bin/mosquitto_pub ] || [ ! -x /usr/bin/mosquitto_sub ]; then
  if ! command -v apt-get >/dev/null; then
    echo "mosquitto-clients is missing and apt-get is not available: install mosquitto_pub and mosquitto_sub in /usr/bin" >&2
    exit 1
  fi
  sudo=()
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || { echo "installing mosquitto-clients needs root (apt-get install mosquitto-clients)" >&2; exit 1; }
    sudo=(sudo)
  fi
  echo "== installing mosquitto-clients (apt-get)"
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq mosquitto-clients >/dev/null
fi

# crossbar.io (tests/tests/import_crossbar.rs imports its configurations and runs it beside kreisel), in a venv of its
# own: it pins other versions of autobahn and its dependencies than tests/.venv. About a minute to install.
cb_venv=tests/.venv-crossbar
cb_requirements=tests/interop/crossbar-requirements.txt
cb_stamp="$cb_venv/.installed"
if [ ! -x "$cb_venv/bin/crossbar" ] || ! cmp -s "$cb_requirements" "$cb_stamp"; then
  echo "== installing crossbar into $cb_venv"
  rm -rf "$cb_venv"
  python3 -m venv "$cb_venv"
  "$cb_venv/bin/pip" install --quiet --disable-pip-version-check -r "$cb_requirements"
  cp "$cb_requirements" "$cb_stamp"
fi

# Interop with a Rust WAMP client from crates.io lives in a crate of its own (see tests/rust-client/Cargo.toml), and
# so does the Rust example (examples/rust), with the same client; both build into target/.
rust_client=(--manifest-path tests/rust-client/Cargo.toml --target-dir target)
rust_example=(--manifest-path examples/rust/Cargo.toml --target-dir target)

echo "== cargo fmt --check"
cargo fmt --all -- --check
cargo fmt "${rust_client[0]}" "${rust_client[1]}" -- --check
cargo fmt "${rust_example[0]}" "${rust_example[1]}" -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo clippy "${rust_client[@]}" --all-targets --quiet -- -D warnings
cargo clippy "${rust_example[@]}" --all-targets --quiet -- -D warnings
echo "== cargo doc (broken intra-doc links are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet
echo "== cargo test"
# tests/tests/examples.rs runs the Rust example's binary (target/debug/kreisel-example-rust): build it first.
cargo build "${rust_example[@]}" --quiet
# tests/tests/reliability.rs runs the kreisel binary cargo builds next to the tests: build it first, so it is never
# older than the sources.
cargo build -p kreisel-io --quiet
cargo test --workspace
cargo test "${rust_client[@]}"
# The end-to-end suite again against routers of 4 shards (on any machine), so that sessions of one test sit on
# different shards and every feature crosses them. (The binary's own tests run it with one shard per core.)
# tests/tests/cluster.rs starts its own 3-node cluster (2 shards a node) whatever the environment says: it runs in the
# pass above only, and is filtered out (reported as such) in the two below.
same_everywhere=(--skip three_nodes_three_nats_servers_with_autobahn_python)
echo "== cargo test, routers of 4 shards"
KREISEL_TEST_SHARDS=4 cargo test -p kreisel-tests -- "${same_everywhere[@]}"
KREISEL_TEST_SHARDS=4 cargo test "${rust_client[@]}"
# The end-to-end suite once more with every router a one-node cluster (a cluster name of its own per router) over a
# nats-server with JetStream started here on a free loopback port and stopped by its PID: sessions, registrations,
# the meta API and testaments then go through a node's backplane, NATS and the key-value bucket. (tests/tests/cluster.rs,
# in the first pass, starts 3 nats-servers and 3 kreisel nodes of its own.) max_payload is NATS's largest, so that
# the tests' 16 MiB messages fit (a node refuses to start when message_max does not).
echo "== cargo test, routers as one-node clusters over NATS"
nats_dir=$(mktemp -d)
nats_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat > "$nats_dir/nats.conf" <<CONF
listen: 127.0.0.1:$nats_port
max_payload: 64MB
jetstream { store_dir: "$nats_dir/js", max_memory_store: 64MB, max_file_store: 1GB }
CONF
"$nats_server" -c "$nats_dir/nats.conf" > "$nats_dir/nats.log" 2>&1 &
nats_pid=$!
# The cleanup never changes the exit status: that is the tests' (under `set -e`, a failing command in an EXIT trap
# would exit with its own status, and `wait` for a killed process returns 143).
stop_nats() {
  kill "$nats_pid" 2>/dev/null || true
  wait "$nats_pid" 2>/dev/null || true
  rm -rf "$nats_dir" || true
}
trap stop_nats EXIT
for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$nats_port") 2>/dev/null && break
  kill -0 "$nats_pid" 2>/dev/null || { cat "$nats_dir/nats.log" >&2; exit 1; }
  sleep 0.1
done
KREISEL_TEST_NATS="nats://127.0.0.1:$nats_port" cargo test -p kreisel-tests -- "${same_everywhere[@]}"
KREISEL_TEST_NATS="nats://127.0.0.1:$nats_port" cargo test "${rust_client[@]}"
