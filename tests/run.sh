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

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== cargo test"
cargo test --workspace
