#!/usr/bin/env python3
"""The Glue Data Catalog and Athena's engine, in front of moto, for chainbatch's tests.

moto answers the Glue and Athena APIs: it stores databases, tables and
partitions, validates workgroups and query ids, but runs no query (every
result is empty) and lets requests through that AWS refuses. This peer sits
in front of it:

* every request is forwarded to moto and logged, one JSON line each
  (service, operation, body, status), so tests can count the calls;
* it enforces what AWS documents and moto lets pass: BatchCreatePartition
  takes at most 100 partitions a call (ValidationException beyond);
* it plays Athena's engine: StartQueryExecution is accepted by moto (which
  checks the workgroup), then the query runs in DuckDB over the files of the
  Glue table it names, read from S3 (SeaweedFS) at the table's location,
  only the partitions its WHERE names (partition pruning); the answers of
  GetQueryExecution (state, reason, DataScannedInBytes: the bytes of the
  files read) and GetQueryResults (a header row, then the data, as
  VarCharValue, paginated) are the engine's;
* UNLOAD (SELECT ...) TO 's3://...' WITH (format = 'PARQUET',
  partitioned_by = ARRAY[...]) runs the SELECT in DuckDB and writes its rows
  below the target as Athena does: hive directories for the partition
  columns (which leave the files), files named `<query id>_<n>` with no
  extension; it fails as Athena does when the target is not empty
  (HIVE_PATH_ALREADY_EXISTS) or the rows fall in more than 100 partitions
  (HIVE_TOO_MANY_OPEN_PARTITIONS);
* faults: {"fail_queries": "<reason>"} makes every query FAILED with that
  StateChangeReason.

Usage:
  catalog_peer.py --moto URL --log FILE [--faults JSON]
"""

import argparse
import json
import os
import re
import sys
import tempfile
import threading
import urllib.parse
from http.server import ThreadingHTTPServer

from moto_proxy import ProxyHandler, forward

GLUE_MAX_PARTITIONS = 100
ATHENA_PAGE = 1000
TABLE_REF = re.compile(r'FROM\s+"([^"]+)"\."([^"]+)"', re.IGNORECASE)
UNLOAD = re.compile(r"^\s*UNLOAD\s*\((.*)\)\s*TO\s*'([^']+)'\s*WITH\s*\((.*)\)\s*$",
                    re.IGNORECASE | re.DOTALL)
PARTITIONED_BY = re.compile(r"partitioned_by\s*=\s*ARRAY\s*\[([^\]]*)\]", re.IGNORECASE)
UNLOAD_MAX_PARTITIONS = 100
PARTITION_EQ = re.compile(r'"(\w+)"\s*=\s*(?:DATE\s+)?\'([^\']*)\'')


class ApiError(Exception):
    def __init__(self, status, kind, message):
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


