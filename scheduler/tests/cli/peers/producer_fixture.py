#!/usr/bin/env python3
"""Writes the `transactions` and `blocks` tables the way the AWS Public
Blockchain Data producer writes them, from an ethereum-etl export of real
mainnet data (blocks carry `transaction_count`, which the completeness gate
checks each block's transactions against).

The producer (`analytics/producer/copilot/ethereum-worker/worker.py` in
aws-solutions-library-samples/guidance-for-digital-assets-on-aws) turns each
block's JSON-RPC transactions and receipts into Python dicts, builds a pandas
DataFrame of them (`json_normalize`), coerces it to its schema, and writes it
with awswrangler (pyarrow, snappy). This script rebuilds the JSON-RPC objects
from the export and goes through the same steps, so that its files have the
producer's column names, column order, dtypes and Parquet encoding:

- columns in the order the producer's dict edits leave them (RPC fields
  renamed or converted in place, receipt fields appended), with `date` (the
  hive value) and `last_modified` inside every file, `receipt_root` absent;
- `value` a float (DOUBLE), `to_address` null for contract creations,
  `receipt_contract_address` "" when the receipt has none, type-0
  transactions with `max_fee_per_gas` and `max_priority_fee_per_gas` 0;
- naive timestamps (no time zone), in the unit asked for: `ns`, `us` or
  `ms` (TIMESTAMP with isAdjustedToUTC=false), or `int96`, what awswrangler
  writes by default (pyarrow's Spark flavour: INT96 nanoseconds);
- a day in either shape: `compacted`, the nightly rewrite
  (`transactions-<n>-<unix time>.snappy.parquet`, a file whenever more than
  --rows-per-file rows accumulated), or `blocks`, the current day
  (`<block_number>.snappy.parquet`, one file per block).

The producer's schema check turns every string column with `astype('str')`;
pandas before 3.0 made a missing value the text "None" there, pandas 3.0
keeps it null. --pandas2-strings writes what the older pandas wrote.

Usage:
  producer_fixture.py --source fixtures/ethereum-etl --out DIR \\
      [--shape compacted|blocks] [--timestamps ns|us|ms|int96] \\
      [--rows-per-file N] [--pandas2-strings]
"""

import argparse
import datetime
import json
import os
from collections import OrderedDict

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

# The producer's schema of `transactions` (its schema check and eth.md):
# column -> Athena type. Columns not listed are dropped.
TRANSACTIONS = OrderedDict(
    [
        ("date", "string"),
        ("hash", "string"),
        ("nonce", "bigint"),
        ("transaction_index", "bigint"),
        ("from_address", "string"),
        ("to_address", "string"),
        ("value", "double"),
        ("gas", "bigint"),
        ("gas_price", "bigint"),
        ("input", "string"),
        ("receipt_cumulative_gas_used", "bigint"),
        ("receipt_gas_used", "bigint"),
        ("receipt_contract_address", "string"),
        ("receipt_status", "bigint"),
        ("block_timestamp", "timestamp"),
        ("block_number", "bigint"),
        ("block_hash", "string"),
        ("max_fee_per_gas", "bigint"),
        ("max_priority_fee_per_gas", "bigint"),
        ("transaction_type", "bigint"),
        ("receipt_effective_gas_price", "bigint"),
        ("last_modified", "timestamp"),
    ]
)

# How long after its block the producer wrote a row, for `last_modified`
# (it stores the worker's clock; a fixed delay keeps the fixture stable).
WRITE_DELAY = datetime.timedelta(seconds=4, microseconds=123456)


def rpc_transaction(row):
    """The eth_getBlockByNumber transaction object (hex quantities, in the
    node's field order) that the export row came from."""
    tx = OrderedDict()
    tx["blockHash"] = row["block_hash"]
    tx["blockNumber"] = hex(row["block_number"])
    tx["from"] = row["from_address"]
    tx["gas"] = hex(row["gas"])
    tx["gasPrice"] = hex(row["gas_price"])
    if row["transaction_type"] == 2:
        tx["maxFeePerGas"] = hex(row["max_fee_per_gas"])
        tx["maxPriorityFeePerGas"] = hex(row["max_priority_fee_per_gas"])
    tx["hash"] = row["hash"]
    tx["input"] = row["input"]
    tx["nonce"] = hex(row["nonce"])
    tx["to"] = row["to_address"]
    tx["transactionIndex"] = hex(row["transaction_index"])
    tx["value"] = hex(row["value"])
    tx["type"] = hex(row["transaction_type"])
    if row["transaction_type"] == 2:
        tx["accessList"] = []
    tx["chainId"] = "0x1"
    tx["v"] = "0x0"
    tx["r"] = "0x0"
    tx["s"] = "0x0"
    return tx


def rpc_receipt(row):
    """The eth_getBlockReceipts entry of the export row's transaction."""
    return {
        "transactionHash": row["hash"],
        "cumulativeGasUsed": hex(row["receipt_cumulative_gas_used"]),
        "gasUsed": hex(row["receipt_gas_used"]),
        "contractAddress": row["receipt_contract_address"],
        "status": hex(row["receipt_status"]),
        "effectiveGasPrice": hex(row["receipt_effective_gas_price"]),
    }


