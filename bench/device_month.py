"""What a million monthly active devices cost a month on AWS, from measured requests (run
through bench/device_month.sh).

`run`: releases a bundle of about `--zip-bytes` on moto and s3s-fs, runs an `updraft` binary
under the Lambda Runtime API emulator (as bench/cost.py does) and plays a sample of device-months
through it as API Gateway v2 events: N devices (each its own id, platform and source networks:
sourceIp varies over many /24s), M sessions each, interleaved across devices. A session is an
update check, a stats batch of the launch events and one of the background event; each device
installs the release once (its first check is offered the bundle: two stats batches of download
events, the zip fetched from the presigned URL, and `set` in the next start's launch batch). Pass
1 goes through counting proxies (bench/counting_proxy.py, DynamoDB with --capacity): per request
kind it records the DynamoDB calls and their capacity units (bench/ddb_capacity.py), the bytes
the function wrote to stdout/stderr (every line is ingested: the template's LogFormat JSON with
SystemLogLevel WARN leaves no START/END/REPORT lines, ApplicationLogLevel INFO keeps what
RUST_LOG=info writes), the response bytes, the access log line API Gateway would write, and S3
calls and bytes. Pass 2, straight on the emulators with fresh devices, times every invocation.

`table`: turns the committed runs into README's "What it costs" section: per million MAU a
month, by request kind and component, for the HTTP API and for the Function URL, from the
measured per-request figures, the device-month parameters and the list prices below. `--cdn`
also prices the downloads through CloudFront. The section says which command made it;
tests/readme_cost.rs runs that command again and compares.
"""

import argparse
import base64
import gzip
import hashlib
import json
import math
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cost  # noqa: E402  (the emulator harness and the access log format)

REPO = cost.REPO
APP = "com.bench.app"
VERSION = "1.0.1"

# AWS list prices, us-east-1, no free tier unless said; checked 2026-12-04 on the pricing pages.
HTTP_API_PER_M = 1.00  # API Gateway HTTP API, first 300 M requests a month
LAMBDA_REQUESTS_PER_M = 0.20  # Lambda requests
LAMBDA_ARM_GB_S = 0.0000133334  # Lambda arm64 duration, first 7.5 B GB-s a month, 1 ms steps
DYNAMO_PER_M_RRU = 0.125  # DynamoDB on-demand read request units
DYNAMO_PER_M_WRU = 0.625  # DynamoDB on-demand write request units
LOGS_PER_GB = 0.50  # CloudWatch Logs, standard ingestion
S3_GET_PER_1000 = 0.0004  # S3 Standard GET
TRANSFER_OUT_PER_GB = 0.09  # data transfer out to the internet, first 10 TB a month
CLOUDFRONT_PER_GB = 0.085  # CloudFront, North America, first 10 TB a month
CLOUDFRONT_PER_10K_HTTPS = 0.0075  # CloudFront HTTPS requests
CLOUDFRONT_FREE_GB = 1024  # CloudFront's always-free tier: 1 TB ...
CLOUDFRONT_FREE_REQUESTS = 10_000_000  # ... and 10 M requests a month (one per account)
GB = 2**30  # AWS bills GB of 2^30 bytes
TRIM = 0.10  # the slowest invocations of each kind left out of the billed time

# The device-month (table defaults; each is an argument of `table`).
SESSIONS = 60  # app sessions per device a month, each one update check
INSTALLS = 1  # bundles installed per device a month
# What the plugin sends in a session: the launch events at start (one batch), the background
# event (another); an install's download events in `DOWNLOAD_BATCHES` batches (the plugin
# flushes its queue at most every second, and a 2 MB download takes about that), and `set` in
# the next start's launch batch.
LAUNCH = ["app_launch_start", "app_launch_ready", "webview_dom_content_loaded",
          "webview_page_loaded", "app_moved_to_foreground"]
BACKGROUND = ["app_moved_to_background"]
DOWNLOAD = ["download_zip_start"] + [f"download_{n}" for n in range(10, 100, 10)] + [
    "download_complete", "download_zip_complete"]
DOWNLOAD_BATCHES = 2

KINDS = {
    "check_up_to_date": "update check, device up to date",
    "check_offer": "update check, bundle offered",
    "batch_launch": f"stats batch, launch ({len(LAUNCH)} events)",
    "batch_background": f"stats batch, background ({len(BACKGROUND)} event)",
    "batch_launch_set": f"stats batch, launch with `set` ({len(LAUNCH) + 1} events)",
    "batch_download": f"stats batch, download ({len(DOWNLOAD) // DOWNLOAD_BATCHES} events)",
    "zip_download": "bundle download (presigned S3 GET)",
}
API_KINDS = [k for k in KINDS if k != "zip_download"]


# ---------------------------------------------------------------------------------------------
# run


