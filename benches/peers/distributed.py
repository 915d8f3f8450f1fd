#!/usr/bin/env python3
"""The distributed benchmark: chainbatch's distributed nodes on Ballista
against one task on the local backend and PySpark, in one run, on the same
generated input.

Nodes (from raw transactions and token transfers):
- `join`: benches/peers/distributed_join.sql, transactions joined with token
  transfers on the transaction hash (pipeline `tx_token_join`, written
  bucketed by hash into 8 files);
- `profiles`: the `address_profiles` pipeline of conf/base (one node: the
  activity rows of both tables, aggregated per address, bucketed by address).

Configurations: Ballista with 2 executors of 1 vCPU each, with 1 executor
of 1 vCPU, the local backend (one task on every core), and PySpark
`local[2]` (benches/peers/spark_distributed.py). Each executor's memory pool
is --executor-memory-mib; peak RSS per executor and the CPU seconds of all
executors are sampled from /proc; each stage's seconds come from the run's
progress lines.

Usage: distributed.py --chainbatch PATH --rows N [--days 4] [--files-per-day 8]
                      [--work DIR] [--spark-python PATH] [--repeat 1]
                      [--nodes join,profiles] [--skip CONFIG,...]
Prints a table and one JSON line per measurement. A configuration that
fails is reported and left out. Ratios against PySpark use Spark's time
from its statement (no JVM start), chainbatch's from its command's start.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def join_pipeline():
    sql = open(os.path.join(HERE, "distributed_join.sql")).read()
    body = "".join(
        "        " + line + "\n" for line in sql.splitlines() if not line.lstrip().startswith("--")
    )
    return (
        "\ntx_token_join:\n  nodes:\n    - name: transfers_with_fees\n"
        "      inputs: [raw_transactions, raw_token_transfers]\n"
        "      outputs: transfers_with_fees\n      sql: |\n" + body
    )


JOIN_DATASET = (
    "\ntransfers_with_fees:\n  type: parquet\n  path: ${globals:out_root}/transfers_with_fees\n"
    "  layout:\n    bucket_by:\n      columns: [hash]\n      buckets: 8\n"
)


class RssSampler(threading.Thread):
    """Peak RSS (VmHWM) of every `chainbatch-executor ballista` process."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peaks = {}
        # CPU seconds (user + system) each executor had used when last seen.
        self.cpu = {}
        self.stop = False

    def run(self):
        while not self.stop:
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    cmd = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
                    if not any(c.endswith(b"chainbatch-executor") for c in cmd) or b"ballista" not in cmd:
                        continue
                    for line in open(f"/proc/{pid}/status"):
                        if line.startswith("VmHWM:"):
                            kib = int(line.split()[1])
                            self.peaks[pid] = max(self.peaks.get(pid, 0), kib)
                    stat = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
                    ticks = int(stat[11]) + int(stat[12])
                    self.cpu[pid] = ticks / os.sysconf("SC_CLK_TCK")
                except OSError:
                    pass
            time.sleep(0.1)


def timed(cmd, env=None):
    """Seconds, peak executor RSS (MiB) and the finished process; seconds is
    None when the command failed (its error is printed)."""
    sampler = RssSampler()
    sampler.start()
    started = time.monotonic()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.monotonic() - started
    sampler.stop = True
    sampler.join()
    if out.returncode != 0:
        last = [l for l in out.stderr.splitlines() if l.strip()][-1:] or ["(no output)"]
        print(f"FAILED: {' '.join(cmd)}: {last[0][:500]}", file=sys.stderr, flush=True)
        return None, None, out
    peak_mib = max(sampler.peaks.values()) / 1024 if sampler.peaks else None
    out.executor_cpu_seconds = round(sum(sampler.cpu.values()), 1) if sampler.cpu else None
    return seconds, peak_mib, out


