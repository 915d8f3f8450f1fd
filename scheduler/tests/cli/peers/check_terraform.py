#!/usr/bin/env python3
"""Offline checks of terraform/ that no tool makes: chainbatch's own
deployment policy, and what `terraform fmt` and `terraform validate` would
say where no terraform binary is at hand. The general security rules
(public access blocks, IAM wildcards and unconstrained resources,
encryption of repositories and logs) are checkov's, which scripts/test.sh
runs over the same directory.

* Every file parses as HCL2 (python-hcl2).
* terraform fmt's rules: two-space indentation, no tabs or trailing blanks,
  a final newline, and `=` aligned across consecutive single-line attributes
  exactly as hclwrite aligns them.
* Every `var.x` is declared and every `aws_*.name` reference exists.
* The resources the deployment needs exist, with the settings that matter:
  default encryption, staging and shuffle expiry, Fargate Spot before
  Fargate, EC2 Spot, the job definitions, logs and the schedule.
* IAM is least privilege for chainbatch's roles: the executor may only read
  its inputs (the public `eth` data among them) and read/write its own
  bucket; the driver may also submit, follow and terminate Batch jobs and
  write Glue tables; no `service:*` actions (checkov catches only `*`).

Usage: check_terraform.py [DIR]   (default: terraform/ beside this script)
Exits 1 and lists every problem when any check fails.
"""

import glob
import os
import re
import sys

import hcl2

problems = []


def problem(msg):
    problems.append(msg)


def unquote(v):
    if isinstance(v, str) and len(v) >= 2 and v[0] == '"' and v[-1] == '"':
        return v[1:-1]
    return v


# -- formatting ---------------------------------------------------------------

def strip_strings(line):
    """The line with string contents blanked, so brackets and `=` inside
    strings do not count."""
    out, in_str, i = [], False, 0
    while i < len(line):
        c = line[i]
        if in_str:
            if c == "\\":
                out.append("  ")
                i += 2
                continue
            if c == '"':
                in_str = False
                out.append(c)
            else:
                out.append(" ")
        else:
            if c == '"':
                in_str = True
            if c == "#" or line.startswith("//", i):
                break
            out.append(c)
        i += 1
    return "".join(out)


def assign_column(line):
    """Column of the `=` that hclwrite aligns, or None: the first bare `=`
    after a key, when the rest of the line closes every bracket it opens."""
    s = strip_strings(line)
    for i, c in enumerate(s):
        if c != "=" or i == 0:
            continue
        if s[i - 1] in "=!<>" or (i + 1 < len(s) and s[i + 1] in "=>"):
            continue
        if not s[:i].strip():
            return None
        rest = s[i:]
        if "<<" in rest:
            return i
        net = sum(rest.count(o) - rest.count(c2) for o, c2 in ("()", "[]", "{}"))
        return i if net == 0 else None
    return None


def check_format(path):
    text = open(path).read()
    name = os.path.basename(path)
    if not text.endswith("\n"):
        problem(f"{name}: no newline at the end")
    lines = text.split("\n")
    heredoc = None
    # hclwrite's indentation: a line that opens brackets (however many)
    # indents what follows by one level, closed when they all close.
    indents = []
    chain = []

    def close_chain():
        if len(chain) > 1:
            keys = [(n, line[:col].rstrip()) for n, line, col in chain]
            width = max(len(k) for _, k in keys)
            for (n, line, col), (_, key) in zip(chain, keys):
                if col != width + 1:
                    problem(f"{name}:{n}: `=` not aligned with its neighbours "
                            f"(column {col + 1}, expected {width + 2})")
        elif len(chain) == 1:
            n, line, col = chain[0]
            if line[col - 1] != " " or line[col - 2] == " ":
                problem(f"{name}:{n}: one space before `=` expected")
        chain.clear()

    for n, line in enumerate(lines, 1):
        if heredoc:
            if line.strip() == heredoc:
                heredoc = None
            continue
        if "\t" in line:
            problem(f"{name}:{n}: tab")
        if line != line.rstrip():
            problem(f"{name}:{n}: trailing whitespace")
        s = strip_strings(line).strip()
        net = sum(s.count(o) - s.count(c) for o, c in ("()", "[]", "{}"))
        if net < 0:
            closed = -net
            while closed > 0 and indents:
                if closed >= indents[-1]:
                    closed -= indents.pop()
                else:
                    indents[-1] -= closed
                    closed = 0
        expected = 2 * len(indents)
        if net > 0:
            indents.append(net)
        if s and not line.strip().startswith("#"):
            indent = len(line) - len(line.lstrip(" "))
            if indent != expected:
                problem(f"{name}:{n}: indented {indent}, expected {expected}")
        m = re.search(r"<<-?([A-Z]+)\s*$", line)
        col = assign_column(line)
        if col is None or line.strip().startswith("#"):
            close_chain()
        else:
            chain.append((n, line, col))
        if m:
            heredoc = m.group(1)
            close_chain()
    close_chain()


