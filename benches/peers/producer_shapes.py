#!/usr/bin/env python3
"""Rewrites `chainbatch gen` transactions in the file shapes the AWS Public
Blockchain Data producer leaves, for benchmarks on data as it arrives.

The producer (guidance-for-digital-assets-on-aws, ethereum-worker) writes
with pandas and pyarrow: snappy, no declared sort order (no Parquet
`sorting_columns`), row-group statistics but no page index. A finished day
is files of just over 100,000 rows, each ending with a whole block, written
block by block (`compacted`); the current
day is one file per block (`blocks`, ~7,200 a day). `shuffled` is the
compacted shape with the rows of each file in random order, as other
writers leave them.

The columns stay as `chainbatch gen` wrote them (the canonical ETL reads
them with the exact schema); only files, row groups, order and footers
change. Every output file is written by pyarrow, as the producer's are.

Usage: producer_shapes.py --src RAW --dst DIR --shape compacted|shuffled|blocks
                          [--rows-per-file 100000] [--seed 7]
"""

import argparse
import os
import random
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def day_table(day_dir):
    files = sorted(os.path.join(day_dir, f) for f in os.listdir(day_dir) if f.endswith(".parquet"))
    table = pa.concat_tables(pq.read_table(f) for f in files)
    # The producer writes block by block, each block's transactions in order.
    return table.sort_by([("block_number", "ascending"), ("transaction_index", "ascending")])


def write(table, path):
    # pandas.to_parquet through pyarrow: one row group up to 1Mi rows, snappy,
    # statistics, no sorting_columns, no page index.
    pq.write_table(table, path, compression="snappy")


def reshape(src, dst, shape, rows_per_file, seed):
    rng = random.Random(seed)
    tx = os.path.join(src, "transactions")
    days = sorted(d for d in os.listdir(tx) if d.startswith("date="))
    if not days:
        sys.exit(f"no date=YYYY-MM-DD directories in {tx}")
    files = 0
    for day in days:
        table = day_table(os.path.join(tx, day))
        out = os.path.join(dst, "transactions", day)
        os.makedirs(out, exist_ok=True)
        if shape == "blocks":
            blocks = table.column("block_number").to_numpy()
            starts = [0] + (np.flatnonzero(np.diff(blocks)) + 1).tolist()
            for a, b in zip(starts, starts[1:] + [len(blocks)]):
                write(table.slice(a, b - a), os.path.join(out, f"{blocks[a]}.snappy.parquet"))
                files += 1
            continue
        # The nightly compaction: a file whenever more than rows_per_file
        # rows accumulated after a block, then the rest.
        blocks = table.column("block_number").to_numpy()
        ends = (np.flatnonzero(np.diff(blocks)) + 1).tolist() + [len(blocks)]
        cuts, start = [], 0
        for end in ends:
            if end - start > rows_per_file or end == len(blocks):
                cuts.append((start, end))
                start = end
        for n, (start, end) in enumerate(cuts):
            part = table.slice(start, end - start)
            if shape == "shuffled":
                order = list(range(part.num_rows))
                rng.shuffle(order)
                part = part.take(pa.array(order))
            write(part, os.path.join(out, f"transactions-{n}-1700000000.snappy.parquet"))
            files += 1
    return files


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--src", required=True, help="a `chainbatch gen --out` directory")
    ap.add_argument("--dst", required=True)
    ap.add_argument("--shape", choices=["compacted", "shuffled", "blocks"], required=True)
    ap.add_argument("--rows-per-file", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    n = reshape(args.src, args.dst, args.shape, args.rows_per_file, args.seed)
    print(f"wrote {n} {args.shape} files to {args.dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
