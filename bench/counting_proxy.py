"""An HTTP proxy that counts the AWS calls passing through it, for bench/cost.py.

Usage: counting_proxy.py LISTEN_HOST LISTEN_PORT UPSTREAM_URL

Every request is forwarded to UPSTREAM_URL unchanged (moto and s3s-fs do not check that the
signed Host matches) and counted: a DynamoDB call by its X-Amz-Target operation (`GetItem`,
`Query`, ...), any other call by method and whether it names an object (`GET object`,
`PUT bucket`). `GET /__counts` answers the counts so far as JSON; it is never forwarded.
"""

import http.client
import json
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade"}


def main():
    host, port, upstream = sys.argv[1], int(sys.argv[2]), urlsplit(sys.argv[3])
    counts = {}
    lock = threading.Lock()
    local = threading.local()

    def upstream_conn():
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=30)
            conn.connect()
            # No Nagle delay: headers and body go out in separate writes.
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            local.conn = conn
        return conn

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self):
            super().setup()
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, *args):
            pass

        def operation(self):
            target = self.headers.get("X-Amz-Target")
            if target:
                return target.rsplit(".", 1)[-1]
            path = urlsplit(self.path).path.strip("/")
            return f"{self.command} {'object' if '/' in path else 'bucket'}"

        def forward(self):
            if self.command == "GET" and self.path == "/__counts":
                with lock:
                    body = json.dumps(counts).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            with lock:
                op = self.operation()
                counts[op] = counts.get(op, 0) + 1
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            for attempt in (0, 1):
                conn = upstream_conn()
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    res = conn.getresponse()
                    data = res.read()
                    break
                except (http.client.HTTPException, OSError):
                    conn.close()
                    local.conn = None
                    if attempt:
                        raise
            self.send_response(res.status)
            for k, v in res.getheaders():
                if k.lower() not in HOP_BY_HOP and k.lower() != "content-length":
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = forward

    ThreadingHTTPServer((host, port), Handler).serve_forever()


if __name__ == "__main__":
    main()
