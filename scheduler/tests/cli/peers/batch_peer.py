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
* it reports those states by rewriting moto's DescribeJobs answers and
  answers ListJobs for array children itself (paginated), and TerminateJob
  stops what runs; an array parent is SUBMITTED, PENDING, then SUCCEEDED or
  FAILED with a statusSummary, never RUNNING, as AWS documents;
* it enforces what AWS documents and moto lets pass: DescribeJobDefinitions'
  `jobDefinitions` takes only `name:revision` or ARNs and no other
  parameter; evaluateOnExit holds at most 5 rules whose patterns may end in
  `*` only; Fargate jobs take only the vCPU/memory pairs Fargate runs and
  EC2 jobs whole vCPUs; ListJobs takes exactly one of jobQueue, arrayJobId
  or multiNodeJobId; a timed-out attempt is not retried;
* faults are injected per job name, child index and attempt: a lost host
  (status reason, no exit code), a forced exit code, a Fargate start
  failure (`Task failed to start` with a container reason), a child held
  RUNNING until terminated, throttled (429) calls and denied operations.

Faults (JSON): {"rules": [{"job", "index", "attempt", then one of
"status_reason", "exit_code", "start_failure": "<container reason>",
"hold"}], "throttle": {"ops": [...], "first": N, "every": K} (calls of
those operations once a job was submitted),
"throttle_describe": N (the first N DescribeJobs), "deny": [ops],
"list_page": N (most children per ListJobs page)}.

Usage:
  batch_peer.py --setup --moto URL
  batch_peer.py --moto URL --entrypoint PATH --log FILE [--faults JSON]
                [--slots N] [--workdir DIR] [--entrypoint-for DEF=PATH ...]
                [--s3 URL] [--child-env KEY=VALUE ...]

