#!/usr/bin/env python3
"""One day as the AWS producer leaves it while the day is current (one file
per block, ~7,200 files) against the same rows compacted (100,000-row
files): the canonical ETL's time on each, in one run.

Generates the day with `chainbatch gen`, rewrites it in both shapes with
producer_shapes.py, and runs `chainbatch run` (benches/peers/conf) on each
from local disk and, when AWS_ENDPOINT_URL and CHAINBATCH_S3_BUCKET are set
(scripts/seaweedfs.sh sets them), from S3 too, `--runs` times each. Reports
the median seconds, peak RSS, and blocks/compacted ratio; both outputs must
hold the same rows and fee sum.

Usage: small_files.py --chainbatch BIN [--rows 1224000] [--runs 3] [--work DIR]
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402
import producer_shapes  # noqa: E402

CONF = os.path.join(os.path.dirname(os.path.abspath(__file__)), "conf")
DAY = "2024-03-01"


def upload(local, bucket, prefix):
    import boto3

    s3 = boto3.client("s3")
    for root, _, files in os.walk(local):
        for f in files:
            path = os.path.join(root, f)
            s3.upload_file(path, bucket, f"{prefix}/{os.path.relpath(path, local)}")
    return f"s3://{bucket}/{prefix}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--chainbatch", required=True)
    ap.add_argument("--rows", type=int, default=1_224_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--work", default="/tmp/chainbatch-small-files")
    ap.add_argument("--json")
    args = ap.parse_args()
    raw = os.path.join(args.work, f"gen-{args.rows}")
    if not os.path.isdir(os.path.join(raw, "transactions")):
        subprocess.run([args.chainbatch, "gen", "--rows", str(args.rows), "--days", "1",
                        "--start", DAY, "--tables", "transactions", "--out", raw], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    roots = {}
    for shape in ("blocks", "compacted"):
        dst = os.path.join(args.work, f"{shape}-{args.rows}")
        if not os.path.isdir(os.path.join(dst, "transactions")):
            n = producer_shapes.reshape(raw, dst, shape, 100_000, 7)
            print(f"{shape}: {n} files", flush=True)
        roots[("local", shape)] = dst
    bucket = os.environ.get("CHAINBATCH_S3_BUCKET")
    if os.environ.get("AWS_ENDPOINT_URL") and bucket:
        for shape in ("blocks", "compacted"):
            prefix = f"small-files-{args.rows}/{shape}"
            print(f"uploading {shape} to s3://{bucket}/{prefix}", flush=True)
            roots[("s3", shape)] = upload(roots[("local", shape)], bucket, prefix)
    results = []
    for (store, shape), root in roots.items():
        files = sum(len(f) for _, _, f in os.walk(roots[("local", shape)]))
        times, rss = [], []
        for i in range(args.runs):
            out = os.path.join(args.work, f"out-{store}-{shape}")
            shutil.rmtree(out, ignore_errors=True)
            cmd = [args.chainbatch, "run", "--conf", CONF, "--dates", DAY,
                   "--globals", f"raw_root={root}", "--globals", f"out_root={out}",
                   "--run-id", f"small-{store}-{shape}-{i}"]
            seconds, _, peak, code, err = compare.run_measured(cmd)
            if code != 0:
                sys.exit(f"{store} {shape} failed (exit {code}):\n{err}")
            times.append(seconds)
            rss.append(peak)
        rows, fees, _ = compare.check_output(os.path.join(out, "transactions_with_fees"))
        results.append({"store": store, "shape": shape, "files": files,
                        "seconds": statistics.median(times), "runs": times,
                        "peak_rss_bytes": max(rss), "rows": rows, "fee_wei_sum": fees})
    print(f"\none day, {args.rows} transactions; median of {args.runs} runs")
    print(f"{'store':<6} {'shape':<10} {'files':>6} {'seconds':>8} {'peak RSS':>10}  runs")
    for r in results:
        print(f"{r['store']:<6} {r['shape']:<10} {r['files']:>6} {r['seconds']:>8.2f} "
              f"{r['peak_rss_bytes'] / 2**20:>6.0f} MiB  "
              + ", ".join(f"{t:.2f}" for t in r["runs"]))
    by = {(r["store"], r["shape"]): r for r in results}
    for store in sorted({r["store"] for r in results}):
        ratio = by[(store, "blocks")]["seconds"] / by[(store, "compacted")]["seconds"]
        print(f"{store}: blocks / compacted = {ratio:.2f}x")
    agree = len({(r["rows"], r["fee_wei_sum"]) for r in results}) == 1
    print("outputs agree on rows and fee_wei sum" if agree else "OUTPUTS DISAGREE")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": args.rows, "results": results, "agree": agree}, f, indent=2)
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
