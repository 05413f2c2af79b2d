#!/usr/bin/env python3
"""The "legacy application" of the proxy tests: a plain http.server app that knows
nothing of hookcast. It listens on 127.0.0.1 (port 0), prints the port on stdout,
and serves until it is killed.

  POST /api/comments   JSON {"text", "author"?} -> 201 {"id","text","author"} with
                       Location and X-App; 422 without text; 400 on bad JSON
  GET  /api/plain      200 text/plain (not JSON)
  GET  /api/big?n=N    200 JSON {"pad": "x" * N}
  anything else        200 JSON echo: method, target, headers (as sent, in order), body
"""
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

lock = threading.Lock()
comments = []


class App(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def answer(self, status, payload, ctype="application/json", extra=()):
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def handle_any(self):
        url = urlsplit(self.path)
        body = self.read_body()
        if self.command == "POST" and url.path == "/api/comments":
            try:
                c = json.loads(body)
            except ValueError:
                return self.answer(400, {"error": "not JSON"})
            if not isinstance(c, dict) or not c.get("text"):
                return self.answer(422, {"error": "text is required"})
            with lock:
                comments.append(c)
                cid = len(comments)
            out = {"id": cid, "text": c["text"], "author": c.get("author", "anonymous")}
            return self.answer(
                201, out, extra=[("Location", f"/api/comments/{cid}"), ("X-App", "legacy")]
            )
        if url.path == "/api/plain":
            return self.answer(200, b"ok, but not JSON", "text/plain")
        if url.path == "/api/big":
            n = int(parse_qs(url.query).get("n", ["0"])[0])
            return self.answer(200, {"pad": "x" * n})
        echo = {
            "method": self.command,
            "target": self.path,
            "version": self.request_version,
            "headers": [[k, v] for k, v in self.headers.items()],
            "body": body.decode("latin-1"),
        }
        return self.answer(200, echo, extra=[("X-App", "legacy")])

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = handle_any


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), App)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
