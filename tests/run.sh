#!/usr/bin/env bash
# kreisel's one test command: installs what the tests need (autobahn-python into tests/.venv from PyPI), then runs
# formatting and lint gates and every test of the workspace. Usage: tests/run.sh
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

# Interop with a Rust WAMP client from crates.io lives in a crate of its own (see tests/rust-client/Cargo.toml).
rust_client=(--manifest-path tests/rust-client/Cargo.toml --target-dir target)

echo "== cargo fmt --check"
cargo fmt --all -- --check
cargo fmt "${rust_client[0]}" "${rust_client[1]}" -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo clippy "${rust_client[@]}" --all-targets --quiet -- -D warnings
echo "== cargo test"
cargo test --workspace
cargo test "${rust_client[@]}"
