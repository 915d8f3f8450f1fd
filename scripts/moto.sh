# Sourced by test.sh after seaweedfs.sh: starts moto server (from the venv)
# on 127.0.0.1 as the AWS Batch, Glue and Athena API peer, creates the test
# job queue and job definition through a real API call (readiness), and exports
# CHAINBATCH_MOTO_URL. The server stops when the calling shell exits.

MOTO_PORT="$("$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
MOTO_LOG="$(mktemp -t chainbatch-moto.XXXXXX)"
"$VENV/bin/moto_server" -H 127.0.0.1 -p "$MOTO_PORT" >"$MOTO_LOG" 2>&1 &
MOTO_PID=$!
export CHAINBATCH_MOTO_URL="http://127.0.0.1:$MOTO_PORT"
stop_moto() {
  kill "$MOTO_PID" 2>/dev/null || true
  wait "$MOTO_PID" 2>/dev/null || true
  rm -f "$MOTO_LOG"
}
trap 'stop_moto; stop_seaweedfs' EXIT

for _ in $(seq 120); do
  if "$VENV/bin/python" scheduler/tests/cli/peers/batch_peer.py --setup --moto "$CHAINBATCH_MOTO_URL" 2>/dev/null; then
    echo "moto Batch API ready on $CHAINBATCH_MOTO_URL"
    break
  fi
  if ! kill -0 "$MOTO_PID" 2>/dev/null; then
    echo "moto server exited:" >&2; tail -20 "$MOTO_LOG" >&2; exit 1
  fi
  sleep 0.5
done
"$VENV/bin/python" scheduler/tests/cli/peers/batch_peer.py --setup --moto "$CHAINBATCH_MOTO_URL"
