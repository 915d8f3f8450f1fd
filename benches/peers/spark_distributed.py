#!/usr/bin/env python3
"""The distributed benchmark's two nodes in PySpark, the peer of chainbatch's
distributed plans, on the same raw `eth` tables.

Nodes, each one Spark SQL statement written as Parquet under --out:

- `distributed_join` (out/distributed_join/): transactions joined with token
  transfers on the transaction hash; the statement of
  benches/peers/distributed_join.sql (DataFusion) in Spark's dialect.
- `address_profiles` (out/address_profiles/): per-address lifetime profiles,
  the `address_profiles` node of conf/base/pipelines.yml (the activity
  subquery, then the aggregate), as in
  benches/peers/address_profiles_duckdb.sql; written as --buckets files
  hashed and sorted by address, like the `by_address` layout.

Amounts stay exact: fees and ETH values are DECIMAL(38,0), and no wei passes
through a float. Spark's decimals stop at 38 digits, so a token transfer
`value` stored as DECIMAL(76,0) (a uint256, as chainbatch writes it) cannot
be read as a decimal: it is read as its 32 raw bytes and turned into its
exact decimal text in SQL (see `uint256_text`). A `value` of 38 digits or
fewer is cast to text directly; a DOUBLE one (the public dataset's) also,
in Spark's notation ("7.7865964502883727E30"), which is not DataFusion's.

Prints one JSON line per node: {"node": ..., "seconds": ..., "rows": ...};
seconds run from the statement to the last file written (the session's
start is not counted), rows are the rows written.

Usage: spark_distributed.py --transactions DIR --token-transfers DIR --out DIR
           [--master local[2]] [--nodes distributed_join,address_profiles]
           [--buckets 8] [--driver-memory 2g] [--print-sql]
DIRs are hive-partitioned Parquet tables (DIR/date=YYYY-MM-DD/*.parquet).
Needs pyspark and pyarrow, and Java 17 on PATH.
"""

import argparse
import json
import os
import sys
import time

NODES = ("distributed_join", "address_profiles")

# 2^(64 i) in base 10^18, least significant limb first.
_BASE = 10**18


def _limbs(n):
    out = []
    while n:
        out.append(n % _BASE)
        n //= _BASE
    return out


_POWERS = [_limbs(2 ** (64 * i)) for i in range(4)]


def normalize_address(col):
    """Spark SQL for chainbatch's normalize_address(col): lower-case when
    col is `0x` + 40 hex digits, else NULL."""
    return (f"CASE WHEN length({col}) = 42 AND {col} RLIKE '^0[xX][0-9a-fA-F]+$' "
            f"THEN lower({col}) END")


def uint256_text(table, col):
    """A chain of CTEs (named `<table>_u0`..) over `table` that adds
    `<col>_text`: the exact decimal text of `col`, a Parquet DECIMAL(76,0)
    read as BINARY (big-endian, at most 32 bytes, non-negative).

    The 32 bytes are four unsigned 64-bit limbs (conv(hex(..), 16, 10) reads
    each exactly); their value is summed in base 10^18 with DECIMAL(38,0)
    arithmetic (every partial sum stays below 10^38), the carries are
    propagated limb by limb, and the limbs are printed zero-padded. Returns
    (ctes, last_cte_name)."""
    b = str(_BASE)
    v32 = f"lpad({col}, 32, X'00')"
    limb = [f"CAST(conv(hex(substring({v32}, {25 - 8 * i}, 8)), 16, 10) AS DECIMAL(38,0)) AS _l{i}"
            for i in range(4)]
    ctes = [f"{table}_u0 AS (SELECT *, {', '.join(limb)} FROM {table})"]
    sums = []
    for k in range(4):
        terms = [f"_l{i} * CAST({_POWERS[i][k]} AS DECIMAL(38,0))"
                 for i in range(4) if k < len(_POWERS[i])]
        sums.append(f"{' + '.join(terms)} AS _s{k}")
    ctes.append(f"{table}_u1 AS (SELECT *, {', '.join(sums)} FROM {table}_u0)")
    prev = f"{table}_u1"
    for k in range(4):
        t = f"_s{k}" if k == 0 else f"(_s{k} + _c{k - 1})"
        ctes.append(
            f"{table}_u{k + 2} AS (SELECT *, {t} % {b} AS _d{k}, "
            f"CAST(({t} - {t} % {b}) / {b} AS DECIMAL(38,0)) AS _c{k} FROM {prev})")
        prev = f"{table}_u{k + 2}"
    # The top limb is the last carry: a uint256 is below 10^78.
    digits = ["lpad(CAST(CAST(_c3 AS BIGINT) AS STRING), 18, '0')"] + [
        f"lpad(CAST(CAST(_d{k} AS BIGINT) AS STRING), 18, '0')" for k in (3, 2, 1, 0)]
    text = (f"CASE WHEN {col} IS NULL THEN NULL ELSE "
            f"regexp_replace(concat({', '.join(digits)}), '^0+(?=.)', '') END")
    ctes.append(f"{table}_text AS (SELECT *, {text} AS {col}_text FROM {prev})")
    return ctes, f"{table}_text"


