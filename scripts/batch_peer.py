#!/usr/bin/env python3
"""The compute side of AWS Batch, in front of moto, for chainbatch's tests.

moto answers the Batch API: it validates requests and stores queues,
definitions and jobs, but runs nothing. This peer sits in front of it:

* every request is forwarded to moto and logged, one JSON line each
  (operation and body), so tests can assert the exact requests;
* it plays the compute environment: each submitted job's children run as
  `<entrypoint> <command...>` with the environment Batch gives a container
  (AWS_BATCH_JOB_ID, AWS_BATCH_JOB_ATTEMPT, AWS_BATCH_JOB_ARRAY_INDEX for
  arrays), honouring dependsOn (whole job or N_TO_N), the retry strategy's
  evaluateOnExit rules and the attempt timeout;
* it reports those states by rewriting moto's DescribeJobs answers, and
  TerminateJob stops what runs;
* faults are injected per job name, child index and attempt: a lost host
  (status reason, no exit code), a forced exit code, a child held RUNNING
  until terminated, and throttled DescribeJobs calls.

Usage:
  batch_peer.py --setup --moto URL
  batch_peer.py --moto URL --entrypoint PATH --log FILE [--faults JSON]
                [--slots N] [--workdir DIR]

`--setup` creates the queue `chainbatch-test` and the job definition
`chainbatch-executor` (image `chainbatch-executor:test`) in moto if they are
missing, and exits. Otherwise the peer prints `PORT <n>` once it listens on
127.0.0.1.
"""

import argparse
import http.client
import json
import os
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

QUEUE = "chainbatch-test"
DEFINITION = "chainbatch-executor"
IMAGE = "chainbatch-executor:test"
OPS = {
    "submitjob": "SubmitJob",
    "describejobs": "DescribeJobs",
    "terminatejob": "TerminateJob",
    "describejobqueues": "DescribeJobQueues",
    "describejobdefinitions": "DescribeJobDefinitions",
}
TERMINAL = ("SUCCEEDED", "FAILED")


def now_ms():
    return int(time.time() * 1000)


def glob_match(pattern, value):
    """Batch's evaluateOnExit patterns: exact, or a prefix ending in `*`."""
    value = "" if value is None else str(value)
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1])
    return value == pattern


class Child:
    def __init__(self, job, index):
        self.job = job
        self.index = index
        self.id = f"{job.id}:{index}" if job.size is not None else job.id
        self.status = "SUBMITTED"
        self.status_reason = None
        self.attempts = []
        self.exit_code = None
        self.proc = None
        self.started = None
        self.stopped = None


class Job:
    def __init__(self, job_id, body):
        self.id = job_id
        self.name = body["jobName"]
        self.size = (body.get("arrayProperties") or {}).get("size")
        overrides = body.get("containerOverrides") or {}
        self.command = overrides.get("command") or []
        self.env = {e["name"]: e["value"] for e in overrides.get("environment") or []}
        retry = body.get("retryStrategy") or {}
        self.max_attempts = retry.get("attempts") or 1
        self.rules = retry.get("evaluateOnExit") or []
        self.timeout = (body.get("timeout") or {}).get("attemptDurationSeconds")
        self.depends_on = body.get("dependsOn") or []
        self.terminated = None
        self.children = [Child(self, i) for i in range(self.size or 1)]

    def status(self):
        states = [c.status for c in self.children]
        if all(s in TERMINAL for s in states):
            return "SUCCEEDED" if all(s == "SUCCEEDED" for s in states) else "FAILED"
        if any(s in ("RUNNING", "STARTING") or s in TERMINAL for s in states):
            return "RUNNING"
        return "PENDING"


