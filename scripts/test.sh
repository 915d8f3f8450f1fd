#!/usr/bin/env bash
# Runs the whole chainbatch test suite on a fresh machine: installs what the
# tests need (a Python venv with DuckDB and pyarrow from PyPI, for the
# interoperability tests), then format check, every test, and clippy.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null; then
  echo "test.sh: cargo is not installed; install Rust from rustup first" >&2
  exit 1
fi

VENV="${CHAINBATCH_VENV:-$PWD/.venv}"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import duckdb, pyarrow" 2>/dev/null; then
  echo "== creating $VENV (duckdb, pyarrow)"
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check duckdb pyarrow
fi
export CHAINBATCH_PYTHON="$VENV/bin/python"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo test"
cargo test --workspace
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
