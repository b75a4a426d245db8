"""An HTTP proxy that counts the AWS calls passing through it, for bench/cost.py and
bench/device_month.py.

Usage: counting_proxy.py LISTEN_HOST LISTEN_PORT UPSTREAM_URL [--capacity]

Every request is forwarded to UPSTREAM_URL unchanged (moto and s3s-fs do not check that the
signed Host matches) and counted: a DynamoDB call by its X-Amz-Target operation (`GetItem`,
`Query`, ...), any other call by method and whether it names an object (`GET object`,
`PUT bucket`). `GET /__counts` answers the counts so far as JSON; it is never forwarded.

With --capacity (DynamoDB upstream only), each call's capacity units are estimated too
(bench/ddb_capacity.py says how): the proxy reads the items a write touches before and after
it, and re-runs a filtered or projected Query unfiltered, straight from the upstream (those
reads are not counted). `GET /__log` answers one record per call since the last `/__log`
(operation, table, item keys, sizes, read and write units, how long the caller waited) and forgets them; response bytes
of every call (`bytes`) are in the records too.
"""

import http.client
import json
import os
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ddb_capacity as cap  # noqa: E402

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade"}
WRITES = {"PutItem", "UpdateItem", "DeleteItem"}


class Capacity:
    """What a DynamoDB call costs: `before` runs ahead of forwarding it, `after` once answered."""

    def __init__(self, call):
        self.call = call  # call(op, payload) -> (status, parsed body), straight to the upstream
        self.schemas = {}

    def key_names(self, table):
        if table not in self.schemas:
            _, d = self.call("DescribeTable", {"TableName": table})
            self.schemas[table] = [k["AttributeName"] for k in d["Table"]["KeySchema"]]
        return self.schemas[table]

    def key_of(self, table, item):
        return {k: item[k] for k in self.key_names(table)}

    def size_of(self, table, key):
        _, d = self.call("GetItem", {"TableName": table, "Key": key, "ConsistentRead": True})
        return cap.item_size(d.get("Item"))

    def writes(self, op, req):
        """(table, key, transaction factor) of each item the call writes."""
        if op in ("UpdateItem", "DeleteItem"):
            return [(req["TableName"], req["Key"], 1)]
        if op == "PutItem":
            return [(req["TableName"], self.key_of(req["TableName"], req["Item"]), 1)]
        if op == "TransactWriteItems":
            out = []
            for t in req["TransactItems"]:
                (kind, body), = t.items()
                key = body.get("Key") or self.key_of(body["TableName"], body["Item"])
                out.append((body["TableName"], key, 2))
            return out
        if op == "BatchWriteItem":
            out = []
            for table, reqs in req["RequestItems"].items():
                for r in reqs:
                    if "PutRequest" in r:
                        out.append((table, self.key_of(table, r["PutRequest"]["Item"]), 1))
                    else:
                        out.append((table, r["DeleteRequest"]["Key"], 1))
            return out
        return []

    def before(self, op, req):
        return [(t, k, f, self.size_of(t, k)) for t, k, f in self.writes(op, req)]

    def after(self, op, req, status, res, before, nbytes):
        rec = {"op": op, "status": status, "bytes": nbytes, "rru": 0.0, "wru": 0, "items": []}
        if before:
            for table, key, factor, b in before:
                a = self.size_of(table, key)
                units = cap.write_units(b, a, factor)
                rec["wru"] += units
                rec["items"].append({"table": table, "key": short(key), "before": b,
                                     "after": a, "wru": units})
            return rec
        consistent = bool(req.get("ConsistentRead"))
        if op == "GetItem":
            full = req.get("ProjectionExpression") is not None
            size = self.size_of(req["TableName"], req["Key"]) if full else cap.item_size(res.get("Item"))
            rec["rru"] = cap.read_units(size, consistent)
            rec["items"].append({"table": req["TableName"], "key": short(req["Key"]), "size": size})
        elif op in ("Query", "Scan"):
            items = res.get("Items", [])
            if status == 200 and any(req.get(k) for k in ("FilterExpression", "ProjectionExpression", "Select")):
                items = self.unfiltered(op, req)
            size = sum(cap.item_size(i) for i in items)
            rec["rru"] = cap.read_units(size, consistent)
            rec["items"].append({"table": req["TableName"], "matched": len(items), "size": size})
        elif op == "BatchGetItem":
            for table, want in req["RequestItems"].items():
                for key in want["Keys"]:
                    size = self.size_of(table, key)
                    rec["rru"] += cap.read_units(size, bool(want.get("ConsistentRead")))
                    rec["items"].append({"table": table, "key": short(key), "size": size})
        elif op == "TransactGetItems":
            for t in req["TransactItems"]:
                g = t["Get"]
                size = self.size_of(g["TableName"], g["Key"])
                rec["rru"] += cap.read_units(size, True, 2.0)
                rec["items"].append({"table": g["TableName"], "key": short(g["Key"]), "size": size})
        return rec

    def unfiltered(self, op, req):
        """The items a Query's key condition (or a Scan) reads, whatever its filter keeps."""
        q = {k: v for k, v in req.items()
             if k not in ("FilterExpression", "ProjectionExpression", "Select",
                          "ExpressionAttributeNames", "ExpressionAttributeValues")}
        cond = req.get("KeyConditionExpression", "")
        names = {k: v for k, v in req.get("ExpressionAttributeNames", {}).items() if k in cond}
        values = {k: v for k, v in req.get("ExpressionAttributeValues", {}).items() if k in cond}
        if names:
            q["ExpressionAttributeNames"] = names
        if values:
            q["ExpressionAttributeValues"] = values
        _, d = self.call(op, q)
        return d.get("Items", [])


def short(key):
    return "/".join(str(next(iter(v.values()))) for _, v in sorted(key.items()))


def main():
    host, port, upstream = sys.argv[1], int(sys.argv[2]), urlsplit(sys.argv[3])
    capacity = "--capacity" in sys.argv[4:]
    counts = {}
    records = []
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

    schemas = {}

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

        def direct(self, op, payload):
            """A DynamoDB call straight to the upstream, signed (unchecked) as the caller."""
            conn = upstream_conn()
            conn.request("POST", "/", body=json.dumps(payload).encode(), headers={
                "Content-Type": "application/x-amz-json-1.0",
                "X-Amz-Target": f"DynamoDB_20120810.{op}",
                "Authorization": self.headers.get("Authorization", ""),
            })
            res = conn.getresponse()
            return res.status, json.loads(res.read() or b"{}")

        def forward(self):
            if self.command == "GET" and self.path in ("/__counts", "/__log"):
                with lock:
                    if self.path == "/__counts":
                        body = json.dumps(counts).encode()
                    else:
                        body = json.dumps(records).encode()
                        records.clear()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            t0 = time.perf_counter()
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            with lock:
                op = self.operation()
                counts[op] = counts.get(op, 0) + 1
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            priced = capacity and self.headers.get("X-Amz-Target") and body
            if priced:
                req = json.loads(body)
                pricer = Capacity(self.direct)
                pricer.schemas = schemas
                before = pricer.before(op, req)
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
            if priced:
                rec = pricer.after(op, req, res.status, json.loads(data or b"{}"), before, len(data))
                # How long the caller waits for this call (with the proxy's own reads); kept
                # before the answer goes out, so that a `/__log` after the caller's request
                # always finds it.
                rec["ms"] = round((time.perf_counter() - t0) * 1000, 3)
                with lock:
                    records.append(rec)
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
