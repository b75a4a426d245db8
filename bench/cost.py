"""What a million update checks cost, from measured counts (run through bench/cost.sh).

`run`: releases an app on moto and s3s-fs (behind counting proxies), runs an `updraft` binary
under the Lambda Runtime API emulator (`cargo lambda watch --only-lambda-apis`, as
tests/lambda_runtime.rs does), invokes N API Gateway v2 update checks of a realistic mix, and
writes what it counted: DynamoDB and S3 calls per check (per kind of check too), bytes the
function wrote to stdout/stderr per check, and the function's own time per check (the
`micros` of its check lines, from a second pass at `debug`).

`table`: turns two runs (before, after) into the cost table per million checks, from those
counts and the list prices below (bench/results/cost.md). README's cost section is now the
device-month's (bench/device_month.sh), which measures update checks too, beside stats and
downloads; this per-check table stays for its detail on the mix of checks.
"""

import argparse
import json
import math
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APP = "com.bench.app"

# AWS list prices, us-east-1, no free tier; checked 2026-12-02 on the pricing pages named.
HTTP_API_PER_M = 1.00  # aws.amazon.com/api-gateway/pricing: HTTP API, first 300 M a month
LAMBDA_REQUESTS_PER_M = 0.20  # aws.amazon.com/lambda/pricing
LAMBDA_ARM_GB_S = 0.0000133334  # aws.amazon.com/lambda/pricing: arm64, first 7.5 B GB-s
LOGS_PER_GB = 0.50  # aws.amazon.com/cloudwatch/pricing: Logs, standard ingestion
DYNAMO_PER_M_RRU = 0.125  # aws.amazon.com/dynamodb/pricing/on-demand (since Nov 2024)
S3_GET_PER_1000 = 0.0004  # aws.amazon.com/s3/pricing: Standard, GET
S3_PUT_PER_1000 = 0.005  # aws.amazon.com/s3/pricing: Standard, PUT/POST/LIST

# Read units of one call on the check path: eventually consistent, items under 4 KB.
RRU = {"GetItem": 0.5, "Query": 0.5}

# Lambda's platform lines per invocation with LogFormat Text (not written by the emulator):
# their sizes as Lambda writes them.
RID = "8f5f2a8c-1d3e-4c1b-9a55-0c2f3b4d5e6f"
TEXT_PLATFORM_LINES = (
    f"START RequestId: {RID} Version: $LATEST\n"
    f"END RequestId: {RID}\n"
    f"REPORT RequestId: {RID}\tDuration: 1.84 ms\tBilled Duration: 2 ms\t"
    "Memory Size: 512 MB\tMax Memory Used: 31 MB\t\n"
)

# Typical values of the access log's `$context` variables (API Gateway writes the line).
ACCESS_LOG_VALUES = {
    "requestId": "Ab1CdEfGhIjKlMn=",
    "identity.sourceIp": "203.0.113.45",
    "requestTimeEpoch": "1795910400123",
    "routeKey": "POST /updates",
    "path": "/updates",
    "status": "200",
    "responseLength": "72",
    "responseLatency": "12",
    "integrationStatus": "200",
    "integrationErrorMessage": "-",
    "identity.userAgent": "CapacitorUpdater/8.51.23 (com.example.app) android/14",
}