`--entrypoint-for DEF=PATH` runs the jobs of job definition DEF with PATH
(the driver image's `chainbatch` for `chainbatch-driver`), others with
`--entrypoint`. With `--s3 URL` requests that are not Batch API calls
(S3 reads of a Step Functions engine that sends every service call here)
are forwarded to that S3 endpoint, signed with this process's credentials. `--child-env` adds to every job's
environment (what an image sets, such as CHAINBATCH_CONF).

`--setup` creates the queue `chainbatch-test` and the job definitions
`chainbatch-executor` (Fargate) and `chainbatch-executor-ec2` (EC2), both
running image `chainbatch-executor:test`, and `chainbatch-driver`
(Fargate, image `chainbatch-driver:test`), in moto if they are missing, and
exits. Otherwise the peer prints `PORT <n>` once it listens on
127.0.0.1.
"""

import argparse
import base64
import http.client
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from http.server import ThreadingHTTPServer

from moto_proxy import ProxyHandler, forward

QUEUE = "chainbatch-test"
DEFINITION = "chainbatch-executor"
DEFINITION_EC2 = "chainbatch-executor-ec2"
DEFINITION_DRIVER = "chainbatch-driver"
IMAGE = "chainbatch-executor:test"
OPS = {
    "submitjob": "SubmitJob",
    "describejobs": "DescribeJobs",
    "terminatejob": "TerminateJob",
    "describejobqueues": "DescribeJobQueues",
    "describejobdefinitions": "DescribeJobDefinitions",
    "listjobs": "ListJobs",
}
TERMINAL = ("SUCCEEDED", "FAILED")
STATUSES = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED", "FAILED")
TIMEOUT_REASON = "Job attempt duration exceeded timeout"
START_FAILED = "Task failed to start"

# Fargate's vCPU values and the memory (MiB) each takes (ResourceRequirement).
FARGATE_MEMORY = {
    0.25: [512, 1024, 2048],
    0.5: list(range(1024, 4097, 1024)),
    1.0: list(range(2048, 8193, 1024)),
    2.0: list(range(4096, 16385, 1024)),
    4.0: list(range(8192, 30721, 1024)),
    8.0: list(range(16384, 61441, 4096)),
    16.0: list(range(32768, 122881, 8192)),
}
DEF_NAME = r"[A-Za-z0-9_-]{1,128}"
DEF_REVISION = re.compile(rf"^({DEF_NAME}):([0-9]+)$")
DEF_ARN = re.compile(rf"^arn:aws[a-z-]*:batch:[a-z0-9-]+:[0-9]{{12}}:job-definition/({DEF_NAME}):([0-9]+)$")
# evaluateOnExit patterns: onExitCode digits; onReason and onStatusReason
# letters, digits, periods, colons and white space; each may end in `*`.
EXIT_CODE_PATTERN = re.compile(r"^[0-9]*\*?$")
REASON_PATTERN = re.compile(r"^[A-Za-z0-9.:\s]*\*?$")


class ApiError(Exception):
    def __init__(self, status, kind, message):
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


def client_error(message):
    return ApiError(400, "ClientException", message)


def check_describe_job_definitions(body):
    """DescribeJobDefinitions: `jobDefinitions` holds `name:revision` or
    ARNs, at most 100, and can't be used with other parameters."""
    defs = body.get("jobDefinitions")
    if defs is None:
        return
    others = [k for k in ("jobDefinitionName", "status", "maxResults", "nextToken") if k in body]
    if others:
        raise client_error(f"jobDefinitions can't be used with other parameters ({', '.join(others)})")
    if len(defs) > 100:
        raise client_error("jobDefinitions holds at most 100 entries")
    for d in defs:
        if not (DEF_REVISION.match(d) or DEF_ARN.match(d)):
            raise client_error(f"jobDefinitions entry {d!r} is neither name:revision nor an ARN")


def check_retry_strategy(retry):
    if not retry:
        return
    attempts = retry.get("attempts")
    if attempts is not None and not 1 <= attempts <= 10:
        raise client_error("retryStrategy.attempts must be between 1 and 10")
    rules = retry.get("evaluateOnExit") or []
    if len(rules) > 5:
        raise client_error(f"retryStrategy.evaluateOnExit holds at most 5 entries, not {len(rules)}")
    for rule in rules:
        if str(rule.get("action", "")).upper() not in ("RETRY", "EXIT"):
            raise client_error(f"evaluateOnExit action {rule.get('action')!r} is not RETRY or EXIT")
        for key, pattern in (("onExitCode", EXIT_CODE_PATTERN), ("onReason", REASON_PATTERN),
                             ("onStatusReason", REASON_PATTERN)):
            value = rule.get(key)
            if value is None:
                continue
            if len(value) > 512 or not pattern.match(value):
                raise client_error(f"evaluateOnExit {key} {value!r} is not a valid pattern")


def check_resources(platform, requirements):
    """The container's vCPU and memory as the platform takes them."""
    vcpu, memory = requirements.get("VCPU"), requirements.get("MEMORY")
    try:
        vcpu_n = float(vcpu)
        memory_n = int(memory)
    except (TypeError, ValueError):
        raise client_error(f"resourceRequirements VCPU {vcpu!r} and MEMORY {memory!r} must be numbers")
    if platform == "FARGATE":
        if vcpu_n not in FARGATE_MEMORY or memory_n not in FARGATE_MEMORY[vcpu_n]:
            raise client_error(f"Fargate resource requirements are not supported: VCPU {vcpu}, MEMORY {memory}")
    else:
        if vcpu_n < 1 or vcpu_n != int(vcpu_n) or "." in str(vcpu):
            raise client_error(f"EC2 jobs take a whole number of vCPUs, at least 1, not {vcpu}")
        if memory_n < 4:
            raise client_error("EC2 jobs need at least 4 MiB of memory")


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
        self.reason = None
        self.proc = None
        self.started = None
        self.stopped = None


class Job:
    def __init__(self, job_id, body):
        self.id = job_id
        self.name = body["jobName"]
        # `name`, `name:revision` or an ARN: the name decides the entrypoint.
        definition = body.get("jobDefinition", "")
        m = DEF_ARN.match(definition) or DEF_REVISION.match(definition)
        self.definition = m.group(1) if m else definition
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
        self.created = now_ms()
        self.children = [Child(self, i) for i in range(self.size or 1)]

    def status(self):
        """A whole job's status: for an array parent SUBMITTED, PENDING (once
        any child is past SUBMITTED), then SUCCEEDED or FAILED when every
        child is done; an array parent is never RUNNING."""
        states = [c.status for c in self.children]
        if all(s in TERMINAL for s in states):
            return "SUCCEEDED" if all(s == "SUCCEEDED" for s in states) else "FAILED"
        if self.size is None:
            return states[0]
        if all(s == "SUBMITTED" for s in states):
            return "SUBMITTED"
        return "PENDING"


class Peer:
    def __init__(self, args):
        self.moto = urllib.parse.urlparse(args.moto)
        self.entrypoint = args.entrypoint
        self.entrypoints = dict(e.split("=", 1) for e in args.entrypoint_for)
        self.s3 = urllib.parse.urlparse(args.s3) if args.s3 else None
        self.child_env = dict(e.split("=", 1) for e in args.child_env)
        self.log_path = args.log
        self.workdir = args.workdir
        self.faults = json.loads(args.faults) if args.faults else {}
        throttle = dict(self.faults.get("throttle") or {})
        if "throttle_describe" in self.faults:
            throttle = {"ops": ["DescribeJobs"], "first": int(self.faults["throttle_describe"])}
        self.throttle_ops = set(throttle.get("ops") or [])
        self.throttle_first = int(throttle.get("first", 0))
        self.throttle_every = int(throttle.get("every", 0))
        self.throttle_calls = 0
        self.deny = set(self.faults.get("deny") or [])
        self.list_page = int(self.faults.get("list_page", 1000))
        self.jobs = {}
        self.children = {}
        self.lock = threading.Lock()
        self.pool = ThreadPoolExecutor(max_workers=args.slots)

    def log(self, op, body, status):
        with self.lock, open(self.log_path, "a") as f:
            f.write(json.dumps({"op": op, "body": body, "status": status}) + "\n")

    def throttled(self, op):
        """Whether this call of `op` is answered 429 TooManyRequestsException."""
        # Only once a job was submitted: the run's polls, not its preflight.
        if op not in self.throttle_ops or not self.jobs:
            return False
        with self.lock:
            self.throttle_calls += 1
            n = self.throttle_calls
        return n <= self.throttle_first or (self.throttle_every > 0 and n % self.throttle_every == 0)

    def moto_call(self, op, body, headers):
        status, _, data = self.forward("POST", f"/v1/{op.lower()}", headers, json.dumps(body).encode())
        if status != 200:
            raise ApiError(status, "ClientException", data.decode("utf-8", "replace"))
        return json.loads(data)

    def definitions(self, ident, headers):
        """The job definitions `ident` names (name, name:revision or ARN),
        looked up in moto; a bare name gives its ACTIVE revisions."""
        m = DEF_ARN.match(ident) or DEF_REVISION.match(ident)
        name, revision = (m.group(1), int(m.group(2))) if m else (ident, None)
        body = {"jobDefinitionName": name}
        if revision is None:
            body["status"] = "ACTIVE"
        found = self.moto_call("DescribeJobDefinitions", body, headers).get("jobDefinitions", [])
        return [d for d in found if revision is None or d.get("revision") == revision]

    def describe_job_definitions(self, body, headers):
        check_describe_job_definitions(body)
        if "jobDefinitions" not in body:
            return None
        out = []
        for d in body["jobDefinitions"]:
            out.extend(self.definitions(d, headers))
        return {"jobDefinitions": out}

    def check_submit(self, body, headers):
        found = self.definitions(body.get("jobDefinition", ""), headers)
        if not found:
            raise client_error(f"Job definition {body.get('jobDefinition')} does not exist")
        definition = max(found, key=lambda d: d.get("revision", 0))
        platform = "FARGATE" if "FARGATE" in (definition.get("platformCapabilities") or []) else "EC2"
        check_retry_strategy(body.get("retryStrategy"))
        timeout = (body.get("timeout") or {}).get("attemptDurationSeconds")
        if timeout is not None and timeout < 60:
            raise client_error("timeout.attemptDurationSeconds must be at least 60")
        size = (body.get("arrayProperties") or {}).get("size")
        if size is not None and not 2 <= size <= 10000:
            raise client_error("arrayProperties.size must be between 2 and 10000")
        reqs = {r["type"]: r["value"] for r in
                (definition.get("containerProperties") or {}).get("resourceRequirements") or []}
        reqs.update({r["type"]: r["value"] for r in
                     (body.get("containerOverrides") or {}).get("resourceRequirements") or []})
        check_resources(platform, reqs)

    def list_jobs(self, body):
        """ListJobs for an array's children: exactly one of jobQueue,
        arrayJobId and multiNodeJobId; jobStatus defaults to RUNNING;
        pages of at most maxResults (1 to 1000) with a nextToken."""
        given = [k for k in ("jobQueue", "arrayJobId", "multiNodeJobId") if body.get(k)]
        if len(given) != 1:
            raise client_error("specify exactly one of jobQueue, arrayJobId and multiNodeJobId")
        if "arrayJobId" not in given:
            return None
        status = body.get("jobStatus") or "RUNNING"
        if status not in STATUSES:
            raise client_error(f"jobStatus {status!r} is not one of {' | '.join(STATUSES)}")
        limit = body.get("maxResults") or 1000
        if not 1 <= limit <= 1000:
            raise client_error("maxResults must be between 1 and 1000")
        limit = min(limit, self.list_page)
        job = self.jobs.get(body["arrayJobId"])
        if job is None or job.size is None:
            return {"jobSummaryList": []}
        start = int(base64.b64decode(body["nextToken"]).decode()) if body.get("nextToken") else 0
        with self.lock:
            matching = [c for c in job.children if c.status == status]
        page = matching[start:start + limit]
        out = {"jobSummaryList": [self.summary(c) for c in page]}
        if start + limit < len(matching):
            out["nextToken"] = base64.b64encode(str(start + limit).encode()).decode()
        return out

    def summary(self, child):
        s = {"jobId": child.id, "jobName": child.job.name, "status": child.status,
             "createdAt": child.job.created, "arrayProperties": {"index": child.index}}
        if child.status_reason:
            s["statusReason"] = child.status_reason
        if child.started:
            s["startedAt"] = child.started
        if child.stopped:
            s["stoppedAt"] = child.stopped
        container = {}
        if child.status in TERMINAL and child.exit_code is not None:
            container["exitCode"] = child.exit_code
        if child.status in TERMINAL and child.reason:
            container["reason"] = child.reason
        if container:
            s["container"] = container
        return s

    def forward(self, method, path, headers, body):
        return forward(self.moto, method, path, headers, body)

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
        child.status = "RUNNABLE"
        for attempt in range(1, job.max_attempts + 1):
            if job.terminated:
                return self.finish(child, "FAILED", job.terminated)
            child.status = "STARTING"
            started = now_ms()
            code, reason, container_reason = self.attempt(child, attempt)
            stream = f"{DEFINITION}/default/{child.id.replace(':', '-')}-{attempt}"
            record = {"container": {"logStreamName": stream}, "startedAt": started,
                      "stoppedAt": now_ms()}
            if code is not None:
                record["container"]["exitCode"] = code
            if container_reason:
                record["container"]["reason"] = container_reason
            if reason:
                record["statusReason"] = reason
            child.attempts.append(record)
            child.exit_code = code
            child.reason = container_reason
            if code == 0 and not reason:
                return self.finish(child, "SUCCEEDED", None)
            if job.terminated:
                return self.finish(child, "FAILED", job.terminated)
            # A timed-out attempt is not retried (AWS Batch job timeouts).
            if (reason != TIMEOUT_REASON and attempt < job.max_attempts
                    and self.action(job, code, reason, container_reason) == "RETRY"):
                child.status = "RUNNABLE"
                continue
            return self.finish(child, "FAILED", reason)

    def attempt(self, child, attempt):
        """Runs one attempt; returns (exit code or None, the attempt's status
        reason, the container's reason)."""
        job = child.job
        fault = self.fault_for(job, child.index, attempt)
        if fault and fault.get("hold"):
            child.status = "RUNNING"
            child.started = child.started or now_ms()
            while not job.terminated:
                time.sleep(0.05)
            return None, job.terminated, None
        if fault and "start_failure" in fault:
            # Fargate could not start the task: no container ran.
            return None, START_FAILED, fault["start_failure"]
        child.status = "RUNNING"
        child.started = child.started or now_ms()
        if fault and ("exit_code" in fault or "status_reason" in fault):
            code = fault.get("exit_code")
            return code, fault.get("status_reason") or "Essential container in task exited", None
        env = dict(os.environ)
        env.update(self.child_env)
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
            entrypoint = self.entrypoints.get(job.definition, self.entrypoint)
            child.proc = subprocess.Popen([entrypoint] + job.command, env=env,
                                          stdout=out, stderr=subprocess.STDOUT)
            try:
                code = child.proc.wait(timeout=job.timeout)
            except subprocess.TimeoutExpired:
                child.proc.kill()
                child.proc.wait()
                return None, TIMEOUT_REASON, None
        if job.terminated:
            return code, job.terminated, None
        return code, None if code == 0 else "Essential container in task exited", None

    def action(self, job, code, reason, container_reason):
        """The first evaluateOnExit rule whose conditions all hold:
        onStatusReason against the attempt's status reason, onReason against
        the container's reason, onExitCode against its exit code."""
        for rule in job.rules:
            conds = []
            if "onStatusReason" in rule:
                conds.append(glob_match(rule["onStatusReason"], reason))
            if "onReason" in rule:
                conds.append(glob_match(rule["onReason"], container_reason))
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
            summary = {s: 0 for s in STATUSES}
            for c in job.children:
                summary[c.status] += 1
            detail["status"] = job.status()
            detail["arrayProperties"] = {"size": job.size, "statusSummary": summary,
                                         "statusSummaryLastUpdatedAt": now_ms()}
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
        container.pop("reason", None)
        if child.status in TERMINAL and child.exit_code is not None:
            container["exitCode"] = child.exit_code
        if child.status in TERMINAL and child.reason:
            container["reason"] = child.reason
        return detail


def forward_s3(target, method, path, headers, body):
    """Forwards an S3 request signed anew with this process's credentials:
    AWS signs a state machine's calls with its role, moto's engine with
    placeholder keys that S3 refuses."""
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    dropped = ("authorization", "x-amz-date", "x-amz-content-sha256", "x-amz-security-token",
               "host", "content-length")
    req = AWSRequest(method=method, url=f"http://{target.hostname}:{target.port}{path}",
                     data=body or None,
                     headers={k: v for k, v in headers.items() if k.lower() not in dropped})
    creds = Credentials(os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"])
    S3SigV4Auth(creds, "s3", os.environ.get("AWS_REGION", "us-east-1")).add_auth(req)
    prepared = req.prepare()
    conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
    conn.request(method, path, body=prepared.body, headers=dict(prepared.headers))
    r = conn.getresponse()
    data = r.read()
    out = (r.status, [(k, v) for k, v in r.getheaders()
                      if k.lower() not in ("content-length", "transfer-encoding", "connection")],
           data)
    conn.close()
    return out


def handler_for(peer):
    class Handler(ProxyHandler):
        def error(self, status, kind, message):
            err = json.dumps({"__type": kind, "message": message}).encode()
            self.reply(status, [("Content-Type", "application/json"),
                                ("x-amzn-ErrorType", kind)], err)

        def proxy(self, raw):
            if peer.s3 is not None and not self.path.startswith("/v1/"):
                status, headers, data = forward_s3(peer.s3, self.command, self.path,
                                                   dict(self.headers), raw)
                self.reply(status, headers, data)
                peer.log(f"S3 {self.command}", {"path": self.path}, status)
                return
            op = OPS.get(self.path.rstrip("/").rsplit("/", 1)[-1].lower(), self.path)
            try:
                body = json.loads(raw) if raw else {}
            except ValueError:
                body = {"raw": raw.decode("utf-8", "replace")}
            try:
                status = self.answer(op, body, raw)
            except ApiError as e:
                status = e.status
                self.error(e.status, e.kind, e.message)
            peer.log(op, body, status)

        def answer(self, op, body, raw):
            headers = dict(self.headers)
            if op in peer.deny:
                raise ApiError(403, "AccessDeniedException",
                               f"not authorized to perform: batch:{op} on resource: *")
            if peer.throttled(op):
                raise ApiError(429, "TooManyRequestsException", "Too Many Requests")
            if op == "DescribeJobDefinitions":
                doc = peer.describe_job_definitions(body, headers)
                if doc is not None:
                    self.json_reply(doc)
                    return 200
            elif op == "ListJobs":
                doc = peer.list_jobs(body)
                if doc is not None:
                    self.json_reply(doc)
                    return 200
            elif op == "SubmitJob":
                peer.check_submit(body, headers)
            status, headers, data = peer.forward(self.command, self.path, headers, raw)
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
            return status

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
    if not batch.describe_job_queues(jobQueues=[QUEUE])["jobQueues"]:
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
    for name, platform, image in ((DEFINITION, "FARGATE", IMAGE), (DEFINITION_EC2, "EC2", IMAGE),
                                  (DEFINITION_DRIVER, "FARGATE", "chainbatch-driver:test")):
        if batch.describe_job_definitions(jobDefinitionName=name, status="ACTIVE")["jobDefinitions"]:
            continue
        batch.register_job_definition(
            jobDefinitionName=name, type="container", platformCapabilities=[platform],
            containerProperties={"image": image, "command": ["--help"],
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
    ap.add_argument("--entrypoint-for", action="append", default=[], metavar="DEF=PATH")
    ap.add_argument("--s3", default=None)
    ap.add_argument("--child-env", action="append", default=[], metavar="KEY=VALUE")
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