def rename(d, old, new, convert=lambda v: v):
    """Moves `old` to the end of `d` as `new`, like a producer edit that
    sets the new key and deletes the old one."""
    d[new] = convert(d.pop(old))


def producer_transaction(tx, receipt, block_time):
    """One transaction dict as the producer builds it: the same edits, in
    the same order, so the keys end in the same order."""
    hex_int = lambda v: int(v, 16)  # noqa: E731
    rename(tx, "blockNumber", "block_number", hex_int)
    rename(tx, "blockHash", "block_hash")
    rename(tx, "transactionIndex", "transaction_index", hex_int)
    rename(tx, "from", "from_address")
    rename(tx, "to", "to_address")
    tx["nonce"] = int(tx["nonce"], 16)
    tx["value"] = float(int(tx["value"], 16))
    tx["gas"] = int(tx["gas"], 16)
    rename(tx, "gasPrice", "gas_price", hex_int)
    tx["receipt_cumulative_gas_used"] = int(receipt["cumulativeGasUsed"], 16)
    tx["receipt_gas_used"] = int(receipt["gasUsed"], 16)
    contract = receipt.get("contractAddress")
    tx["receipt_contract_address"] = "" if contract is None else str(contract)
    tx["receipt_status"] = int(receipt["status"], 16)
    tx["receipt_effective_gas_price"] = int(receipt["effectiveGasPrice"], 16)
    for unused in ("v", "r", "s", "chainId", "accessList"):
        tx.pop(unused, None)
    rename(tx, "type", "transaction_type", hex_int)
    for rpc, column in (
        ("maxFeePerGas", "max_fee_per_gas"),
        ("maxPriorityFeePerGas", "max_priority_fee_per_gas"),
    ):
        if rpc in tx:
            rename(tx, rpc, column, hex_int)
        else:
            tx[column] = 0
    tx["block_timestamp"] = block_time
    tx["date"] = "%04d-%02d-%02d" % (block_time.year, block_time.month, block_time.day)
    tx["last_modified"] = block_time + WRITE_DELAY
    return tx


PANDAS_DTYPE = {"bigint": "int64", "double": "float64", "timestamp": "datetime64[ns]"}


# The producer's `blocks` (processBlockData): the node's keys in their
# alphabetical order, renamed in place, then the partition columns.
BLOCKS = OrderedDict(
    [
        ("difficulty", "double"),
        ("hash", "string"),
        ("miner", "string"),
        ("nonce", "string"),
        ("number", "bigint"),
        ("size", "bigint"),
        ("timestamp", "timestamp"),
        ("total_difficulty", "double"),
        ("base_fee_per_gas", "bigint"),
        ("gas_limit", "bigint"),
        ("gas_used", "bigint"),
        ("extra_data", "string"),
        ("logs_bloom", "string"),
        ("parent_hash", "string"),
        ("state_root", "string"),
        ("receipts_root", "string"),
        ("transactions_root", "string"),
        ("sha3_uncles", "string"),
        ("transaction_count", "bigint"),
        ("date", "string"),
        ("last_modified", "timestamp"),
    ]
)


def producer_block(row, last_modified):
    """One block as processBlockData leaves it: difficulties as floats,
    `transaction_count` counted, `date` and `last_modified` appended."""
    ts = datetime.datetime.fromtimestamp(row["timestamp"], datetime.timezone.utc)
    out = OrderedDict()
    for column in BLOCKS:
        if column == "timestamp":
            out[column] = ts.replace(tzinfo=None)
        elif column == "date":
            out[column] = ts.strftime("%Y-%m-%d")
        elif column == "last_modified":
            out[column] = last_modified
        elif BLOCKS[column] == "double":
            out[column] = float(int(row[column]))
        else:
            out[column] = row.get(column)
    return out


def write_blocks(args):
    """The blocks of the export, one file per block or one per day."""
    with open(os.path.join(args.source, "blocks.jsonl")) as f:
        rows = sorted((json.loads(line) for line in f if line.strip()), key=lambda r: r["number"])
    last_modified = datetime.datetime(2024, 1, 1, 1, 45)
    per_day = OrderedDict()
    for r in rows:
        b = producer_block(r, last_modified)
        per_day.setdefault(b["date"], []).append(b)
    written = 0
    for date, blocks in per_day.items():
        directory = os.path.join(args.out, "blocks", "date=" + date)
        groups = [[b] for b in blocks] if args.shape == "blocks" else [blocks]
        for i, group in enumerate(groups):
            name = ("%d.snappy.parquet" % group[0]["number"]) if args.shape == "blocks" \
                else "blocks-%d-1714700700.0.snappy.parquet" % (i + 1)
            df = to_frame(group, BLOCKS, args.pandas2_strings)
            write(df, os.path.join(directory, name), args.timestamps, args.pandas2_strings)
            written += 1
    return len(rows), written