def setup_store(args, binary, tmp):
    """Fresh tables and bucket on the emulators (not through the proxies); the release."""
    import boto3

    suffix = uuid.uuid4().hex[:8]
    table, devices, bucket = f"dm-releases-{suffix}", f"dm-devices-{suffix}", f"dm-{suffix}"
    kw = dict(region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
    ddb = boto3.client("dynamodb", endpoint_url=args.moto, **kw)
    for name, sort in ((table, "sk"), (devices, "device_id")):
        ddb.create_table(
            TableName=name,
            KeySchema=[{"AttributeName": "app_id", "KeyType": "HASH"},
                       {"AttributeName": sort, "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "app_id", "AttributeType": "S"},
                                  {"AttributeName": sort, "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
    ddb.update_time_to_live(
        TableName=devices, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"})
    boto3.client("s3", endpoint_url=args.s3s, **kw).create_bucket(Bucket=bucket)
    web = os.path.join(tmp, "www")
    os.makedirs(os.path.join(web, "assets"))
    with open(os.path.join(web, "index.html"), "w") as f:
        f.write('<!doctype html><p>bench</p><script src="assets/app.js"></script>')
    with open(os.path.join(web, "assets", "app.js"), "w") as f:
        f.write("window.Capacitor.Plugins.CapacitorUpdater.notifyAppReady();")
    # Incompressible, so that the zip is about the size asked for.
    with open(os.path.join(web, "assets", "payload.bin"), "wb") as f:
        f.write(random.Random(7).randbytes(max(0, args.zip_bytes - 600)))
    env = dict(os.environ, RUST_LOG="warn", **cost.aws_env(args.moto, args.s3s, table, devices, bucket))
    subprocess.run(
        [binary, "release", "--backend", "aws", "--app", APP, "--version", VERSION, "--dir", web],
        env=env, check=True, stdout=subprocess.DEVNULL,
    )
    return table, devices, bucket


FIRST_OCTETS = [24, 31, 37, 46, 62, 68, 73, 77, 81, 86, 91, 98, 104, 109, 151, 176, 185, 188,
                193, 203, 212, 213]


class Device:
    """One device of the sample: its id, platform and the two networks it uses (home Wi-Fi and
    its carrier), picked from a pool of /24s that some devices share."""

    def __init__(self, rng, pool):
        self.id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        self.platform = "android" if rng.random() < 0.6 else "ios"
        self.os = rng.choice(["13", "14", "15"]) if self.platform == "android" else rng.choice(["17.6", "18.2"])
        self.networks = rng.sample(pool, 2)
        self.version = "builtin"  # the store build's bundle until the install
        self.rng = rng

    def ip(self):
        return f"{self.rng.choice(self.networks)}.{self.rng.randrange(1, 255)}"

    def info(self):
        """The InfoObject (protocol.md §1)."""
        o = {"platform": self.platform, "device_id": self.id, "app_id": APP, "custom_id": "",
             "version_build": "1.0.0", "version_code": "12", "version_os": self.os,
             "version_name": self.version, "plugin_version": "8.51.23", "is_emulator": False,
             "is_prod": True}
        if self.platform == "android":
            o["install_source"] = "google_play"
        o["defaultChannel"] = ""
        return o

    def event(self, action, old=""):
        """One stats event (protocol.md §5)."""
        e = self.info()
        e.update(old_version_name=old, action=action, timestamp=int(time.time() * 1000))
        return e

    def ua(self):
        return f"CapacitorUpdater/8.51.23 ({APP}) {self.platform}/{self.os}"


def api_event(route, body, device, content_type):
    """An API Gateway HTTP API (payload 2.0) event, as tests/fixtures/events has them."""
    with open(os.path.join(REPO, "tests/fixtures/events/update-check.json")) as f:
        e = json.load(f)
    method, path = route.split(" ")
    ua = device.ua() if device else "curl/8"
    now = time.time()
    e["headers"] = {"content-type": content_type, "host": e["headers"]["host"], "user-agent": ua,
                    "accept-encoding": "gzip", "x-forwarded-proto": "https"}
    e["routeKey"] = e["requestContext"]["routeKey"] = route if device else "$default"
    e["rawPath"] = e["requestContext"]["http"]["path"] = path
    ctx = e["requestContext"]
    ctx["http"].update(method=method, sourceIp=device.ip() if device else "198.51.100.7", userAgent=ua)
    ctx["requestId"] = base64.b64encode(uuid.uuid4().bytes[:12]).decode()[:15] + "="
    ctx["timeEpoch"] = int(now * 1000)
    ctx["time"] = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now))
    if body is None:
        e.pop("body", None)
    else:
        e["body"] = json.dumps(body, separators=(",", ":"))
    return e


def response_bytes(answer):
    body = answer.get("body") or ""
    return len(base64.b64decode(body)) if answer.get("isBase64Encoded") else len(body.encode())


def answer_json(answer):
    """The JSON body of a function's answer (gzipped when the client accepts it)."""
    body = answer.get("body") or ""
    data = base64.b64decode(body) if answer.get("isBase64Encoded") else body.encode()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return json.loads(data)


def access_log_line(event, answer, nbytes):
    """The template's access log line for this request (API Gateway writes it)."""
    ctx = event["requestContext"]
    values = dict(cost.ACCESS_LOG_VALUES)
    values.update({
        "requestId": ctx["requestId"], "identity.sourceIp": ctx["http"]["sourceIp"],
        "requestTimeEpoch": str(ctx["timeEpoch"]), "routeKey": event["routeKey"],
        "status": str(answer.get("statusCode")), "responseLength": str(nbytes),
        "identity.userAgent": ctx["http"]["userAgent"],
    })
    with open(os.path.join(REPO, "template.yaml")) as f:
        fmt = re.search(r"AccessLogSettings:\n(?:.*\n)*?\s+Format: '(.*)'", f.read()).group(1)
    return re.sub(r"\$context\.([\w.]+)", lambda m: values.get(m.group(1), "-"), fmt)


def device_month(devices, sessions):
    """The sample's requests in the order they are sent: session by session, each round over
    every device (so a device's sessions are spread over the run, as over a month)."""
    for s in range(sessions):
        for d in devices:
            yield d, s


def session_steps(d, s):
    """(kind, route, body) of one session of one device, in the order the plugin sends them."""
    steps = []
    if s == 0:
        steps.append(("check_offer", "POST /updates", d.info()))
        steps.append(("batch_launch", "POST /stats", [d.event(a) for a in LAUNCH]))
        per = len(DOWNLOAD) // DOWNLOAD_BATCHES
        for i in range(DOWNLOAD_BATCHES):
            part = DOWNLOAD[i * per:] if i == DOWNLOAD_BATCHES - 1 else DOWNLOAD[i * per:(i + 1) * per]
            steps.append(("batch_download", "POST /stats", lambda part=part: [
                dict(d.event(a), version_name=VERSION) for a in part]))
        steps.append(("zip_download", None, None))
        steps.append(("batch_background", "POST /stats", [d.event(a) for a in BACKGROUND]))
    else:
        steps.append(("check_up_to_date", "POST /updates", d.info()))
        if s == 1:
            steps.append(("batch_launch_set", "POST /stats",
                          [d.event("set", old="builtin")] + [d.event(a) for a in LAUNCH]))
        else:
            steps.append(("batch_launch", "POST /stats", [d.event(a) for a in LAUNCH]))
        steps.append(("batch_background", "POST /stats", [d.event(a) for a in BACKGROUND]))
    return steps


def get_json(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.load(r)


def new_lines(path, offset):
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read()
    # Only whole lines: a line still being written is read next time.
    end = data.rfind(b"\n") + 1
    return [line for line in data[:end].split(b"\n") if line], offset + end


def sample_devices(rng, n):
    pool = sorted({f"{rng.choice(FIRST_OCTETS)}.{rng.randrange(256)}.{rng.randrange(256)}"
                   for _ in range(n)})
    return [Device(rng, pool) for _ in range(n)]


def play(f, devices, sessions, on_step, rng):
    """Sends the sample's requests; `on_step(kind, device, event, answer, seconds)` after each."""
    urls = {}
    for d, s in device_month(devices, sessions):
        for kind, route, body in session_steps(d, s):
            if kind == "zip_download":
                started = time.perf_counter()
                with urllib.request.urlopen(urls[d.id], timeout=60) as r:
                    data = r.read()
                on_step(kind, d, None, {"bytes": len(data)}, time.perf_counter() - started)
                d.version = VERSION
                continue
            if callable(body):
                body = body()
            ctype = "application/json; charset=utf-8" if (d.platform == "android" and route.endswith("updates")) else "application/json"
            e = api_event(route, body, d, ctype)
            started = time.perf_counter()
            answer = f.invoke_any(e)
            seconds = time.perf_counter() - started
            if answer.get("statusCode") != 200:
                sys.exit(f"{kind}: {answer}")
            if kind == "check_offer":
                got = answer_json(answer)
                if got.get("version") != VERSION:
                    sys.exit(f"check_offer: no offer: {got}")
                urls[d.id] = got["url"]
            if kind == "check_up_to_date":
                got = answer_json(answer)
                if "url" in got:
                    sys.exit(f"check_up_to_date: offered something: {got}")
            on_step(kind, d, e, answer, seconds)


class Function(cost.Function):
    def invoke_any(self, e):
        req = urllib.request.Request(self.url, data=json.dumps(e).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.load(r)


def blank():
    return {"n": 0, "dynamodb": {}, "rru": 0.0, "wru": 0, "log_lines": 0, "log_bytes": 0,
            "response_bytes": 0, "access_log_bytes": 0, "s3": {}, "s3_bytes": 0}


def add(slot, fig):
    slot["n"] += 1
    for k in ("rru", "wru", "log_lines", "log_bytes", "response_bytes", "access_log_bytes", "s3_bytes"):
        slot[k] += fig.get(k, 0)
    for svc in ("dynamodb", "s3"):
        for op, c in fig.get(svc, {}).items():
            slot[svc][op] = slot[svc].get(op, 0) + c


def per_request(slot):
    """Means per request of a kind's totals."""
    n = max(1, slot["n"])
    out = {"n": slot["n"]}
    for k in ("rru", "wru", "log_lines", "log_bytes", "response_bytes", "access_log_bytes", "s3_bytes"):
        out[k] = round(slot[k] / n, 4)
    for svc in ("dynamodb", "s3"):
        out[svc] = {op: round(c / n, 4) for op, c in sorted(slot[svc].items())}
    return out


def run(args):
    binary = os.path.abspath(args.binary)
    tmp = tempfile.mkdtemp(prefix="updraft-device-month-")
    started_run = time.time()
    try:
        table, devtable, bucket = setup_store(args, binary, tmp)
        template_env = dict(UPDRAFT_CACHE_TTL="10", UPDRAFT_URL_TTL="3600",
                            UPDRAFT_METRICS_INTERVAL="60", RUST_LOG="info")
        rng = random.Random(args.seed)
        devices = sample_devices(rng, args.devices)

        # Pass 1: through the counting proxies.
        env = dict(cost.aws_env(args.dynamo_proxy, args.s3_proxy, table, devtable, bucket), **template_env)
        out_path, err_path = os.path.join(tmp, "stdout"), os.path.join(tmp, "stderr")
        figures = {k: [] for k in KINDS}
        examples = {}
        emf = {"lines": 0, "bytes": 0}
        sizes = {"write": 0, "read": 0}  # the largest item written, and read at once
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            f = Function(binary, env, args.host, out, err)
            try:
                f.invoke_any(api_event("GET /health", None, None, "application/json"))  # init
                base1 = []
                for _ in range(50):
                    t = time.perf_counter()
                    f.invoke_any(api_event("GET /nothing-here", None, None, "application/json"))
                    base1.append((time.perf_counter() - t) * 1000)
                base1 = statistics.median(base1)
                time.sleep(0.2)
                offsets = {out_path: os.path.getsize(out_path), err_path: os.path.getsize(err_path)}
                get_json(f"{args.dynamo_proxy}/__log")
                s3_before = [cost.counts(args.s3_proxy)]

                def on_step(kind, d, e, answer, seconds):
                    fig = {"device": devices.index(d)}
                    if e is not None:
                        nbytes = response_bytes(answer)
                        fig["response_bytes"] = nbytes
                        fig["access_log_bytes"] = len(access_log_line(e, answer, nbytes).encode())
                        lines = []
                        for p in (out_path, err_path):
                            got, offsets[p] = new_lines(p, offsets[p])
                            lines += got
                        for line in lines:
                            if b'"_aws"' in line:  # a metric line: per instance-minute, not per request
                                emf["lines"] += 1
                                emf["bytes"] += len(line)
                            else:
                                fig["log_lines"] = fig.get("log_lines", 0) + 1
                                fig["log_bytes"] = fig.get("log_bytes", 0) + len(line)
                        recs = get_json(f"{args.dynamo_proxy}/__log")
                        wait = sum(r["ms"] for r in recs)
                        fig["own_ms"] = max(0.0, seconds * 1000 - base1 - wait)
                        fig["dynamodb"] = {}
                        for r in recs:
                            for it in r["items"]:
                                kind_, size = ("write", max(it["before"], it["after"])) if "after" in it else ("read", it["size"])
                                if size > sizes[kind_]:
                                    sizes[kind_] = size
                                    sizes[kind_ + "_what"] = f'{r["op"]} {it.get("key", "a Query of " + str(it.get("matched")) + " items")}'

                            fig["dynamodb"][r["op"]] = fig["dynamodb"].get(r["op"], 0) + 1
                            fig["rru"] = fig.get("rru", 0) + r["rru"]
                            fig["wru"] = fig.get("wru", 0) + r["wru"]
                        if kind not in examples:
                            examples[kind] = {"lines": [l.decode() for l in lines], "dynamodb": recs,
                                              "response": answer_json(answer)}
                    else:
                        fig["response_bytes"] = answer["bytes"]
                        fig["s3_bytes"] = answer["bytes"]
                    now = cost.counts(args.s3_proxy)
                    fig["s3"] = cost.diff(now, s3_before[0])
                    s3_before[0] = now
                    figures[kind].append(fig)

                play(f, devices, args.sessions, on_step, rng)
                pass1_seconds = time.time() - started_run
            finally:
                f.stop()

        # Pass 2: time every invocation, straight on the emulators, with fresh devices; and the
        # metric lines of an instance (written every second here, to see one interval's lines).
        env.update(AWS_ENDPOINT_URL_DYNAMODB=args.moto, AWS_ENDPOINT_URL_S3=args.s3s,
                   UPDRAFT_METRICS_INTERVAL="1")
        timed = {k: [] for k in KINDS}
        baseline = []
        out2 = os.path.join(tmp, "stdout2")
        with open(out2, "wb") as out, open(os.path.join(tmp, "stderr2"), "wb") as err:
            f = Function(binary, env, args.host, out, err)
            try:
                f.invoke_any(api_event("GET /health", None, None, "application/json"))
                devices2 = sample_devices(random.Random(args.seed + 1), args.timed_devices)

                def on_timed(kind, d, e, answer, seconds):
                    timed[kind].append(seconds * 1000)
                    if len(baseline) < 400:
                        # What an invocation costs around the handler: a request the router
                        # answers 404 at once.
                        t = time.perf_counter()
                        f.invoke_any(api_event("GET /nothing-here", None, None, "application/json"))
                        baseline.append((time.perf_counter() - t) * 1000)

                play(f, devices2, args.sessions, on_timed, random.Random(args.seed + 2))
            finally:
                f.stop()
        flushes = {}
        with open(out2, "rb") as fh:
            for line in fh:
                if b'"_aws"' in line:
                    ts = json.loads(line)["_aws"]["Timestamp"]
                    flushes[ts] = flushes.get(ts, 0) + len(line.rstrip(b"\n"))
        base = statistics.median(baseline)

        kinds = {}
        halves = {}
        for k, figs in figures.items():
            slot = blank()
            parts = [blank(), blank()]
            for fig in figs:
                add(slot, fig)
                add(parts[fig["device"] * 2 // args.devices], fig)
            kinds[k] = per_request(slot)
            halves[k] = [per_request(p) for p in parts]
            own = [fig["own_ms"] for fig in figs if "own_ms" in fig]
            if own:
                kinds[k]["own_ms_p50"] = round(statistics.median(own), 2)
            ms = [max(0.05, t - base) for t in timed[k]] if k != "zip_download" else []
            if ms:
                kinds[k]["handler_ms_p50"] = round(statistics.median(ms), 2)
                kinds[k]["handler_ms_mean"] = round(statistics.mean(ms), 2)
                # The slowest 10 % dropped: stalls of this shared machine, not of Lambda.
                kept = sorted(ms)[: max(1, math.ceil(len(ms) * (1 - TRIM)))]
                kinds[k]["billed_ms_mean"] = round(statistics.mean(max(1, math.ceil(t)) for t in kept), 3)
                kinds[k]["billed_ms_mean_all"] = round(statistics.mean(max(1, math.ceil(t)) for t in ms), 3)
                kinds[k]["timed"] = len(ms)
        with open(binary, "rb") as fh:
            sha = hashlib.sha256(fh.read()).hexdigest()
        result = {
            "label": args.label,
            "binary": args.binary,
            "binary_sha256": sha,
            "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                                     capture_output=True, text=True).stdout.strip(),
            "sample": {"devices": args.devices, "sessions": args.sessions,
                       "timed_devices": args.timed_devices, "seed": args.seed},
            "seconds": round(time.time() - started_run, 1),
            "pass1_seconds": round(pass1_seconds, 1),
            "events": {"launch": LAUNCH, "background": BACKGROUND, "download": DOWNLOAD,
                       "download_batches": DOWNLOAD_BATCHES, "install": "set"},
            "zip_bytes": kinds["zip_download"]["s3_bytes"],
            "largest_item_bytes": sizes,
            "kinds": kinds,
            "halves": halves,
            "baseline_ms_p50": round(base, 2),
            "baseline_pass1_ms_p50": round(base1, 2),
            "metric_lines": {"flushes": len(flushes),
                             "bytes_per_flush": round(statistics.mean(flushes.values()), 1) if flushes else 0,
                             "seen_in_pass1": emf},
            "examples": examples,
        }
        with open(args.out, "w") as fh:
            json.dump(result, fh, indent=1, sort_keys=True)
            fh.write("\n")
        print(json.dumps({k: v for k, v in result.items() if k not in ("examples", "halves")}, indent=1, sort_keys=True))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# table


def template_memory_mb():
    return cost.template_memory_mb()


def kind_cost(k, memory_mb, http_api):
    """Dollars per million requests of one kind, by component."""
    if "billed_ms_mean" not in k:  # a bundle download: S3, not the function
        gets = sum(c for op, c in k["s3"].items() if op.startswith("GET"))
        return {"HTTP API": 0.0, "Lambda": 0.0, "DynamoDB": 0.0, "logs": 0.0,
                "transfer": gets * 1e6 / 1000 * S3_GET_PER_1000 + k["s3_bytes"] * 1e6 / GB * TRANSFER_OUT_PER_GB,
                "floor": 0.0}
    log_bytes = k["log_bytes"] + (k["access_log_bytes"] if http_api else 0)
    lam = LAMBDA_REQUESTS_PER_M + k["billed_ms_mean"] / 1000 * memory_mb / 1024 * LAMBDA_ARM_GB_S * 1e6
    return {
        "HTTP API": HTTP_API_PER_M if http_api else 0.0,
        "Lambda": lam,
        "DynamoDB": k["rru"] * DYNAMO_PER_M_RRU + k["wru"] * DYNAMO_PER_M_WRU,
        "logs": log_bytes * 1e6 / GB * LOGS_PER_GB,
        "transfer": k["response_bytes"] * 1e6 / GB * TRANSFER_OUT_PER_GB,
        "floor": (HTTP_API_PER_M if http_api else 0.0) + LAMBDA_REQUESTS_PER_M,
    }


COLUMNS = ["HTTP API", "Lambda", "DynamoDB", "logs", "transfer", "total", "floor"]


def rows_of(r, p, memory, http_api):
    """The month's millions of requests and dollars, by row and component, per million MAU."""
    k = r["kinds"]
    c = {name: kind_cost(k[name], memory, http_api) for name in KINDS}

    def combo(parts):
        out = {col: sum(c[name][col] * m for name, m in parts) for col in COLUMNS if col != "total"}
        out["total"] = sum(out[col] for col in COLUMNS if col not in ("total", "floor"))
        out["requests"] = sum(m for name, m in parts if name != "zip_download")
        return out

    checks = p.sessions - p.installs
    rows = {
        "update checks": combo([("check_up_to_date", checks), ("check_offer", p.installs)]),
        "stats sessions": combo([("batch_launch", p.sessions), ("batch_background", p.sessions)]),
        # An install: its download batches, and what `set` adds to a launch batch.
        "stats installs": combo([("batch_download", p.installs * p.download_batches),
                                 ("batch_launch_set", p.installs), ("batch_launch", -p.installs)]),
        "downloads": combo([("zip_download", p.installs)]),
    }
    rows["downloads"]["requests"] = 0
    api = ["update checks", "stats sessions", "stats installs"]
    rows["total"] = {col: sum(rows[n][col] for n in api + ["downloads"]) for col in COLUMNS + ["requests"]}
    rows["total without downloads"] = {col: sum(rows[n][col] for n in api) for col in COLUMNS + ["requests"]}
    return rows


def cdn_downloads(r, p, mau_m=1):
    """The downloads of `mau_m` million MAU through CloudFront (S3 to CloudFront is free):
    with the free tier (once per account), and per further million MAU without it."""
    gb = r["zip_bytes"] * p.installs * mau_m * 1e6 / GB
    reqs = p.installs * mau_m * 1e6
    free = (max(0.0, gb - CLOUDFRONT_FREE_GB) * CLOUDFRONT_PER_GB
            + max(0.0, reqs - CLOUDFRONT_FREE_REQUESTS) / 1e4 * CLOUDFRONT_PER_10K_HTTPS)
    marginal = gb * CLOUDFRONT_PER_GB + reqs / 1e4 * CLOUDFRONT_PER_10K_HTTPS
    return free, marginal


def largest_counter(r):
    what = r["largest_item_bytes"].get("write_what", "")
    if "#counters#" in what:
        return ", a release's counter item: it gains an attribute per action counted"
    return f", {what}" if what else ""


def usd(x):
    if abs(x) < 0.005:
        return "$0" if x == 0 else f"${x:.3f}"
    return f"${x:,.2f}" if abs(x) < 100 else f"${x:,.0f}"


def fmt_ops(ops):
    return ", ".join(f"{op} {c:g}" for op, c in ops.items()) or "none"


def table(args):
    after = json.load(open(args.after))
    before = json.load(open(args.before)) if args.before and os.path.exists(args.before) else None
    again = None  # the same binary measured twice: a check of the run's noise, not a before
    if before and before.get("binary_sha256") == after.get("binary_sha256"):
        again, before = before, None
    memory = template_memory_mb()
    p = args
    p.download_batches = after["events"]["download_batches"]
    cmd = "python3 bench/device_month.py table " + " ".join(args.argv)
    out = [
        f"<!-- generated by bench/device_month.sh ({cmd}) from the committed bench/results: do not edit by hand -->",
        "",
        f"Measured by `bench/device_month.sh` (commit {after['commit']}, {after['binary']}): "
        f"{after['sample']['devices']} devices × {after['sample']['sessions']} sessions through the Lambda "
        "path (the `updraft` binary under the Runtime API emulator, on moto and s3s-fs behind "
        "counting proxies), as API Gateway v2 events from many /24 networks, then scaled to a "
        f"device-month: {p.sessions} app sessions (each one update check, a stats batch of the "
        f"{len(LAUNCH)} launch events and one of the background event) and {p.installs} install "
        f"({p.download_batches} stats batches of {len(DOWNLOAD)} download events, the "
        f"{after['zip_bytes'] / 2**20:.1f} MiB zip from S3, `set` in the next launch batch). "
        f"Per million monthly active devices a month, at the template's {memory} MB, list prices "
        "in us-east-1 (bench/device_month.py), no free tier. The floor is what the requests cost "
        "with nothing else: the HTTP API's and Lambda's request fees.",
        "",
    ]
    for title, http_api in (("On the HTTP API", True), ("On the Function URL (no HTTP API fee, no access log)", False)):
        rows = rows_of(after, p, memory, http_api)
        brows = rows_of(before, p, memory, http_api) if before else None
        head = "| " + title + " | requests | HTTP API | Lambda | DynamoDB | logs | transfer, S3 | **total** | floor |"
        sep = "|---|---|---|---|---|---|---|---|---|"
        if brows:
            head += " before |"
            sep += "---|"
        out += [head, sep]
        for name, row in rows.items():
            cells = [f"{row['requests']:g} M" if row["requests"] else "–"]
            cells += [("–" if (col == "HTTP API" and not http_api) else usd(row[col])) for col in
                      ("HTTP API", "Lambda", "DynamoDB", "logs", "transfer")]
            label = f"**{name}**" if name.startswith("total") else name
            line = f"| {label} | " + " | ".join(cells) + f" | **{usd(row['total'])}** | {usd(row['floor'])} |"
            if brows:
                line += f" {usd(brows[name]['total'])} |"
            out.append(line)
        if args.cdn:
            free, marginal = cdn_downloads(after, p)
            d = rows["downloads"]["total"]
            blank_before = " |" if brows else ""
            out.append(f"| downloads through CloudFront | – | | | | | {usd(free)} | **{usd(free)}** | |" + blank_before)
            out.append(f"| **total, downloads through CloudFront** | | | | | | | **{usd(rows['total']['total'] - d + free)}** | |"
                       + blank_before)
        out.append("")
    if args.cdn:
        free, marginal = cdn_downloads(after, p)
        out += [f"With `--cdn`, the downloads go through CloudFront (${CLOUDFRONT_PER_GB}/GB for the first 10 TB "
                f"in North America, ${CLOUDFRONT_PER_10K_HTTPS} per 10,000 HTTPS requests; S3 to CloudFront "
                f"is free): {usd(free)} for the first million MAU with the free tier of 1 TB and 10 M "
                f"requests a month (one per account), {usd(marginal)} for each further million.", ""]

    k = after["kinds"]
    out += [
        "Measured per request (means over the sample; units are DynamoDB capacity units, "
        "estimated from each call's items as bench/ddb_capacity.py says):",
        "",
        "| request | sampled | DynamoDB calls | read units | write units | log lines | log bytes | response bytes | access log bytes | billed ms (handler p50) |"
        + (" before: write units, log bytes, billed ms |" if before else ""),
        "|---|---|---|---|---|---|---|---|---|---|" + ("---|" if before else ""),
    ]
    for name, label in KINDS.items():
        x = k[name]
        ms = (f"{x['billed_ms_mean']:.2f} ({x['handler_ms_p50']:.1f})"
              if "billed_ms_mean" in x else "–")
        calls = fmt_ops(x["dynamodb"]) if name != "zip_download" else fmt_ops(x["s3"]) + " (S3)"
        acc = f"{x['access_log_bytes']:.0f}" if name != "zip_download" else "–"
        line = (f"| {label} | {x['n']} | {calls} | {x['rru']:g} | {x['wru']:g} | {x['log_lines']:g} | "
                f"{x['log_bytes']:.0f} | {x['response_bytes']:.0f} | {acc} | {ms} |")
        if before:
            b = before["kinds"][name]
            line += (f" {b['wru']:g}, {b['log_bytes']:.0f}, {b['billed_ms_mean']:.2f} |" if "billed_ms_mean" in b
                     else f" {b['s3_bytes']:.0f} bytes |")
        out.append(line)
    out.append("")

    # Stability: what each kind costs per request beyond its fixed fees (DynamoDB, logs,
    # transfer), from either half of the sample's devices on its own.
    worst, worst_kind = 0.0, ""
    for name in API_KINDS:
        x = after["kinds"][name]
        a, b = (kind_cost(dict(h, billed_ms_mean=x["billed_ms_mean"]), memory, True)
                for h in after["halves"][name])
        ta, tb = (sum(c[col] for col in ("DynamoDB", "logs", "transfer")) for c in (a, b))
        if abs(ta - tb) / max(ta, tb) > worst:
            worst, worst_kind = abs(ta - tb) / max(ta, tb), KINDS[name]
    rows = rows_of(after, p, memory, True)
    urows = rows_of(after, p, memory, False)
    sess = rows["stats sessions"]
    lb, bb = k["batch_launch"], k["batch_background"]
    mf = after["metric_lines"]
    out += [
        f"Each half of the sample ({after['sample']['devices'] // 2} devices) on its own gives every "
        f"kind's DynamoDB, log and transfer cost per request within {worst * 100:.2f} % of the other "
        f"half's (the most: {worst_kind}). "
        + (f"The same binary measured again (`--before` {args.before}) gives "
           f"{usd(rows_of(again, p, memory, True)['total']['total'])} on the HTTP API and "
           f"{usd(rows_of(again, p, memory, False)['total']['total'])} on the Function URL, its "
           f"Lambda line {usd(rows_of(again, p, memory, True)['total']['Lambda'])}: the billed time is the "
           "noisiest figure. " if again else "")
        +
        "The arithmetic, per million MAU: a row's requests (millions) times each kind's figures; "
        f"HTTP API ${HTTP_API_PER_M:.2f} and Lambda ${LAMBDA_REQUESTS_PER_M:.2f} a million requests (the "
        "floor), Lambda duration at the billed ms (1 ms steps, at least 1; handler time measured "
        f"in a second pass as the invocation's round trip less that of a request the router answers "
        f"404, {after['baseline_ms_p50']:.1f} ms) × {memory / 1024:g} GB × ${LAMBDA_ARM_GB_S}/GB-s, "
        f"DynamoDB read units × ${DYNAMO_PER_M_RRU} and write units × ${DYNAMO_PER_M_WRU} a million, logs "
        f"(the function's lines{' plus the access log line' if True else ''}) × ${LOGS_PER_GB}/GB, response and zip bytes × "
        f"${TRANSFER_OUT_PER_GB}/GB out, S3 GETs × ${S3_GET_PER_1000}/1,000 (GB = 2^30 bytes). "
        f"E.g. stats sessions: {p.sessions} × ({lb['wru']:g} + {bb['wru']:g}) write units "
        f"= {sess['DynamoDB'] / DYNAMO_PER_M_WRU:.0f} M → {usd(sess['DynamoDB'])}; "
        f"{p.sessions} × ({lb['log_bytes']:.0f} + {bb['log_bytes']:.0f}) function log bytes "
        f"+ {2 * p.sessions} × {(lb['access_log_bytes'] + bb['access_log_bytes']) / 2:.0f} access log bytes → {usd(sess['logs'])}. "
        f"Total {usd(rows['total']['total'])} on the HTTP API ({usd(rows['total']['floor'])} of it the floor), "
        f"{usd(urows['total']['total'])} on the Function URL ({usd(urows['total']['floor'])}).",
        "",
        f"Every item written is under 1 KB (the largest, {after['largest_item_bytes']['write']} bytes: 1 write unit, "
        f"2 in a transaction{largest_counter(after)}) and every read under 4 KB (the largest, {after['largest_item_bytes']['read']} bytes: "
        "0.5 read unit eventually consistent). "
        "Not in the table: metric lines (an instance writes "
        f"{mf['bytes_per_flush']:.0f} bytes a minute while it serves checks: ~$0.01 a month per "
        "instance kept warm all month), CloudWatch custom metrics ($0.30 a month each app × channel × "
        "version × decision seen), storage and backups (KB per device), cold starts, Secrets Manager "
        "($0.40 a month), the rollout schedule (8,640 invocations a month), response headers; "
        "on AWS a presigned URL also carries the role's session token (about 1 KB more per offer). "
        f"Billed times come from a debug build on a shared machine against moto (the slowest {TRIM:.0%} "
        "of each kind dropped as the machine's stalls; two runs of one binary differ by a few dollars "
        "in the Lambda column); most of a stats batch's time is waiting "
        "for moto's `TransactWriteItems`.",
    ]
    text = "\n".join(out) + "\n"
    if args.write:
        readme = open(args.readme).read()
        begin, end = "<!-- cost:begin -->\n", "<!-- cost:end -->\n"
        a, b = readme.index(begin) + len(begin), readme.index(end)
        with open(args.readme, "w") as fh:
            fh.write(readme[:a] + text + readme[b:])
    sys.stdout.write(text)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--binary", required=True)
    r.add_argument("--label", required=True)
    r.add_argument("--devices", type=int, default=80)
    r.add_argument("--sessions", type=int, default=8, help="sessions per device in the sample (at least 3)")
    r.add_argument("--timed-devices", type=int, default=30, help="devices of the timing pass")
    r.add_argument("--zip-bytes", type=int, default=2 * 2**20)
    r.add_argument("--seed", type=int, default=19)
    r.add_argument("--out", required=True)
    r.add_argument("--host", default=os.environ.get("BENCH_HOST", "127.0.0.1"))
    r.add_argument("--moto", default=os.environ.get("BENCH_MOTO"))
    r.add_argument("--s3s", default=os.environ.get("BENCH_S3S"))
    r.add_argument("--dynamo-proxy", default=os.environ.get("BENCH_DYNAMO_PROXY"))
    r.add_argument("--s3-proxy", default=os.environ.get("BENCH_S3_PROXY"))
    t = sub.add_parser("table")
    t.add_argument("--after", required=True)
    t.add_argument("--before")
    t.add_argument("--sessions", type=int, default=SESSIONS)
    t.add_argument("--installs", type=int, default=INSTALLS)
    t.add_argument("--cdn", action="store_true", help="also price the downloads through CloudFront")
    t.add_argument("--write", action="store_true", help="write the section into README.md")
    t.add_argument("--readme", default=os.path.join(REPO, "README.md"))
    args = p.parse_args()
    if args.cmd == "table":
        args.argv = [a for a in sys.argv[2:] if a not in ("--write",) and not a.startswith("--readme")]
        os.chdir(REPO)
        table(args)
    else:
        if args.sessions < 3:
            sys.exit("--sessions: at least 3 (the install, the `set`, a plain session)")
        run(args)


if __name__ == "__main__":
    main()
