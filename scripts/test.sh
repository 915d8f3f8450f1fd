#!/usr/bin/env bash
# Runs the whole chainbatch test suite on a fresh machine: lint, then every
# unit and integration test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null; then
  echo "test.sh: cargo is not installed; install Rust from rustup first" >&2
  exit 1
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo test"
cargo test --workspace
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