def to_frame(rows, schema, pandas2_strings):
    """The DataFrame the producer writes: `json_normalize` of the dicts, then
    its schema check: unlisted columns dropped, integer columns that are not
    int64 made nullable `Int64`, doubles `Float64`, strings `astype('str')`."""
    df = pd.json_normalize(rows)
    for column in list(df.columns):
        if column not in schema:
            del df[column]
            continue
        wanted = schema[column]
        dtype = PANDAS_DTYPE.get(wanted, wanted)
        if column == "date" or str(df[column].dtype).lower() == dtype:
            continue
        if wanted == "bigint":
            df[column] = df[column].astype("Int64")
        elif wanted == "double":
            df[column] = df[column].astype("Float64")
        elif wanted == "string":
            if pandas2_strings:
                # pandas < 3 held the column as objects and took str() of
                # each: None became "None".
                df[column] = pd.Series(
                    ["None" if pd.isna(v) else str(v) for v in df[column].tolist()],
                    index=df.index,
                    dtype=object,
                )
            else:
                df[column] = df[column].astype("str")
    return df


def write(df, path, timestamps, pandas2_strings):
    """awswrangler's `to_parquet(dataset=False)`: `pa.Table.from_pandas`
    without the index, a ParquetWriter with snappy, dictionaries and
    statistics; the timestamp unit or INT96 as asked."""
    for column in df.columns:
        if str(df[column].dtype).startswith("datetime64"):
            unit = "ns" if timestamps == "int96" else timestamps
            df[column] = df[column].astype("datetime64[%s]" % unit)
    table = pa.Table.from_pandas(df, preserve_index=False, safe=True)
    if pandas2_strings:
        # pandas < 3 held strings as objects: plain (not large) strings.
        fields = [
            pa.field(f.name, pa.string()) if f.type == pa.large_string() else f
            for f in table.schema
        ]
        table = table.cast(pa.schema(fields, metadata=table.schema.metadata))
    options = dict(compression="snappy", use_dictionary=True, write_statistics=True)
    if timestamps == "int96":
        options.update(flavor="spark", coerce_timestamps="ms")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with pq.ParquetWriter(path, table.schema, **options) as writer:
        writer.write_table(table)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--source", required=True, help="ethereum-etl export directory")
    p.add_argument("--out", required=True, help="dataset root: writes <out>/transactions/date=.../")
    p.add_argument("--shape", choices=["compacted", "blocks"], default="compacted")
    p.add_argument("--timestamps", choices=["ns", "us", "ms", "int96"], default="ns")
    p.add_argument("--rows-per-file", type=int, default=100000)
    p.add_argument("--pandas2-strings", action="store_true")
    args = p.parse_args()

    with open(os.path.join(args.source, "transactions.jsonl")) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    rows.sort(key=lambda r: (r["block_number"], r["transaction_index"]))

    # Block by block, as the producer processes them.
    blocks = OrderedDict()
    for row in rows:
        blocks.setdefault(row["block_number"], []).append(row)
    per_day = OrderedDict()
    for number, txs in blocks.items():
        ts = datetime.datetime.fromtimestamp(txs[0]["block_timestamp"], datetime.timezone.utc)
        block_time = ts.replace(tzinfo=None)
        built = [producer_transaction(rpc_transaction(r), rpc_receipt(r), block_time) for r in txs]
        per_day.setdefault(built[0]["date"], []).append((number, built))

    written = 0
    for date, day_blocks in per_day.items():
        directory = os.path.join(args.out, "transactions", "date=" + date)
        if args.shape == "blocks":
            for number, built in day_blocks:
                df = to_frame(built, TRANSACTIONS, args.pandas2_strings)
                write(df, os.path.join(directory, "%d.snappy.parquet" % number),
                      args.timestamps, args.pandas2_strings)
                written += 1
            continue
        # The nightly compaction: a file whenever more than --rows-per-file
        # rows accumulated after a block, then the rest. Its name holds the
        # file's count and the writer's clock (fixed here: 01:45 next day).
        clock = datetime.datetime.strptime(date, "%Y-%m-%d").replace(
            tzinfo=datetime.timezone.utc
        ) + datetime.timedelta(days=1, hours=1, minutes=45)
        pending, count = [], 0
        for i, (_, built) in enumerate(day_blocks):
            pending += built
            if len(pending) > args.rows_per_file or i == len(day_blocks) - 1:
                count += 1
                stamp = str(clock.timestamp() + count / 1000)
                df = to_frame(pending, TRANSACTIONS, args.pandas2_strings)
                write(df, os.path.join(directory, "transactions-%d-%s.snappy.parquet" % (count, stamp)),
                      args.timestamps, args.pandas2_strings)
                written += 1
                pending = []
    block_rows, block_files = write_blocks(args)
    print("%d rows, %d files; blocks: %d rows, %d files" % (len(rows), written, block_rows, block_files))


if __name__ == "__main__":
    main()
