#!/usr/bin/env python3
"""Reads chainbatch output the way independent tools do, for the tests.

  summary PATH [--version N]    a Delta table, through the `deltalake`
                                package and through Polars (both must agree)
  parquet PATH                  a hive-partitioned Parquet directory, through
                                pyarrow.dataset
  poll PATH --format F --stop FILE --expect JSON
                                reads again and again until FILE exists;
                                counts the reads whose per-partition row
                                counts differ from JSON, and the failed reads

Each prints one JSON document. A summary holds the row count, the rows per
partition, and a digest of the rows that does not depend on row or column
order (values compared as text). S3 paths use AWS_ENDPOINT_URL and the AWS_*
credentials from the environment.
"""
import argparse
import hashlib
import json
import os
import sys
import time

import pyarrow as pa
import pyarrow.dataset as pads


def storage_options(path):
    if not path.startswith("s3://"):
        return None
    opts = {
        "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", ""),
        "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY", ""),
        "AWS_REGION": os.environ.get("AWS_REGION", "us-east-1"),
    }
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        opts["AWS_ENDPOINT_URL"] = endpoint
        opts["AWS_ALLOW_HTTP"] = "true"
    return opts


def describe(table, partition_column):
    """Row count, rows per partition value and an order-free digest."""
    names = sorted(table.column_names)
    text = [table.column(n).cast(pa.string()).to_pylist() for n in names]
    rows = sorted("\x1f".join("" if v is None else v for v in r) for r in zip(*text))
    digest = hashlib.sha256("\n".join(rows).encode()).hexdigest() if rows else ""
    per = {}
    if partition_column in table.column_names:
        for v in table.column(partition_column).cast(pa.string()).to_pylist():
            per[v] = per.get(v, 0) + 1
    return {
        "rows": table.num_rows,
        "columns": names,
        "per_partition": per,
        "digest": digest,
    }


def read_delta(path, version=None):
    from deltalake import DeltaTable

    dt = DeltaTable(path, version=version, storage_options=storage_options(path))
    return dt, dt.to_pyarrow_table()


def summary(path, version, partition_column):
    import polars as pl

    dt, table = read_delta(path, version)
    out = describe(table, partition_column)
    out["version"] = dt.version()
    out["files"] = len(dt.file_uris())
    out["partition_columns"] = dt.metadata().partition_columns
    out["history"] = [
        {
            "version": h.get("version"),
            "operation": h.get("operation"),
            "run_id": h.get("chainbatch.run_id"),
        }
        for h in dt.history()
    ]
    frame = pl.read_delta(path, version=version, storage_options=storage_options(path))
    via_polars = describe(frame.to_arrow(), partition_column)
    if via_polars["digest"] != out["digest"] or via_polars["rows"] != out["rows"]:
        sys.exit(f"Polars and deltalake disagree on {path}: {via_polars['rows']} vs {out['rows']} rows")
    out["polars_rows"] = via_polars["rows"]
    return out


def read_parquet(path):
    dataset = pads.dataset(path, format="parquet", partitioning="hive")
    return dataset.to_table()


def poll(path, fmt, stop, expect, partition_column):
    polls = partial = errors = 0
    first_error = None
    while not os.path.exists(stop):
        polls += 1
        try:
            if fmt == "delta":
                _, table = read_delta(path)
            else:
                table = read_parquet(path)
            got = describe_counts(table, partition_column)
            if got != expect:
                partial += 1
        except Exception as e:  # a read that failed is what a reader sees too
            errors += 1
            first_error = first_error or f"{type(e).__name__}: {e}"[:300]
        time.sleep(0.01)
    return {"polls": polls, "partial": partial, "errors": errors, "first_error": first_error}


def describe_counts(table, partition_column):
    per = {}
    for v in table.column(partition_column).cast(pa.string()).to_pylist():
        per[v] = per.get(v, 0) + 1
    return per


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("summary")
    s.add_argument("path")
    s.add_argument("--version", type=int)
    s.add_argument("--partition-column", default="date")
    p = sub.add_parser("parquet")
    p.add_argument("path")
    p.add_argument("--partition-column", default="date")
    q = sub.add_parser("poll")
    q.add_argument("path")
    q.add_argument("--format", choices=["delta", "parquet"], required=True)
    q.add_argument("--stop", required=True)
    q.add_argument("--expect", required=True)
    q.add_argument("--partition-column", default="date")
    a = ap.parse_args()
    if a.cmd == "summary":
        out = summary(a.path, a.version, a.partition_column)
    elif a.cmd == "parquet":
        out = describe(read_parquet(a.path), a.partition_column)
    else:
        out = poll(a.path, a.format, a.stop, json.loads(a.expect), a.partition_column)
    print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    main()