# -- structure ----------------------------------------------------------------

def load(directory):
    merged = {"resource": {}, "data": {}, "variable": {}, "output": {}, "locals": []}
    for path in sorted(glob.glob(os.path.join(directory, "*.tf"))):
        check_format(path)
        try:
            doc = hcl2.load(open(path))
        except Exception as e:  # noqa: BLE001 - any parse error is a problem
            problem(f"{os.path.basename(path)}: does not parse: {e}")
            continue
        for kind in ("resource", "data"):
            for block in doc.get(kind, []):
                for rtype, named in block.items():
                    for rname, body in named.items():
                        merged[kind].setdefault(unquote(rtype), {})[unquote(rname)] = body
        for block in doc.get("variable", []):
            for vname, body in block.items():
                merged["variable"][unquote(vname)] = body
        for block in doc.get("output", []):
            for oname, body in block.items():
                merged["output"][unquote(oname)] = body
        merged["locals"].extend(doc.get("locals", []))
    return merged


def need(tf, rtype, rname):
    body = tf["resource"].get(rtype, {}).get(rname)
    if body is None:
        problem(f"missing resource {rtype}.{rname}")
        return {}
    return body


def flat(v):
    """All string leaves of a parsed value."""
    if isinstance(v, dict):
        for x in v.values():
            yield from flat(x)
    elif isinstance(v, list):
        for x in v:
            yield from flat(x)
    elif isinstance(v, str):
        yield v


def blocks(body, name):
    v = body.get(name, [])
    return v if isinstance(v, list) else [v]


def statements(tf, doc):
    body = tf["data"].get("aws_iam_policy_document", {}).get(doc)
    if body is None:
        problem(f"missing IAM policy document {doc}")
        return []
    out = []
    for st in blocks(body, "statement"):
        actions = [unquote(a) for a in st.get("actions", [])]
        out.append((unquote(st.get("sid", "")), actions, st.get("resources")))
    return out


def check_references(directory, tf):
    text = "\n".join(open(p).read() for p in glob.glob(os.path.join(directory, "*.tf")))
    for v in sorted(set(re.findall(r"\bvar\.([a-z0-9_]+)", text))):
        if v not in tf["variable"]:
            problem(f"var.{v} is used but not declared")
    for rtype, rname in sorted(set(re.findall(r"(?<![\w.\"])(aws_[a-z0-9_]+)\.([a-z0-9_]+)", text))):
        if rname not in tf["resource"].get(rtype, {}):
            problem(f"{rtype}.{rname} is referenced but not defined")
    for rtype, rname in sorted(set(re.findall(r"\bdata\.(aws_[a-z0-9_]+)\.([a-z0-9_]+)", text))):
        if rname not in tf["data"].get(rtype, {}):
            problem(f"data.{rtype}.{rname} is referenced but not defined")