def value_type(table_dir):
    """The Parquet type of token transfers' `value` (pyarrow, one footer)."""
    import pyarrow.parquet as pq

    for root, _, files in sorted(os.walk(table_dir)):
        for f in sorted(files):
            if f.endswith(".parquet"):
                schema = pq.read_schema(os.path.join(root, f))
                return schema.field("value").type if "value" in schema.names else None
    raise SystemExit(f"no .parquet file under {table_dir}")


def join_sql(value_kind):
    """The join node. value_kind: 'uint256' (DECIMAL over 38 digits, read
    as bytes) or 'cast' (a type Spark reads)."""
    if value_kind == "uint256":
        ctes, tt = uint256_text("token_transfers", "value")
        value = "tt.value_text"
    else:
        ctes, tt = [], "token_transfers"
        value = "CAST(tt.value AS STRING)"
    with_ = f"WITH {', '.join(ctes)}\n" if ctes else ""
    return f"""{with_}SELECT
  t.hash,
  t.block_number,
  tt.log_index,
  {normalize_address('tt.from_address')} AS from_address,
  {normalize_address('tt.to_address')} AS to_address,
  {normalize_address('tt.token_address')} AS token_address,
  {value} AS value,
  CAST(t.receipt_gas_used AS DECIMAL(38,0)) * CAST(t.receipt_effective_gas_price AS DECIMAL(38,0)) AS fee_wei
FROM transactions AS t
JOIN {tt} AS tt ON t.hash = tt.transaction_hash"""


def profiles_sql():
    """The address_profiles node (the address_activity subquery, then the
    aggregate); see conf/base/pipelines.yml for what each rule means."""
    return f"""WITH
tx AS (
  SELECT
    {normalize_address('from_address')} AS from_address,
    coalesce({normalize_address('to_address')},
             {normalize_address('receipt_contract_address')}) AS to_address,
    block_timestamp,
    block_number,
    hash,
    CASE WHEN receipt_status = 0 THEN CAST(0 AS DECIMAL(38,0))
         ELSE CAST(value AS DECIMAL(38,0)) END AS value_wei,
    CAST(receipt_gas_used AS DECIMAL(38,0)) * CAST(receipt_effective_gas_price AS DECIMAL(38,0)) AS fee_wei
  FROM transactions
),
tt AS (
  SELECT
    {normalize_address('from_address')} AS from_address,
    {normalize_address('to_address')} AS to_address,
    {normalize_address('token_address')} AS token_address,
    block_timestamp,
    block_number,
    transaction_hash
  FROM token_transfers
),
address_activity AS (
  SELECT * FROM (
    SELECT from_address AS address, block_timestamp, block_number, hash AS transaction_hash,
           'tx_sent' AS activity, value_wei, fee_wei, CAST(NULL AS STRING) AS token_address
    FROM tx
    UNION ALL
    SELECT to_address, block_timestamp, block_number, hash,
           'tx_received', value_wei, CAST(NULL AS DECIMAL(38,0)), CAST(NULL AS STRING)
    FROM tx
    UNION ALL
    SELECT from_address, block_timestamp, block_number, transaction_hash,
           'token_sent', CAST(NULL AS DECIMAL(38,0)), CAST(NULL AS DECIMAL(38,0)), token_address
    FROM tt
    UNION ALL
    SELECT to_address, block_timestamp, block_number, transaction_hash,
           'token_received', CAST(NULL AS DECIMAL(38,0)), CAST(NULL AS DECIMAL(38,0)), token_address
    FROM tt
  ) AS sides
  WHERE address IS NOT NULL
)
SELECT
  address,
  min(block_timestamp) AS first_seen,
  max(block_timestamp) AS last_seen,
  min(block_number) AS first_block,
  max(block_number) AS last_block,
  count(CASE WHEN activity = 'tx_sent' THEN 1 END) AS tx_sent,
  count(CASE WHEN activity = 'tx_received' THEN 1 END) AS tx_received,
  coalesce(sum(fee_wei), CAST(0 AS DECIMAL(38,0))) AS fees_paid_wei,
  coalesce(sum(CASE WHEN activity = 'tx_sent' THEN value_wei END), CAST(0 AS DECIMAL(38,0))) AS value_sent_wei,
  coalesce(sum(CASE WHEN activity = 'tx_received' THEN value_wei END), CAST(0 AS DECIMAL(38,0))) AS value_received_wei,
  count(CASE WHEN activity = 'token_sent' THEN 1 END) AS token_transfers_sent,
  count(CASE WHEN activity = 'token_received' THEN 1 END) AS token_transfers_received,
  count(DISTINCT token_address) AS distinct_tokens
FROM address_activity
GROUP BY address"""