class Peer:
    def __init__(self, args):
        self.moto = urllib.parse.urlparse(args.moto)
        self.entrypoint = args.entrypoint
        self.log_path = args.log
        self.workdir = args.workdir
        self.faults = json.loads(args.faults) if args.faults else {}
        self.throttle_left = int(self.faults.get("throttle_describe", 0))
        self.jobs = {}
        self.children = {}
        self.lock = threading.Lock()
        self.pool = ThreadPoolExecutor(max_workers=args.slots)

    def log(self, op, body):
        with self.lock, open(self.log_path, "a") as f:
            f.write(json.dumps({"op": op, "body": body}) + "\n")

    def forward(self, method, path, headers, body):
        conn = http.client.HTTPConnection(self.moto.hostname, self.moto.port, timeout=60)
        fwd = {k: v for k, v in headers.items() if k.lower() not in ("host", "content-length")}
        conn.request(method, path, body=body, headers=fwd)
        r = conn.getresponse()
        data = r.read()
        out = (r.status, [(k, v) for k, v in r.getheaders()
                          if k.lower() not in ("content-length", "transfer-encoding", "connection")], data)
        conn.close()
        return out

    # -- faults -----------------------------------------------------------

    def fault_for(self, job, index, attempt):
        for rule in self.faults.get("rules", []):
            if rule.get("job", "") not in job.name:
                continue
            if rule.get("index", index) != index:
                continue
            if rule.get("attempt", attempt) not in (attempt, "*"):
                continue
            return rule
        return None

    # -- compute ----------------------------------------------------------

    def submit(self, job):
        with self.lock:
            self.jobs[job.id] = job
            for c in job.children:
                self.children[c.id] = c
        for c in job.children:
            self.pool.submit(self.run_child, c)

    def dependency_state(self, child):
        """None while waiting, "ok", or the reason to fail."""
        for dep in child.job.depends_on:
            parent = self.jobs.get(dep["jobId"])
            if parent is None:
                continue
            if dep.get("type") == "N_TO_N":
                target = parent.children[child.index].status
            else:
                target = parent.status()
            if target == "FAILED":
                return "Dependent Job failed"
            if target != "SUCCEEDED":
                return None
        return "ok"

    def run_child(self, child):
        job = child.job
        child.status = "PENDING"
        while True:
            if job.terminated:
                return self.finish(child, "FAILED", job.terminated)
            dep = self.dependency_state(child)
            if dep == "ok":
                break
            if dep is not None:
                return self.finish(child, "FAILED", dep)
            time.sleep(0.05)
        for attempt in range(1, job.max_attempts + 1):
            if job.terminated:
                return self.finish(child, "FAILED", job.terminated)
            child.status = "RUNNING"
            child.started = child.started or now_ms()
            started = now_ms()
            code, reason = self.attempt(child, attempt)
            stream = f"{DEFINITION}/default/{child.id.replace(':', '-')}-{attempt}"
            record = {"container": {"logStreamName": stream}, "startedAt": started,
                      "stoppedAt": now_ms()}
            if code is not None:
                record["container"]["exitCode"] = code
            if reason:
                record["statusReason"] = reason
            child.attempts.append(record)
            child.exit_code = code
            if code == 0 and not reason:
                return self.finish(child, "SUCCEEDED", None)
            if job.terminated:
                return self.finish(child, "FAILED", job.terminated)
            if self.action(job, code, reason) == "RETRY" and attempt < job.max_attempts:
                child.status = "RUNNABLE"
                continue
            return self.finish(child, "FAILED", reason)

    def attempt(self, child, attempt):
        """Runs one attempt; returns (exit code or None, status reason)."""
        job = child.job
        fault = self.fault_for(job, child.index, attempt)
        if fault and fault.get("hold"):
            while not job.terminated:
                time.sleep(0.05)
            return None, job.terminated
        if fault and ("exit_code" in fault or "status_reason" in fault):
            code = fault.get("exit_code")
            return code, fault.get("status_reason") or "Essential container in task exited"
        env = dict(os.environ)
        env.update(job.env)
        env["AWS_BATCH_JOB_ID"] = child.id
        env["AWS_BATCH_JOB_ATTEMPT"] = str(attempt)
        env["AWS_BATCH_JQ_NAME"] = QUEUE
        if job.size is not None:
            env["AWS_BATCH_JOB_ARRAY_INDEX"] = str(child.index)
        else:
            env.pop("AWS_BATCH_JOB_ARRAY_INDEX", None)
        log = os.path.join(self.workdir, f"{child.id.replace(':', '-')}-{attempt}.log")
        with open(log, "w") as out:
            child.proc = subprocess.Popen([self.entrypoint] + job.command, env=env,
                                          stdout=out, stderr=subprocess.STDOUT)
            try:
                code = child.proc.wait(timeout=job.timeout)
            except subprocess.TimeoutExpired:
                child.proc.kill()
                child.proc.wait()
                return None, "Job attempt duration exceeded timeout"
        if job.terminated:
            return code, job.terminated
        return code, None if code == 0 else "Essential container in task exited"

    def action(self, job, code, reason):
        for rule in job.rules:
            conds = []
            if "onStatusReason" in rule:
                conds.append(glob_match(rule["onStatusReason"], reason))
            if "onReason" in rule:
                conds.append(glob_match(rule["onReason"], ""))
            if "onExitCode" in rule:
                conds.append(code is not None and glob_match(rule["onExitCode"], code))
            if conds and all(conds):
                return rule["action"].upper()
        # No rule matched: Batch retries.
        return "RETRY"

    def finish(self, child, status, reason):
        child.status = status
        child.status_reason = reason
        child.stopped = now_ms()

    def terminate(self, job_id, reason):
        job = self.jobs.get(job_id)
        if job is None:
            child = self.children.get(job_id)
            job = child.job if child else None
        if job is None:
            return
        job.terminated = reason or "Terminated by user"
        for c in job.children:
            if c.proc and c.proc.poll() is None:
                c.proc.kill()

    # -- DescribeJobs overlay ---------------------------------------------

    def overlay(self, detail):
        jid = detail.get("jobId")
        job = self.jobs.get(jid)
        if job is not None and job.size is not None:
            summary = {s: 0 for s in ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING",
                                      "RUNNING", "SUCCEEDED", "FAILED")}
            for c in job.children:
                summary[c.status] += 1
            detail["status"] = job.status()
            detail["arrayProperties"] = {"size": job.size, "statusSummary": summary}
            detail["attempts"] = []
            detail.pop("statusReason", None)
            if detail["status"] == "FAILED":
                detail["statusReason"] = "Array Child Job failed"
            return detail
        child = self.children.get(jid)
        if child is None:
            return detail
        detail["status"] = child.status
        detail["attempts"] = list(child.attempts)
        detail.pop("statusReason", None)
        if child.status_reason:
            detail["statusReason"] = child.status_reason
        container = detail.setdefault("container", {})
        container.pop("exitCode", None)
        if child.status in TERMINAL and child.exit_code is not None:
            container["exitCode"] = child.exit_code
        return detail