def stage_seconds(stderr):
    """Seconds of each stage, from the run's JSON progress lines."""
    stages = {}
    for line in stderr.splitlines():
        if not line.startswith("{"):
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("event") == "stage_finished":
            stages[event["stage"]] = event["elapsed_s"]
    return stages


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chainbatch", required=True)
    ap.add_argument("--rows", type=int, required=True)
    ap.add_argument("--days", type=int, default=4)
    ap.add_argument("--files-per-day", type=int, default=8)
    ap.add_argument("--work", default=None)
    ap.add_argument("--spark-python", default=None)
    ap.add_argument("--executor-memory-mib", type=int, default=1024)
    ap.add_argument("--local-memory-mib", type=int, default=2048,
                    help="task_memory_bytes of the local single task (default: the memory of two executors)")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--skip", default="", help="comma-separated configurations to skip")
    ap.add_argument("--nodes", default="join,profiles", help="comma-separated nodes to run")
    args = ap.parse_args()

    work = args.work or tempfile.mkdtemp(prefix="chainbatch-distributed-")
    raw = os.path.join(work, "raw")
    conf = os.path.join(work, "conf")
    if not os.path.exists(os.path.join(raw, "token_transfers")):
        subprocess.run(
            [args.chainbatch, "gen", "--rows", str(args.rows), "--days", str(args.days),
             "--start", "2024-03-01", "--files-per-day", str(args.files_per_day),
             "--tables", "transactions,token_transfers", "--out", raw],
            check=True)
    shutil.rmtree(conf, ignore_errors=True)
    shutil.copytree(os.path.join(REPO, "conf"), conf)
    with open(os.path.join(conf, "base/pipelines.yml"), "a") as f:
        f.write(join_pipeline())
    with open(os.path.join(conf, "base/catalog.yml"), "a") as f:
        f.write(JOIN_DATASET)

    pipelines = {"join": "tx_token_join", "profiles": "address_profiles"}
    pipelines = {n: p for n, p in pipelines.items() if n in args.nodes.split(",")}
    mem = str(args.executor_memory_mib)
    configs = {
        "ballista-2x1": ["--backend", "ballista", "--executors", "2", "--executor-vcores", "1",
                         "--executor-memory-mib", mem],
        "ballista-1x1": ["--backend", "ballista", "--executors", "1", "--executor-vcores", "1",
                         "--executor-memory-mib", mem],
        "local": ["--backend", "local", "--globals",
                  f"task_memory_bytes={args.local_memory_mib * 1024 * 1024}"],
    }
    skip = set(filter(None, args.skip.split(",")))
    results = []
    for rep in range(args.repeat):
        for node, pipeline in pipelines.items():
            for name, flags in configs.items():
                if name in skip:
                    continue
                out = os.path.join(work, f"out-{name}")
                shutil.rmtree(out, ignore_errors=True)
                cmd = [args.chainbatch, "run", "--conf", conf, "--pipeline", pipeline,
                       "--globals", f"raw_root={raw}", "--globals", f"out_root={out}",
                       "--log-format", "json"] + flags
                seconds, peak, proc = timed(cmd)
                if seconds is None:
                    continue
                r = {"node": node, "config": name, "seconds": round(seconds, 2),
                     "executor_peak_rss_mib": None if peak is None else round(peak),
                     "executor_cpu_seconds": proc.executor_cpu_seconds,
                     "stages": stage_seconds(proc.stderr)}
                print(json.dumps(r), flush=True)
                results.append(r)
            if "spark" not in skip and args.spark_python:
                out = os.path.join(work, "out-spark")
                shutil.rmtree(out, ignore_errors=True)
                spark_node = {"join": "distributed_join", "profiles": "address_profiles"}[node]
                cmd = [args.spark_python, os.path.join(HERE, "spark_distributed.py"),
                       "--transactions", os.path.join(raw, "transactions"),
                       "--token-transfers", os.path.join(raw, "token_transfers"),
                       "--out", out, "--nodes", spark_node, "--master", "local[2]"]
                seconds, _, proc = timed(cmd)
                if seconds is None:
                    continue
                line = [l for l in proc.stdout.splitlines() if l.startswith("{")][-1]
                inner = json.loads(line)
                r = {"node": node, "config": "pyspark-local[2]", "seconds": round(seconds, 2),
                     "statement_seconds": inner["seconds"], "rows": inner["rows"]}
                print(json.dumps(r), flush=True)
                results.append(r)

    best = {}
    for r in results:
        key = (r["node"], r["config"])
        best[key] = min(best.get(key, r), r, key=lambda x: x["seconds"])
    print(f"\n{'node':<10} {'config':<18} {'seconds':>8} {'peak RSS/executor':>18}")
    for (node, config), r in sorted(best.items()):
        rss = r.get("executor_peak_rss_mib")
        print(f"{node:<10} {config:<18} {r['seconds']:>8.2f} {('' if rss is None else f'{rss} MiB'):>18}")
    for node in pipelines:
        get = lambda c, k="seconds": best.get((node, c), {}).get(k)
        two, one, local = get("ballista-2x1"), get("ballista-1x1"), get("local")
        # Spark's own statement time, without the JVM and session start:
        # chainbatch's seconds include its cluster's start, so this favours Spark.
        spark = get("pyspark-local[2]", "statement_seconds")
        ratios = []
        if two and one:
            ratios.append(f"2 executors vs 1: {one / two:.2f}x")
        if two and local:
            ratios.append(f"vs local single task: {local / two:.2f}x")
        if two and spark:
            ratios.append(f"vs PySpark: {spark / two:.2f}x")
        print(f"{node}: " + "; ".join(ratios))


if __name__ == "__main__":
    main()