class Peer:
    def __init__(self, args):
        self.moto = urllib.parse.urlparse(args.moto)
        self.moto_url = args.moto
        self.log_path = args.log
        self.faults = json.loads(args.faults) if args.faults else {}
        self.lock = threading.Lock()
        self.queries = {}

    def log(self, service, op, body, status):
        with self.lock, open(self.log_path, "a") as f:
            f.write(json.dumps({"service": service, "op": op, "body": body,
                                "status": status}) + "\n")

    def forward(self, method, path, headers, body):
        return forward(self.moto, method, path, headers, body)

    # -- Athena's engine ----------------------------------------------------

    def glue(self, region):
        import boto3
        return boto3.client("glue", endpoint_url=self.moto_url, region_name=region,
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def run_query(self, query_id, query, region):
        """Runs the query in DuckDB over the table's files; never raises."""
        try:
            if "fail_queries" in self.faults:
                raise RuntimeError(self.faults["fail_queries"])
            rows, columns, scanned = self.execute(query, region, query_id)
            result = {"state": "SUCCEEDED", "rows": rows, "columns": columns, "scanned": scanned}
        except Exception as e:  # the engine's error is the query's reason
            result = {"state": "FAILED", "reason": str(e), "scanned": 0}
        with self.lock:
            self.queries[query_id] = result

    def execute(self, query, region, query_id):
        import boto3
        import duckdb

        unload = UNLOAD.match(query)
        select = unload.group(1) if unload else query
        refs = sorted(set(TABLE_REF.findall(select)))
        if not refs:
            raise RuntimeError(f"no table in query: {query}")
        s3 = boto3.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL"))
        con = duckdb.connect()
        scanned = 0
        with tempfile.TemporaryDirectory() as tmp:
            for i, (database, table) in enumerate(refs):
                scanned += self.load_table(con, s3, region, database, table,
                                           os.path.join(tmp, str(i)), select)
            if not unload:
                cur = con.execute(query)
                columns = [d[0] for d in cur.description]
                rows = [[None if v is None else str(v) for v in r] for r in cur.fetchall()]
                return rows, columns, scanned
            self.unload(con, s3, select, unload.group(2), unload.group(3), tmp, query_id)
            return [], [], scanned

    def unload(self, con, s3, select, target, options, tmp, query_id):
        url = urllib.parse.urlparse(target)
        prefix = url.path.lstrip("/")
        if s3.list_objects_v2(Bucket=url.netloc, Prefix=prefix, MaxKeys=1).get("KeyCount", 0):
            raise RuntimeError(
                f"HIVE_PATH_ALREADY_EXISTS: Target directory for table already exists: {target}. "
                f"You may need to manually clean the data at location '{target}' before retrying. "
                "Athena will not delete data in your account.")
        m = PARTITIONED_BY.search(options)
        cols = [c.strip().strip("'\"") for c in m.group(1).split(",")] if m else []
        if cols:
            quoted = ", ".join(f'"{c}"' for c in cols)
            n = con.execute(f"SELECT count(*) FROM (SELECT DISTINCT {quoted} FROM ({select}))").fetchone()[0]
            if n > UNLOAD_MAX_PARTITIONS:
                raise RuntimeError("HIVE_TOO_MANY_OPEN_PARTITIONS: Exceeded limit of "
                                   f"{UNLOAD_MAX_PARTITIONS} open writers for partitions/buckets")
        out = os.path.join(tmp, "unload")
        if cols:
            con.execute(f"COPY ({select}) TO '{out}' "
                        f"(FORMAT PARQUET, COMPRESSION ZSTD, PARTITION_BY ({', '.join(cols)}))")
        else:
            os.makedirs(out)
            con.execute(f"COPY ({select}) TO '{out}/0' (FORMAT PARQUET, COMPRESSION ZSTD)")
        n = 0
        for root, _, files in os.walk(out):
            for f in sorted(files):
                rel = os.path.relpath(root, out)
                key = prefix + ("" if rel == "." else rel + "/") + f"{query_id}_{n}"
                s3.upload_file(os.path.join(root, f), url.netloc, key)
                n += 1

    def load_table(self, con, s3, region, database, table, tmp, query):
        """Downloads a Glue table's files (the partitions `query` names) and
        makes them the view "database"."table"; returns the bytes read."""
        t = self.glue(region).get_table(DatabaseName=database, Name=table)["Table"]
        location = t["StorageDescriptor"]["Location"]
        keys = [k["Name"] for k in t.get("PartitionKeys", [])]
        wanted = {}
        for k, v in PARTITION_EQ.findall(query):
            if k in keys:
                wanted.setdefault(k, set()).add(v)
        url = urllib.parse.urlparse(location)
        prefix = url.path.lstrip("/")
        scanned = 0
        live = None
        if t.get("Parameters", {}).get("table_type", "").upper() == "DELTA":
            # Athena reads a Delta table's files and partitions from its log.
            keys, live = self.delta_files(s3, location)
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=url.netloc, Prefix=prefix)
        n = 0
        for page in pages:
            for obj in page.get("Contents", []):
                if live is not None and obj["Key"] not in live:
                    continue
                rel = obj["Key"][len(prefix):].lstrip("/")
                parts = rel.split("/")
                if any(p.startswith(("_", ".")) for p in parts) or not rel.endswith(".parquet"):
                    continue
                values = dict(p.split("=", 1) for p in parts[:-1] if "=" in p)
                if any(values.get(k) not in vs for k, vs in wanted.items()):
                    continue
                target = os.path.join(tmp, rel)
                os.makedirs(os.path.dirname(target), exist_ok=True)
                s3.download_file(url.netloc, obj["Key"], target)
                scanned += obj["Size"]
                n += 1
        con.execute(f'CREATE SCHEMA IF NOT EXISTS "{database}"')
        if n == 0:
            raise RuntimeError(f"HIVE_CANNOT_OPEN_SPLIT: no data at {location}")
        pattern = os.path.join(tmp, *(["*"] * len(keys)), "*.parquet")
        con.execute(f'CREATE VIEW "{database}"."{table}" AS SELECT * FROM read_parquet('
                    f"'{pattern}', hive_partitioning = {str(bool(keys)).lower()}, "
                    "union_by_name = true)")
        return scanned

    def delta_files(self, s3, location):
        """A Delta table's partition columns and the keys of its live files."""
        from deltalake import DeltaTable

        options = {
            "AWS_ENDPOINT_URL": s3.meta.endpoint_url,
            "AWS_ALLOW_HTTP": "true",
            "AWS_REGION": s3.meta.region_name or "us-east-1",
            "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", ""),
            "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY", ""),
        }
        dt = DeltaTable(location.rstrip("/"), storage_options=options)
        live = {urllib.parse.urlparse(u).path.lstrip("/") for u in dt.file_uris()}
        return dt.metadata().partition_columns, live

    def execution(self, data, query_id):
        doc = json.loads(data)
        with self.lock:
            q = self.queries.get(query_id)
        if q is None:
            return doc
        status = doc["QueryExecution"].setdefault("Status", {})
        status["State"] = q["state"]
        if q["state"] == "FAILED":
            status["StateChangeReason"] = q["reason"]
        doc["QueryExecution"].setdefault("Statistics", {})["DataScannedInBytes"] = q["scanned"]
        return doc

    def results(self, body):
        query_id = body.get("QueryExecutionId")
        with self.lock:
            q = self.queries.get(query_id)
        if q is None:
            raise ApiError(400, "InvalidRequestException", f"QueryExecution {query_id} was not found")
        if q["state"] != "SUCCEEDED":
            raise ApiError(400, "InvalidRequestException", f"Query has not yet finished. Current state: {q['state']}")
        page = min(int(body.get("MaxResults") or ATHENA_PAGE), ATHENA_PAGE)
        start = int(body.get("NextToken") or 0)
        # Athena's first row of a SELECT's first page is the header.
        table = [q["columns"]] + q["rows"]
        chunk = table[start:start + page]
        doc = {"ResultSet": {
            "Rows": [{"Data": [{} if v is None else {"VarCharValue": v} for v in r]} for r in chunk],
            "ResultSetMetadata": {"ColumnInfo": [{"Name": c, "Label": c, "Type": "varchar"}
                                                 for c in q["columns"]]}},
            "UpdateCount": 0}
        if start + page < len(table):
            doc["NextToken"] = str(start + page)
        return doc


