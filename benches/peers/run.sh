#!/usr/bin/env bash
# The peer comparison: builds chainbatch (release), installs DuckDB, Polars,
# PySpark and DataFusion's Python bindings into a venv from PyPI, generates
# the data once, and times the canonical ETL in each engine in one run.
#
#   benches/peers/run.sh [ROWS] [compare.py options...]
#
# ROWS defaults to 4000000. PySpark needs Java 17 on PATH.
set -euo pipefail
cd "$(dirname "$0")/../.."
rows="${1:-4000000}"
shift || true

VENV="${CHAINBATCH_PEERS_VENV:-$PWD/.venv-peers}"
if ! "$VENV/bin/python" -c "import duckdb, polars, pyspark, datafusion" 2>/dev/null; then
  echo "== installing peers into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check duckdb polars pyspark datafusion pyarrow
fi
echo "== building chainbatch (release)"
cargo build --release --quiet -p chainbatch
target="${CARGO_TARGET_DIR:-target}"
exec "$VENV/bin/python" benches/peers/compare.py --chainbatch "$target/release/chainbatch" \
  --conf benches/peers/conf --rows "$rows" "$@"
