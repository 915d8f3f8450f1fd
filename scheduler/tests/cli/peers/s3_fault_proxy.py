#!/usr/bin/env python3
"""An S3 proxy for chainbatch's fault tests, in front of a real S3 server.

It forwards every request unchanged (the Host header too, so signatures
stay valid), and:

* injects server errors: every Nth request gets 503 SlowDown or 500
  InternalError (alternately) instead of reaching the server, or every
  request does with --fail-all;
* or fails copies only (a commit's moves: PUT with x-amz-copy-source):
  from the Nth copy on, the next K copies get 500 InternalError
  (--fail-copies-from N --fail-copies K; K 0 means every one after);
* logs one JSON line per request: method, path, query, whether it carried
  `x-amz-server-side-encryption`, and the status injected, if any.

Usage: s3_fault_proxy.py --upstream URL --log FILE
       [--fail-every N | --fail-all | --fail-copies-from N [--fail-copies K]]
Prints `PORT <n>` once it listens on 127.0.0.1.
"""

import argparse
import http.client
import json
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ERRORS = [
    (503, "SlowDown", "Please reduce your request rate."),
    (500, "InternalError", "We encountered an internal error. Please try again."),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--fail-every", type=int, default=0)
    ap.add_argument("--fail-all", action="store_true")
    ap.add_argument("--fail-copies-from", type=int, default=0)
    ap.add_argument("--fail-copies", type=int, default=0)
    args = ap.parse_args()
    upstream = urllib.parse.urlparse(args.upstream)
    lock = threading.Lock()
    state = {"n": 0, "injected": 0, "copies": 0}

    def fail_copy():
        state["copies"] += 1
        first = args.fail_copies_from
        if not first or state["copies"] < first:
            return False
        return args.fail_copies == 0 or state["copies"] < first + args.fail_copies

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def handle_any(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            with lock:
                state["n"] += 1
                n = state["n"]
                inject = args.fail_all or (args.fail_every and n % args.fail_every == 0)
                if self.headers.get("x-amz-copy-source") is not None:
                    inject = fail_copy() or inject
                if inject:
                    state["injected"] += 1
                    k = state["injected"]
            path, _, query = self.path.partition("?")
            entry = {
                "method": self.command,
                "path": path,
                "query": query,
                "sse": self.headers.get("x-amz-server-side-encryption"),
                "copy": self.headers.get("x-amz-copy-source") is not None,
                "injected": None,
            }
            if inject:
                status, code, message = ERRORS[k % len(ERRORS)]
                entry["injected"] = status
                with lock, open(args.log, "a") as f:
                    f.write(json.dumps(entry) + "\n")
                data = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
                        f"<Message>{message}</Message></Error>").encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                return
            with lock, open(args.log, "a") as f:
                f.write(json.dumps(entry) + "\n")
            conn = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=120)
            headers = {k: v for k, v in self.headers.items()
                       if k.lower() not in ("content-length", "connection")}
            if length:
                headers["Content-Length"] = str(length)
            conn.request(self.command, self.path, body=body, headers=headers)
            r = conn.getresponse()
            data = r.read()
            self.send_response(r.status)
            for k, v in r.getheaders():
                if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                    self.send_header(k, v)
            if self.command == "HEAD":
                cl = r.getheader("Content-Length")
                self.send_header("Content-Length", cl if cl is not None else "0")
                self.end_headers()
            else:
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            conn.close()

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_any

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(f"PORT {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