def token_transfers_schema(vtype):
    """A read schema for token transfers (Spark cannot infer one from a
    DECIMAL(76,0) column), with `value` as BINARY when over 38 digits."""
    import pyarrow as pa

    if vtype is None:
        value, kind = "value STRING", "cast"
    elif pa.types.is_decimal(vtype) and vtype.precision > 38:
        value, kind = "value BINARY", "uint256"
    elif pa.types.is_decimal(vtype):
        value, kind = f"value DECIMAL({vtype.precision},{vtype.scale})", "cast"
    else:
        value, kind = "value DOUBLE", "cast"
    ddl = ("token_address STRING, from_address STRING, to_address STRING, "
           f"{value}, transaction_hash STRING, log_index BIGINT, "
           "block_timestamp TIMESTAMP, block_number BIGINT, block_hash STRING, date STRING")
    return ddl, kind


def written_rows(path):
    import pyarrow.parquet as pq

    rows = 0
    for root, _, files in os.walk(path):
        for f in files:
            if f.endswith(".parquet"):
                rows += pq.read_metadata(os.path.join(root, f)).num_rows
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--transactions", required=True)
    ap.add_argument("--token-transfers", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--nodes", default=",".join(NODES))
    ap.add_argument("--buckets", type=int, default=8)
    ap.add_argument("--driver-memory", default="2g")
    ap.add_argument("--print-sql", action="store_true",
                    help="print each node's statement to stderr")
    a = ap.parse_args()
    nodes = [n for n in a.nodes.split(",") if n]
    unknown = [n for n in nodes if n not in NODES]
    if unknown:
        ap.error(f"unknown node(s) {unknown}; nodes: {', '.join(NODES)}")

    from pyspark.sql import SparkSession

    ddl, value_kind = token_transfers_schema(value_type(a.token_transfers))
    spark = (SparkSession.builder.master(a.master)
             .appName("chainbatch-peer-distributed")
             .config("spark.driver.memory", a.driver_memory)
             .config("spark.sql.session.timeZone", "UTC")
             .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
             .config("spark.ui.enabled", "false")
             .config("spark.ui.showConsoleProgress", "false")
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    spark.read.parquet(a.transactions).createOrReplaceTempView("transactions")
    spark.read.schema(ddl).parquet(a.token_transfers).createOrReplaceTempView("token_transfers")

    statements = {"distributed_join": join_sql(value_kind), "address_profiles": profiles_sql()}
    for node in nodes:
        sql = statements[node]
        if a.print_sql:
            print(f"-- {node}\n{sql};\n", file=sys.stderr)
        out = os.path.join(a.out, node)
        start = time.perf_counter()
        df = spark.sql(sql)
        if node == "address_profiles":
            df = df.repartition(a.buckets, "address").sortWithinPartitions("address")
        df.write.mode("overwrite").option("compression", "zstd").parquet(out)
        seconds = time.perf_counter() - start
        print(json.dumps({"node": node, "seconds": round(seconds, 3), "rows": written_rows(out)}),
              flush=True)
    spark.stop()


if __name__ == "__main__":
    main()
