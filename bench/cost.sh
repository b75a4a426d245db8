#!/usr/bin/env bash
# What a million update checks cost, measured: starts moto and s3s-fs behind counting proxies,
# runs bench/cost.py with an `updraft` binary under the Lambda Runtime API emulator, and writes
# the per-check cost table to bench/results/cost.md. README's "What it costs" is the device-month
# (bench/device_month.sh), which measures update checks beside stats and downloads.
#
#   bench/cost.sh                       # after: this tree's debug binary (built if missing)
#   BEFORE=/path/to/old/updraft bench/cost.sh   # also measure an older binary as "before"
#
# BENCH_CHECKS (default 2000) checks per run; BENCH_HOST (default 127.0.0.1) the loopback
# address the emulators listen on. Without BEFORE, the committed before figures
# (bench/results/cost-before.json) are kept.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
# shellcheck source=scripts/setup.sh
source scripts/setup.sh
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL

host=${BENCH_HOST:-127.0.0.1}
checks=${BENCH_CHECKS:-2000}
free_port() { python3 -c 'import socket,sys; s=socket.socket(); s.bind((sys.argv[1],0)); print(s.getsockname()[1])' "$host"; }
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

wait_for() { for _ in $(seq 1 100); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done; echo "$2 did not start" >&2; exit 1; }

moto_port=$(free_port)
python3 scripts/moto_atomic.py "$host" "$moto_port" >"$work/moto.log" 2>&1 &
pids+=($!)
s3s_port=$(free_port)
mkdir -p "$work/s3s"
s3s-fs --host "$host" --port "$s3s_port" --access-key test --secret-key test "$work/s3s" >"$work/s3s.log" 2>&1 &
pids+=($!)
ddb_proxy_port=$(free_port)
python3 bench/counting_proxy.py "$host" "$ddb_proxy_port" "http://$host:$moto_port" &
pids+=($!)
s3_proxy_port=$(free_port)
python3 bench/counting_proxy.py "$host" "$s3_proxy_port" "http://$host:$s3s_port" &
pids+=($!)
wait_for "http://$host:$moto_port/moto-api/" moto
wait_for "http://$host:$s3s_port/" s3s-fs
wait_for "http://$host:$ddb_proxy_port/__counts" "the DynamoDB counting proxy"
wait_for "http://$host:$s3_proxy_port/__counts" "the S3 counting proxy"
export BENCH_HOST=$host BENCH_MOTO="http://$host:$moto_port" BENCH_S3S="http://$host:$s3s_port"
export BENCH_DYNAMO_PROXY="http://$host:$ddb_proxy_port" BENCH_S3_PROXY="http://$host:$s3_proxy_port"

after=${AFTER:-target/debug/updraft}
[ -x "$after" ] || cargo build --bin updraft
mkdir -p bench/results
if [ -n "${BEFORE:-}" ]; then
  # The template before: LogFormat Text, so Lambda wrote START/END/REPORT per invocation.
  python3 bench/cost.py run --binary "$BEFORE" --label before --checks "$checks" \
    --platform-lines text --out bench/results/cost-before.json
fi
python3 bench/cost.py run --binary "$after" --label after --checks "$checks" \
  --platform-lines none --out bench/results/cost-after.json
python3 bench/cost.py table --before bench/results/cost-before.json \
  --after bench/results/cost-after.json --md bench/results/cost.md
