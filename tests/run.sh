#!/usr/bin/env bash
# kreisel's one test command: installs what the tests need (autobahn-python into tests/.venv and crossbar.io into
# tests/.venv-crossbar from PyPI, autobahn-js into tests/interop-js/node_modules from npm), then runs formatting and
# lint gates and every test of the workspace.
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
cargo test --workspace
cargo test "${rust_client[@]}"