def check_resources(tf):
    need(tf, "aws_s3_bucket", "data")
    sse = need(tf, "aws_s3_bucket_server_side_encryption_configuration", "data")
    if not any("AES256" in s or "aws:kms" in s for s in flat(sse)):
        problem("the data bucket has no default encryption")
    need(tf, "aws_s3_bucket_public_access_block", "data")
    life = need(tf, "aws_s3_bucket_lifecycle_configuration", "data")
    prefixes = " ".join(flat(life))
    for p in ("_chainbatch/staging/", "_chainbatch/shuffle/"):
        if p not in prefixes:
            problem(f"no lifecycle rule expires {p} objects")
    need(tf, "aws_glue_catalog_database", "eth")
    need(tf, "aws_athena_workgroup", "chainbatch")
    need(tf, "aws_ecr_repository", "executor")
    need(tf, "aws_ecr_repository", "driver")
    need(tf, "aws_cloudwatch_log_group", "batch")

    kinds = {}
    for name, body in tf["resource"].get("aws_batch_compute_environment", {}).items():
        for cr in blocks(body, "compute_resources"):
            kinds[unquote(cr.get("type"))] = name
    for k in ("FARGATE_SPOT", "FARGATE", "SPOT"):
        if k not in kinds:
            problem(f"no {k} Batch compute environment")
    queue = need(tf, "aws_batch_job_queue", "fargate")
    order = sorted(blocks(queue, "compute_environment_order"), key=lambda o: o.get("order", 0))
    envs = [str(o.get("compute_environment")) for o in order]
    if len(envs) < 2 or "fargate_spot" not in envs[0] or "fargate." not in envs[1]:
        problem(f"the job queue must try Fargate Spot first, then Fargate: {envs}")
    executor = need(tf, "aws_batch_job_definition", "executor")
    props = " ".join(flat(executor))
    for k in ("jobRoleArn", "executionRoleArn", "logConfiguration", "resourceRequirements"):
        if k not in props:
            problem(f"the executor job definition has no {k}")
    if not blocks(executor, "timeout"):
        problem("the executor job definition has no timeout")
    need(tf, "aws_batch_job_definition", "driver")
    driver_queue = need(tf, "aws_batch_job_queue", "driver")
    denvs = [str(o.get("compute_environment")) for o in blocks(driver_queue, "compute_environment_order")]
    if not denvs or any("fargate." not in e for e in denvs):
        problem(f"the driver queue must run on on-demand Fargate only, never Spot: {denvs}")
    sched = need(tf, "aws_scheduler_schedule", "daily")
    # The schedule's target is one of two locals: the driver job, or the
    # state machine (orchestration = "step_functions").
    target = " ".join(flat(sched)) + " " + " ".join(flat(tf.get("locals", [])))
    if "batch:submitJob" not in target:
        problem("the schedule does not submit a Batch job")
    if "aws_batch_job_queue.driver" not in target:
        problem("the schedule must submit the driver to the on-demand driver queue")
    if "aws_sfn_state_machine.pipeline" not in target:
        problem("the schedule cannot start the pipeline's state machine")
    machine = need(tf, "aws_sfn_state_machine", "pipeline")
    if not blocks(machine, "logging_configuration"):
        problem("the state machine has no logging configuration")


def check_iam(tf):
    executor = statements(tf, "executor")
    allowed = {"s3:ListBucket", "s3:GetObject", "s3:PutObject", "s3:DeleteObject",
               "s3:AbortMultipartUpload"}
    actions = {a for _, acts, _ in executor for a in acts}
    if actions - allowed:
        problem(f"the executor may do more than read and write S3: {sorted(actions - allowed)}")
    for sid, acts, res in executor:
        if "*" in " ".join(flat(res or "")).replace("/*", ""):
            problem(f"executor statement {sid} applies to every resource")
        writes = {"s3:PutObject", "s3:DeleteObject"} & set(acts)
        if writes and "data_bucket_arn" not in " ".join(flat(res or "")):
            problem(f"executor statement {sid} writes outside its own bucket")
    reads = " ".join(" ".join(flat(res or "")) for _, acts, res in executor if "s3:GetObject" in acts)
    if "input_bucket_arns" not in reads:
        problem("the executor cannot read its input buckets")
    if "aws-public-blockchain" not in str(tf["variable"].get("input_buckets", {}).get("default")):
        problem("the input buckets do not include aws-public-blockchain")

    driver = statements(tf, "driver")
    dacts = {a for _, acts, _ in driver for a in acts}
    for a in ("batch:SubmitJob", "batch:DescribeJobs", "batch:ListJobs", "batch:TerminateJob",
              "glue:CreateTable", "glue:BatchCreatePartition"):
        if a not in dacts:
            problem(f"the driver lacks {a}")
    body = tf["data"].get("aws_iam_policy_document", {}).get("driver", {})
    if "aws_iam_policy_document.executor" not in " ".join(flat(body.get("source_policy_documents", []))):
        problem("the driver does not include the executor's data access")
    for doc in tf["data"].get("aws_iam_policy_document", {}):
        for sid, acts, _ in statements(tf, doc):
            for a in acts:
                if a.endswith(":*"):
                    problem(f"policy {doc} statement {sid}: wildcard action {a}")


def main():
    directory = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "..", "terraform")
    tf = load(directory)
    check_references(directory, tf)
    check_resources(tf)
    check_iam(tf)
    if problems:
        print("terraform check failed:", file=sys.stderr)
        for p in problems:
            print(f"  {p}", file=sys.stderr)
        return 1
    n = sum(len(v) for v in tf["resource"].values())
    print(f"terraform: {n} resources, formatting, references and IAM checked")
    return 0


if __name__ == "__main__":
    sys.exit(main())