def free_port(host):
    s = socket.socket()
    s.bind((host, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(host, port, what, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"{what} did not start on {host}:{port}")


def counts(url):
    with urllib.request.urlopen(f"{url}/__counts") as r:
        return json.load(r)


def diff(after, before):
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


def aws_env(dynamo, s3, table, devices, bucket):
    return {
        "AWS_ENDPOINT_URL_DYNAMODB": dynamo,
        "AWS_ENDPOINT_URL_S3": s3,
        "AWS_ENDPOINT_URL_STS": dynamo,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "UPDRAFT_TABLE": table,
        "UPDRAFT_DEVICES_TABLE": devices,
        "UPDRAFT_BUCKET": bucket,
        "UPDRAFT_BACKEND": "aws",
    }


def setup_store(args, binary, tmp):
    """Fresh tables and bucket on the emulators (not through the proxies), and a release."""
    import boto3

    suffix = uuid.uuid4().hex[:8]
    table, devices, bucket = f"bench-releases-{suffix}", f"bench-devices-{suffix}", f"bench-{suffix}"
    kw = dict(region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
    ddb = boto3.client("dynamodb", endpoint_url=args.moto, **kw)
    for name, sort in ((table, "sk"), (devices, "device_id")):
        ddb.create_table(
            TableName=name,
            KeySchema=[
                {"AttributeName": "app_id", "KeyType": "HASH"},
                {"AttributeName": sort, "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": "app_id", "AttributeType": "S"},
                {"AttributeName": sort, "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
    ddb.update_time_to_live(
        TableName=devices,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"},
    )
    boto3.client("s3", endpoint_url=args.s3s, **kw).create_bucket(Bucket=bucket)
    web = os.path.join(tmp, "www")
    os.makedirs(os.path.join(web, "assets"))
    with open(os.path.join(web, "index.html"), "w") as f:
        f.write('<!doctype html><p>bench</p><script src="assets/app.js"></script>')
    with open(os.path.join(web, "assets", "app.js"), "w") as f:
        f.write("window.Capacitor.Plugins.CapacitorUpdater.notifyAppReady();")
    env = dict(os.environ, RUST_LOG="warn", **aws_env(args.moto, args.s3s, table, devices, bucket))
    subprocess.run(
        [binary, "release", "--app", APP, "--version", "1.0.1", "--dir", web],
        env=env, check=True, stdout=subprocess.DEVNULL,
    )
    return table, devices, bucket


def event(body, source_ip):
    with open(os.path.join(REPO, "tests/fixtures/events/update-check.json")) as f:
        e = json.load(f)
    del e["headers"]["content-length"]
    e["requestContext"]["http"]["sourceIp"] = source_ip
    e["body"] = json.dumps(body)
    return e


def check_body(kind, rng):
    """One check of the mix: `up_to_date` (90 %), `offer` (5 %), `other` (5 %: half an app
    this server does not have, half a channel the app does not have)."""
    body = {
        "platform": rng.choice(["android", "ios"]),
        "device_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "app_id": APP, "custom_id": "", "version_build": "1.0.0", "version_code": "12",
        "version_os": "14", "version_name": "1.0.1", "plugin_version": "8.51.23",
        "is_emulator": False, "is_prod": True, "defaultChannel": "",
    }
    if kind == "offer":
        body["version_name"] = "1.0.0"
    elif kind == "other":
        if rng.random() < 0.5:
            body["app_id"] = "com.bench.unknown"
        else:
            body["defaultChannel"] = "qa"
    return body


def mix(n, rng):
    """Exactly 90 % / 5 % / 5 % of `n`, in a shuffled order."""
    kinds = ["offer"] * (n * 5 // 100) + ["other"] * (n * 5 // 100)
    kinds += ["up_to_date"] * (n - len(kinds))
    rng.shuffle(kinds)
    return kinds


class Function:
    """The Runtime API emulator and the binary polling it, as Lambda runs it."""

    def __init__(self, binary, env, host, out, err):
        self.port = free_port(host)
        self.emulator = subprocess.Popen(
            ["cargo", "lambda", "watch", "--only-lambda-apis", "-A", host, "-P", str(self.port)],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        wait_port(host, self.port, "the Lambda runtime emulator")
        self.url = f"http://{host}:{self.port}/2015-03-31/functions/_/invocations"
        full = dict(
            os.environ, **env,
            AWS_LAMBDA_RUNTIME_API=f"http://{host}:{self.port}/.rt",
            AWS_LAMBDA_FUNCTION_NAME="_", AWS_LAMBDA_FUNCTION_VERSION="1",
            AWS_LAMBDA_FUNCTION_MEMORY_SIZE="512",
        )
        self.function = subprocess.Popen(
            [binary], env=full, stdout=out, stderr=err, start_new_session=True,
        )

    def invoke(self, e):
        req = urllib.request.Request(
            self.url, data=json.dumps(e).encode(), headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=60) as r:
            answer = json.load(r)
        if answer.get("statusCode") != 200:
            sys.exit(f"a check failed: {answer}")
        return answer

    def stop(self):
        for p in (self.function, self.emulator):
            try:
                os.killpg(p.pid, 15)
            except ProcessLookupError:
                pass
            p.wait()


def run(args):
    binary = os.path.abspath(args.binary)
    tmp = tempfile.mkdtemp(prefix="updraft-bench-")
    try:
        table, devices, bucket = setup_store(args, binary, tmp)
        env = aws_env(args.dynamo_proxy, args.s3_proxy, table, devices, bucket)
        env.update(UPDRAFT_CACHE_TTL="10", UPDRAFT_URL_TTL="3600")
        # Metric lines every second, so that a run of seconds writes them at all (the
        # template's 60 s writes fewer: this overstates their bytes).
        env.update(UPDRAFT_METRICS_INTERVAL="1")
        rng = random.Random(12)
        kinds = mix(args.checks, rng)
        bodies = [check_body(k, rng) for k in kinds]

        # Pass 1, as deployed (RUST_LOG=info): calls and log bytes.
        out_path, err_path = os.path.join(tmp, "stdout"), os.path.join(tmp, "stderr")
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            f = Function(binary, dict(env, RUST_LOG="info"), args.host, out, err)
            try:
                f.invoke(event(check_body("up_to_date", rng), "203.0.113.9"))  # init, warm cache
                time.sleep(0.2)
                logged = os.path.getsize(out_path) + os.path.getsize(err_path)
                per_kind = {k: {"checks": 0, "dynamodb": {}, "s3": {}} for k in set(kinds)}
                d0, s0 = counts(args.dynamo_proxy), counts(args.s3_proxy)
                started = time.time()
                for kind, body in zip(kinds, bodies):
                    db, sb = counts(args.dynamo_proxy), counts(args.s3_proxy)
                    f.invoke(event(body, "203.0.113.9"))
                    slot = per_kind[kind]
                    slot["checks"] += 1
                    for svc, url, before in (("dynamodb", args.dynamo_proxy, db), ("s3", args.s3_proxy, sb)):
                        for op, n in diff(counts(url), before).items():
                            slot[svc][op] = slot[svc].get(op, 0) + n
                seconds = time.time() - started
                dynamodb = diff(counts(args.dynamo_proxy), d0)
                s3 = diff(counts(args.s3_proxy), s0)
                time.sleep(0.2)
                log_bytes = os.path.getsize(out_path) + os.path.getsize(err_path) - logged
            finally:
                f.stop()

        # Pass 2 (RUST_LOG=debug): the function's own time of every check, on the emulators
        # directly (no proxy in the way).
        env.update(AWS_ENDPOINT_URL_DYNAMODB=args.moto, AWS_ENDPOINT_URL_S3=args.s3s)
        micros = []
        with open(os.path.join(tmp, "debug-out"), "wb") as out, open(os.path.join(tmp, "debug-err"), "wb") as err:
            f = Function(binary, dict(env, RUST_LOG="debug"), args.host, out, err)
            try:
                f.invoke(event(check_body("up_to_date", rng), "203.0.113.9"))
                skip = 1
                for body in bodies[: args.timed]:
                    f.invoke(event(body, "203.0.113.9"))
            finally:
                f.stop()
        with open(os.path.join(tmp, "debug-err")) as lines:
            for line in lines:
                m = re.search(r'"micros":(\d+)', line)
                if m and '"update check"' in line:
                    micros.append(int(m.group(1)))
        micros = micros[skip:]
        n = args.checks
        result = {
            "label": args.label,
            "binary": args.binary,
            "checks": n,
            "seconds": round(seconds, 1),
            "mix": {k: v["checks"] for k, v in sorted(per_kind.items())},
            "dynamodb_calls": dynamodb,
            "s3_calls": s3,
            "per_kind": per_kind,
            "log_bytes": log_bytes,
            "platform_lines": args.platform_lines,
            # The access log line of the template this run was made with (typical values).
            "access_log_bytes": access_log_bytes(),
            "handler_micros_mean": round(sum(micros) / len(micros), 1),
            "handler_micros_p50": sorted(micros)[len(micros) // 2],
            "billed_ms_mean": round(sum(max(1, math.ceil(m / 1000)) for m in micros) / len(micros), 3),
        }
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2, sort_keys=True)
            f.write("\n")
        print(json.dumps(result, indent=2, sort_keys=True))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def template_memory_mb():
    with open(os.path.join(REPO, "template.yaml")) as f:
        text = f.read()
    m = re.search(r"FunctionMemory:\n(?:\s+\w+:.*\n)*?\s+Default: (\d+)", text)
    return int(m.group(1))


def access_log_bytes():
    with open(os.path.join(REPO, "template.yaml")) as f:
        text = f.read()
    fmt = re.search(r"AccessLogSettings:\n(?:.*\n)*?\s+Format: '(.*)'", text).group(1)
    return len(re.sub(r"\$context\.([\w.]+)", lambda m: ACCESS_LOG_VALUES.get(m.group(1), "x" * 8), fmt)) + 1


def costs(r, memory_mb):
    """Dollars per million checks, by line, from one run's counts."""
    n = r["checks"]
    per_m = 1_000_000 / n
    rru = sum(RRU.get(op, 0.5) * c for op, c in r["dynamodb_calls"].items())
    s3_gets = sum(c for op, c in r["s3_calls"].items() if op.startswith(("GET", "HEAD")))
    s3_puts = sum(c for op, c in r["s3_calls"].items() if not op.startswith(("GET", "HEAD")))
    platform = len(TEXT_PLATFORM_LINES) if r["platform_lines"] == "text" else 0
    log_per_check = r["log_bytes"] / n + platform
    return {
        "HTTP API": HTTP_API_PER_M,
        "Lambda requests": LAMBDA_REQUESTS_PER_M,
        "Lambda duration": r["billed_ms_mean"] / 1000 * memory_mb / 1024 * LAMBDA_ARM_GB_S * 1e6,
        "DynamoDB reads": rru * per_m * DYNAMO_PER_M_RRU / 1e6,
        "S3 requests": (s3_gets * S3_GET_PER_1000 + s3_puts * S3_PUT_PER_1000) / 1000 * per_m,
        "CloudWatch Logs (function)": log_per_check * 1e6 / 1e9 * LOGS_PER_GB,
        "CloudWatch Logs (API access log)": r.get("access_log_bytes", access_log_bytes()) * 1e6 / 1e9 * LOGS_PER_GB,
        "_log_per_check": log_per_check,
    }


def money(x):
    return f"${x:.4f}" if x < 0.01 else f"${x:.3f}"


def table(args):
    before, after = (json.load(open(p)) for p in (args.before, args.after))
    memory = template_memory_mb()
    cb, ca = costs(before, memory), costs(after, memory)

    def calls(r):
        return sum(r["dynamodb_calls"].values()) / r["checks"]

    def kind_calls(r, kind):
        """Device reads (`GetItem`) per check of one kind."""
        k = r["per_kind"][kind]
        return k["dynamodb"].get("GetItem", 0) / max(1, k["checks"])

    def detail(r):
        ops = ", ".join(f"{op} {c}" for op, c in sorted(r["dynamodb_calls"].items()))
        return f"{calls(r):.3f} per check ({ops or 'none'})"

    lines = [
        "<!-- generated by bench/cost.sh from bench/results/cost-*.json: do not edit by hand -->",
        "",
        f"Measured by `bench/cost.sh`: {after['checks']} update checks through the Lambda path "
        "(the `updraft` binary under the Runtime API emulator, on moto and s3s-fs behind "
        "counting proxies), 90 % devices already up to date, 5 % offers, 5 % other (an unknown "
        "app, an unknown channel). Before: the binary and template before the device-read "
        "shortcut and metrics; after: as now. Per million checks, at the template's "
        f"{memory} MB, with the list prices in bench/cost.py:",
        "",
        "| item | measured (before → after) | before | after |",
        "|---|---|---|---|",
        f"| HTTP API | one request per check | {money(cb['HTTP API'])} | {money(ca['HTTP API'])} |",
        f"| Lambda requests | one invocation per check | {money(cb['Lambda requests'])} | {money(ca['Lambda requests'])} |",
        f"| Lambda duration | handler {before['handler_micros_mean']:.0f} → {after['handler_micros_mean']:.0f} µs mean, billed {before['billed_ms_mean']:.2f} → {after['billed_ms_mean']:.2f} ms (1 ms steps) | {money(cb['Lambda duration'])} | {money(ca['Lambda duration'])} |",
        f"| DynamoDB reads | {detail(before)} → {detail(after)}; device reads per up-to-date check {kind_calls(before, 'up_to_date'):.2f} → {kind_calls(after, 'up_to_date'):.2f}, per offer {kind_calls(before, 'offer'):.2f} → {kind_calls(after, 'offer'):.2f}, per other {kind_calls(before, 'other'):.2f} → {kind_calls(after, 'other'):.2f}; each `Query` is a warm instance re-reading an app's items (`UPDRAFT_CACHE_TTL` 10 s, so more per check at lower traffic); 0.5 read unit each | {money(cb['DynamoDB reads'])} | {money(ca['DynamoDB reads'])} |",
        f"| S3 requests | {sum(before['s3_calls'].values())} → {sum(after['s3_calls'].values())} in the run (URLs are presigned, not fetched) | {money(cb['S3 requests'])} | {money(ca['S3 requests'])} |",
        f"| CloudWatch Logs, function | {cb['_log_per_check']:.0f} → {ca['_log_per_check']:.0f} bytes per check (written by the function{', plus Lambda' + chr(39) + 's START/END/REPORT before' if before['platform_lines'] == 'text' else ''}) | {money(cb['CloudWatch Logs (function)'])} | {money(ca['CloudWatch Logs (function)'])} |",
        f"| CloudWatch Logs, API access log | {before.get('access_log_bytes', access_log_bytes())} → {after.get('access_log_bytes', access_log_bytes())} bytes per request (the template's format, typical values) | {money(cb['CloudWatch Logs (API access log)'])} | {money(ca['CloudWatch Logs (API access log)'])} |",
    ]
    url_lines = ["Lambda requests", "Lambda duration", "DynamoDB reads", "S3 requests", "CloudWatch Logs (function)"]
    http_lines = url_lines + ["HTTP API", "CloudWatch Logs (API access log)"]
    tb, ta = (sum(c[k] for k in http_lines) for c in (cb, ca))
    ub, ua = (sum(c[k] for k in url_lines) for c in (cb, ca))
    lines += [
        f"| **total, HTTP API** | | **{money(tb)}** | **{money(ta)}** |",
        f"| **total, Function URL** (no HTTP API fee, no access log) | | **{money(ub)}** | **{money(ua)}** |",
        "",
        "The request fees ($1.00 HTTP API, $0.20 Lambda) are the floor: on the HTTP API the "
        f"checks cost {money(ta - 1.20)} above it, on the Function URL {money(ua - 0.20)}. "
        "Handler times come from a debug build on a shared machine against moto, whose calls take "
        "longer than DynamoDB's; every invocation is billed at least 1 ms. Each combination of "
        "`app`, `channel` and `decision` seen in a month is a CloudWatch custom metric ($0.30 a "
        "month each for the first 10,000), whatever the number of checks. Metric lines were "
        "written every second in the run (the template writes them every 60 s), so their bytes "
        "are overstated.",
    ]
    text = "\n".join(lines) + "\n"
    with open(args.md, "w") as f:
        f.write(text)
    if args.readme:
        readme = open(args.readme).read()
        begin, end = "<!-- cost:begin -->\n", "<!-- cost:end -->\n"
        a, b = readme.index(begin) + len(begin), readme.index(end)
        with open(args.readme, "w") as f:
            f.write(readme[:a] + text + readme[b:])
    print(text)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--binary", required=True)
    r.add_argument("--label", required=True)
    r.add_argument("--checks", type=int, default=2000)
    r.add_argument("--timed", type=int, default=500, help="checks of the timing pass")
    r.add_argument("--platform-lines", choices=["text", "none"], required=True,
                   help="Lambda's START/END/REPORT lines per invocation: text (LogFormat Text) or none (SystemLogLevel WARN)")
    r.add_argument("--out", required=True)
    r.add_argument("--host", default=os.environ.get("BENCH_HOST", "127.0.0.1"))
    r.add_argument("--moto", default=os.environ.get("BENCH_MOTO"))
    r.add_argument("--s3s", default=os.environ.get("BENCH_S3S"))
    r.add_argument("--dynamo-proxy", default=os.environ.get("BENCH_DYNAMO_PROXY"))
    r.add_argument("--s3-proxy", default=os.environ.get("BENCH_S3_PROXY"))
    t = sub.add_parser("table")
    t.add_argument("--before", required=True)
    t.add_argument("--after", required=True)
    t.add_argument("--md", required=True)
    t.add_argument("--readme", default="",
                   help="also write the table into this README's cost section (README.md's is "
                        "bench/device_month.sh's since the device-month bench)")
    args = p.parse_args()
    run(args) if args.cmd == "run" else table(args)


if __name__ == "__main__":
    main()
