#!/usr/bin/env python3
"""The canonical ETL in chainbatch and its peers, on the same data, in one run.

The ETL: read generated `eth` transactions (AWS layout, hive `date=`
partitions), add the exact fee `receipt_gas_used * receipt_effective_gas_price`
as DECIMAL(38,0), partition by the date of `block_timestamp`, sort by
`block_number`, and write zstd Parquet. Engines: chainbatch (local backend,
all cores), DuckDB, Polars, PySpark (local mode) and DataFusion's `COPY`.

chainbatch runs twice: on the files as `chainbatch gen` writes them, which
declare their order (Parquet sorting_columns) so chainbatch streams them in
order, and as `chainbatch-sorting` on a copy that declares nothing, where
it sorts like every peer.

`--shape compacted` or `--shape shuffled` gives every engine the same rows
in the AWS producer's file shape instead (producer_shapes.py: 100,000-row
snappy files, no declared order; `shuffled` with the rows of each file in
random order).

Each engine runs in its own process; wall time and CPU time come from
os.wait4 on that process and from sampling its process tree, peak RSS from
the tree's sampled high-water marks (VmHWM).
Afterwards DuckDB reads every output back and checks that all agree on the
row count and the exact sum of fee_wei.

Usage: compare.py --chainbatch BIN --conf DIR --rows N [--days D] [--shape gen|compacted|shuffled]
                  [--engines chainbatch,chainbatch-sorting,duckdb,polars,pyspark,datafusion]
                  [--work DIR] [--json FILE]
(benches/peers/run.sh installs the peers and calls this.)
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time

FEE_SQL = ("CAST(receipt_gas_used AS DECIMAL(38,0)) * "
           "CAST(receipt_effective_gas_price AS DECIMAL(38,0))")


def engine_duckdb(src, out, threads):
    import duckdb

    con = duckdb.connect()
    con.execute(f"SET threads = {threads}")
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"""
        COPY (
          SELECT * EXCLUDE (date), {FEE_SQL} AS fee_wei,
                 CAST(block_timestamp AS DATE) AS date
          FROM read_parquet('{src}/transactions/*/*.parquet', hive_partitioning = true)
          ORDER BY block_number
        ) TO '{out}' (FORMAT parquet, PARTITION_BY (date), COMPRESSION zstd)
    """)


def engine_polars(src, out, threads):
    import polars as pl

    lf = pl.scan_parquet(f"{src}/transactions/*/*.parquet", hive_partitioning=True)
    df = (lf.drop("date")
          .with_columns(
              (pl.col("receipt_gas_used").cast(pl.Decimal(38, 0))
               * pl.col("receipt_effective_gas_price").cast(pl.Decimal(38, 0))
               ).cast(pl.Decimal(38, 0)).alias("fee_wei"),
              pl.col("block_timestamp").dt.date().alias("date"))
          .sort("block_number")
          .collect())
    df.write_parquet(out, compression="zstd", partition_by=["date"])


def engine_pyspark(src, out, threads):
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F
    from pyspark.sql.types import DecimalType

    spark = (SparkSession.builder.master(f"local[{threads}]")
             .config("spark.driver.memory", "2g")
             .config("spark.sql.session.timeZone", "UTC")
             .config("spark.ui.enabled", "false")
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    df = spark.read.parquet(f"{src}/transactions")
    dec = DecimalType(38, 0)
    df = (df.drop("date")
          .withColumn("fee_wei", (F.col("receipt_gas_used").cast(dec)
                                  * F.col("receipt_effective_gas_price").cast(dec)).cast(dec))
          .withColumn("date", F.to_date("block_timestamp")))
    (df.repartition("date").sortWithinPartitions("block_number")
       .write.partitionBy("date").option("compression", "zstd").parquet(out))
    spark.stop()


def engine_datafusion(src, out, threads):
    import datafusion

    config = datafusion.SessionConfig().with_target_partitions(threads)
    ctx = datafusion.SessionContext(config)
    ctx.sql(f"""CREATE EXTERNAL TABLE tx STORED AS PARQUET
               LOCATION '{src}/transactions/' PARTITIONED BY (date)""").collect()
    ctx.sql(f"""COPY (SELECT * EXCLUDE (date), {FEE_SQL} AS fee_wei,
                       CAST(block_timestamp AS DATE) AS date
                     FROM tx ORDER BY block_number)
               TO '{out}' STORED AS PARQUET PARTITIONED BY (date)
               OPTIONS (compression 'zstd(3)')""").collect()


ENGINES = {
    "duckdb": engine_duckdb,
    "polars": engine_polars,
    "pyspark": engine_pyspark,
    "datafusion": engine_datafusion,
}


def tree_usage(pid):
    """Peak resident bytes (each process's high-water mark, VmHWM, summed)
    and CPU seconds (its own and its waited-for children's) of a process
    and all its descendants, from /proc."""
    rss, cpu, stack = 0, 0.0, [pid]
    ticks = os.sysconf("SC_CLK_TCK")
    while stack:
        p = stack.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                rss += next((int(line.split()[1]) * 1024 for line in f
                             if line.startswith("VmHWM:")), 0)
            with open(f"/proc/{p}/stat") as f:
                # Fields after the parenthesised command: utime is the 14th
                # field of the line, then stime, cutime, cstime.
                fields = f.read().rsplit(")", 1)[1].split()
                cpu += sum(int(x) for x in fields[11:15]) / ticks
            for tid in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    stack.extend(int(c) for c in f.read().split())
        except (OSError, ValueError):
            continue
    return rss, cpu


def run_measured(cmd, env=None):
    """Runs cmd; returns (seconds, CPU seconds, peak RSS bytes, exit code,
    stderr tail). CPU seconds are user plus system time, the larger of the
    child's own (wait4) and its whole process tree's sampled every 50 ms, so
    that PySpark's JVM counts. Peak RSS is the tree's high-water marks,
    sampled: wait4's ru_maxrss is not used, as Linux carries the parent's
    peak across fork and exec into it (a parent that held the input in
    pyarrow made every engine look as large as itself)."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak, tree_cpu = [0], [0.0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            rss, cpu = tree_usage(proc.pid)
            peak[0] = max(peak[0], rss)
            tree_cpu[0] = max(tree_cpu[0], cpu)
            done.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    # wait4 gives this child's own rusage; read stderr first so it cannot block.
    err = proc.stderr.read()
    done.set()
    sampler.join()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    rss = peak[0]
    # wait4 misses what a child never waited for (PySpark's JVM); the
    # sampled tree sees it, up to the last 50 ms.
    cpu = max(usage.ru_utime + usage.ru_stime, tree_cpu[0])
    return seconds, cpu, rss, proc.returncode, err.decode(errors="replace")[-2000:]


def tree_bytes(path):
    """Bytes of the Parquet files below path."""
    return sum(os.path.getsize(os.path.join(root, f))
               for root, _, files in os.walk(path) for f in files if f.endswith(".parquet"))


def check_output(out):
    """Row count and exact fee sum of an engine's output, read by DuckDB."""
    import duckdb

    rows, fees, dates = duckdb.connect().execute(
        f"SELECT count(*), CAST(sum(fee_wei) AS VARCHAR), count(DISTINCT date) "
        f"FROM read_parquet('{out}/**/*.parquet', hive_partitioning = true)").fetchone()
    return rows, fees, dates


def undeclared_copy(src):
    """The same files without their declared sort order (Parquet
    sorting_columns), as most writers leave them: chainbatch must sort."""
    import pyarrow.parquet as pq

    dst = src + "-undeclared"
    if os.path.isdir(os.path.join(dst, "transactions")):
        return dst
    print(f"copying {src} without declared order to {dst}", flush=True)
    for root, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".parquet"):
                continue
            rel = os.path.relpath(os.path.join(root, f), src)
            os.makedirs(os.path.dirname(os.path.join(dst, rel)), exist_ok=True)
            pf = pq.ParquetFile(os.path.join(root, f))
            with pq.ParquetWriter(os.path.join(dst, rel), pf.schema_arrow,
                                  compression="snappy") as w:
                for g in range(pf.num_row_groups):
                    w.write_table(pf.read_row_group(g), row_group_size=1 << 20)
    return dst


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--engine-child", nargs=3, metavar=("ENGINE", "SRC", "OUT"),
                    help=argparse.SUPPRESS)
    ap.add_argument("--chainbatch")
    ap.add_argument("--conf")
    ap.add_argument("--rows", type=int, default=4_000_000)
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--engines",
                    default="chainbatch,chainbatch-sorting,duckdb,polars,pyspark,datafusion")
    ap.add_argument("--shape", choices=["gen", "compacted", "shuffled"], default="gen")
    ap.add_argument("--work", default="/tmp/chainbatch-peers")
    ap.add_argument("--json")
    args = ap.parse_args()
    threads = os.cpu_count() or 1
    if args.engine_child:
        name, src, out = args.engine_child
        ENGINES[name](src, out, threads)
        return 0
    if not (args.chainbatch and args.conf):
        ap.error("--chainbatch and --conf are required")

    src = os.path.join(args.work, f"raw-{args.rows}-{args.days}")
    if not os.path.isdir(os.path.join(src, "transactions")):
        print(f"generating {args.rows} transactions over {args.days} days in {src}", flush=True)
        subprocess.run([args.chainbatch, "gen", "--rows", str(args.rows), "--days", str(args.days),
                        "--out", src, "--tables", "transactions"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if args.shape != "gen":
        shaped = f"{src}-{args.shape}"
        if not os.path.isdir(os.path.join(shaped, "transactions")):
            sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
            import producer_shapes

            print(f"rewriting {src} in the producer's {args.shape} shape to {shaped}", flush=True)
            producer_shapes.reshape(src, shaped, args.shape, 100_000, 7)
        src = shaped
    if "chainbatch-sorting" in args.engines.split(","):
        plain = undeclared_copy(src)
    results = []
    for name in args.engines.split(","):
        out = os.path.join(args.work, f"out-{name}")
        shutil.rmtree(out, ignore_errors=True)
        if name in ("chainbatch", "chainbatch-sorting"):
            raw = src if name == "chainbatch" else plain
            cmd = [args.chainbatch, "run", "--conf", args.conf,
                   "--globals", f"raw_root={raw}", "--globals", f"out_root={out}"]
            table = os.path.join(out, "transactions_with_fees")
        elif name in ENGINES:
            cmd = [sys.executable, os.path.abspath(__file__), "--engine-child", name, src, out]
            table = out
        else:
            sys.exit(f"unknown engine {name}; engines: chainbatch, {', '.join(ENGINES)}")
        print(f"running {name} ...", flush=True)
        seconds, cpu, rss, code, err = run_measured(cmd)
        if code != 0:
            print(f"  {name} failed (exit {code}):\n{err}", flush=True)
            results.append({"engine": name, "failed": err})
            continue
        rows, fees, dates = check_output(table)
        results.append({"engine": name, "seconds": seconds, "cpu_seconds": cpu,
                        "peak_rss_bytes": rss, "output_bytes": tree_bytes(table),
                        "rows": rows, "fee_wei_sum": fees, "partitions": dates,
                        "rows_per_second": rows / seconds})
    ok = [r for r in results if "failed" not in r]
    agree = len({(r["rows"], r["fee_wei_sum"], r["partitions"]) for r in ok}) <= 1
    base = next((r for r in ok if r["engine"] == "chainbatch"), None)
    print(f"\n{args.rows} rows, {args.days} days, {threads} cores, input shape {args.shape}")
    # "chainbatch vs": the engine's time over chainbatch's; above 1, chainbatch is faster.
    print(f"{'engine':<19} {'seconds':>8} {'CPU s':>6} {'rows/s':>11} {'peak RSS':>10} "
          f"{'output':>9} {'chainbatch vs':>14}  rows, fee_wei sum")
    for r in results:
        if "failed" in r:
            print(f"{r['engine']:<19} failed")
            continue
        ratio = (r["seconds"] / base["seconds"]) if base else float("nan")
        print(f"{r['engine']:<19} {r['seconds']:>8.2f} {r['cpu_seconds']:>6.1f} "
              f"{r['rows_per_second']:>11,.0f} {r['peak_rss_bytes'] / 2**20:>6.0f} MiB "
              f"{r['output_bytes'] / 2**20:>5.0f} MiB {ratio:>13.2f}x  "
              f"{r['rows']}, {r['fee_wei_sum']}")
    print("outputs agree on rows, fee_wei sum and partitions" if agree
          else "OUTPUTS DISAGREE")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": args.rows, "days": args.days, "cores": threads, "shape": args.shape,
                       "results": results, "agree": agree}, f, indent=2)
    return 0 if agree and len(ok) == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