def handler_for(peer):
    class Handler(ProxyHandler):
        content_type = "application/x-amz-json-1.1"

        def proxy(self, raw):
            target = self.headers.get("X-Amz-Target", ".")
            service, op = target.split(".", 1)
            try:
                body = json.loads(raw) if raw else {}
            except ValueError:
                body = {}
            try:
                status = self.answer(service, op, body, raw)
            except ApiError as e:
                status = e.status
                err = json.dumps({"__type": e.kind, "Message": e.message}).encode()
                self.reply(e.status, [("Content-Type", "application/x-amz-json-1.1"),
                                      ("x-amzn-ErrorType", e.kind)], err)
            peer.log(service, op, body, status)

        def region(self):
            auth = self.headers.get("Authorization", "")
            m = re.search(r"Credential=[^/]+/\d+/([^/]+)/", auth)
            return m.group(1) if m else "us-east-1"

        def answer(self, service, op, body, raw):
            headers = dict(self.headers)
            if service == "AWSGlue" and op == "BatchCreatePartition":
                n = len(body.get("PartitionInputList", []))
                if n > GLUE_MAX_PARTITIONS:
                    raise ApiError(400, "ValidationException",
                                   "1 validation error detected: Value at 'partitionInputList' "
                                   "failed to satisfy constraint: Member must have length less "
                                   f"than or equal to {GLUE_MAX_PARTITIONS} (was {n})")
            if service == "AmazonAthena" and op == "GetQueryResults":
                self.json_reply(peer.results(body))
                return 200
            status, out_headers, data = peer.forward(self.command, self.path, headers, raw)
            if status == 200 and service == "AmazonAthena" and op == "StartQueryExecution":
                query_id = json.loads(data)["QueryExecutionId"]
                peer.run_query(query_id, body.get("QueryString", ""), self.region())
            elif status == 200 and service == "AmazonAthena" and op == "GetQueryExecution":
                data = json.dumps(peer.execution(data, body.get("QueryExecutionId"))).encode()
            self.reply(status, out_headers, data)
            return status

    return Handler


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--moto", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--faults", default="")
    args = ap.parse_args()
    peer = Peer(args)
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(peer))
    server.daemon_threads = True
    print(f"PORT {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
