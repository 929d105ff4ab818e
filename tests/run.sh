#!/usr/bin/env bash
# kreisel's one test command: installs what the tests need (autobahn-python into tests/.venv from PyPI, autobahn-js
# into tests/interop-js/node_modules from npm), then runs formatting and lint gates and every test of the workspace.
# Usage: tests/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."

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

# autobahn-js and everything it needs, exactly as in package-lock.json (Node.js >= 20 and npm on PATH).
js=tests/interop-js
js_stamp="$js/node_modules/.installed"
if [ ! -d "$js/node_modules/autobahn" ] || ! cmp -s "$js/package-lock.json" "$js_stamp"; then
  echo "== installing autobahn-js into $js/node_modules"
  rm -rf "$js/node_modules"
  (cd "$js" && npm ci --no-audit --no-fund --loglevel=error)
  cp "$js/package-lock.json" "$js_stamp"
fi

# Interop with a Rust WAMP client from crates.io lives in a crate of its own (see tests/rust-client/Cargo.toml).
rust_client=(--manifest-path tests/rust-client/Cargo.toml --target-dir target)

echo "== cargo fmt --check"
cargo fmt --all -- --check
cargo fmt "${rust_client[0]}" "${rust_client[1]}" -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo clippy "${rust_client[@]}" --all-targets --quiet -- -D warnings
echo "== cargo doc (broken intra-doc links are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet
echo "== cargo test"
# tests/tests/reliability.rs runs the kreisel binary cargo builds next to the tests: build it first, so it is never
# older than the sources.
cargo build -p kreisel-io --quiet
cargo test --workspace
cargo test "${rust_client[@]}"
