"""What the test peers in front of moto share: forwarding a request to moto
and answering one, over HTTP/1.1."""

import http.client
import json
from http.server import BaseHTTPRequestHandler

DROPPED = ("content-length", "transfer-encoding", "connection")


def forward(moto, method, path, headers, body):
    """Sends a request on to moto (a parsed URL); returns (status, headers, body)."""
    conn = http.client.HTTPConnection(moto.hostname, moto.port, timeout=60)
    fwd = {k: v for k, v in headers.items() if k.lower() not in ("host", "content-length")}
    conn.request(method, path, body=body, headers=fwd)
    r = conn.getresponse()
    data = r.read()
    out = (r.status, [(k, v) for k, v in r.getheaders() if k.lower() not in DROPPED], data)
    conn.close()
    return out


class ProxyHandler(BaseHTTPRequestHandler):
    """A handler whose subclasses define `proxy(raw_body)`."""

    protocol_version = "HTTP/1.1"
    content_type = "application/json"

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

    def json_reply(self, doc):
        self.reply(200, [("Content-Type", self.content_type)], json.dumps(doc).encode())