def handler_for(peer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_GET(self):
            self.proxy(b"")

        def do_POST(self):
            n = int(self.headers.get("Content-Length") or 0)
            self.proxy(self.rfile.read(n))

        def reply(self, status, headers, data):
            self.send_response(status)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def proxy(self, raw):
            op = OPS.get(self.path.rstrip("/").rsplit("/", 1)[-1].lower(), self.path)
            try:
                body = json.loads(raw) if raw else {}
            except ValueError:
                body = {"raw": raw.decode("utf-8", "replace")}
            peer.log(op, body)
            if op == "DescribeJobs":
                with peer.lock:
                    throttle = peer.throttle_left > 0
                    peer.throttle_left -= 1 if throttle else 0
                if throttle:
                    err = json.dumps({"__type": "TooManyRequestsException",
                                      "message": "Too Many Requests"}).encode()
                    return self.reply(429, [("Content-Type", "application/json"),
                                            ("x-amzn-ErrorType", "TooManyRequestsException")], err)
            status, headers, data = peer.forward(self.command, self.path, dict(self.headers), raw)
            if status == 200 and op == "SubmitJob":
                peer.submit(Job(json.loads(data)["jobId"], body))
            elif status == 200 and op == "TerminateJob":
                peer.terminate(body.get("jobId"), body.get("reason"))
            elif status == 200 and op == "DescribeJobs":
                doc = json.loads(data)
                with peer.lock:
                    doc["jobs"] = [peer.overlay(d) for d in doc.get("jobs", [])]
                data = json.dumps(doc).encode()
            self.reply(status, headers, data)

    return Handler


def ensure_queue_and_definition(moto_url):
    import boto3

    kw = dict(endpoint_url=moto_url, region_name="us-east-1",
              aws_access_key_id="testing", aws_secret_access_key="testing")
    urllib.request.urlopen(urllib.request.Request(
        moto_url + "/moto-api/config", method="POST",
        data=json.dumps({"batch": {"use_docker": False}}).encode(),
        headers={"Content-Type": "application/json"})).read()
    batch = boto3.client("batch", **kw)
    if batch.describe_job_queues(jobQueues=[QUEUE])["jobQueues"]:
        return
    iam = boto3.client("iam", **kw)
    try:
        role = iam.get_role(RoleName="chainbatch-batch-service")["Role"]["Arn"]
    except iam.exceptions.NoSuchEntityException:
        role = iam.create_role(RoleName="chainbatch-batch-service",
                               AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    ce = batch.create_compute_environment(computeEnvironmentName="chainbatch-test-ce",
                                          type="UNMANAGED", state="ENABLED", serviceRole=role)
    batch.create_job_queue(jobQueueName=QUEUE, state="ENABLED", priority=1,
                           computeEnvironmentOrder=[{"order": 1, "computeEnvironment":
                                                     ce["computeEnvironmentArn"]}])
    batch.register_job_definition(
        jobDefinitionName=DEFINITION, type="container",
        containerProperties={"image": IMAGE, "command": ["--help"],
                             "resourceRequirements": [{"type": "VCPU", "value": "1"},
                                                      {"type": "MEMORY", "value": "2048"}]})


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--moto", required=True)
    ap.add_argument("--setup", action="store_true")
    ap.add_argument("--entrypoint")
    ap.add_argument("--log")
    ap.add_argument("--faults", default="")
    ap.add_argument("--slots", type=int, default=2)
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    if args.setup:
        return ensure_queue_and_definition(args.moto)
    if not (args.entrypoint and args.log):
        ap.error("--entrypoint and --log are required to serve")
    args.workdir = args.workdir or os.path.dirname(os.path.abspath(args.log))
    peer = Peer(args)
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(peer))
    server.daemon_threads = True
    print(f"PORT {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
