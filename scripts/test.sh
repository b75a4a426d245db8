#!/usr/bin/env bash
# Runs the whole test suite from a fresh clone: installs what is missing (scripts/setup.sh),
# starts the emulators on 127.0.0.1, checks formatting and lints, then runs every test.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
# shellcheck source=scripts/setup.sh
source scripts/setup.sh

# Test credentials only; nothing may reach beyond 127.0.0.1 (no IMDS either).
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

moto_port=$(free_port)
# moto applies concurrent writes to one item without a lock (a lost ADD); the wrapper gives each
# request the atomicity DynamoDB guarantees.
python3 scripts/moto_atomic.py 127.0.0.1 "$moto_port" >"$work/moto.log" 2>&1 &
pids+=($!)
s3s_port=$(free_port)
mkdir -p "$work/s3s"
s3s-fs --host 127.0.0.1 --port "$s3s_port" --access-key test --secret-key test "$work/s3s" >"$work/s3s.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$moto_port/moto-api/" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -sf "http://127.0.0.1:$moto_port/moto-api/" >/dev/null || { cat "$work/moto.log"; echo "moto did not start" >&2; exit 1; }
export UPDRAFT_TEST_MOTO="http://127.0.0.1:$moto_port"
export UPDRAFT_TEST_S3S="http://127.0.0.1:$s3s_port"
export UPDRAFT_TEST_CAPGO="$repo/tests/fixtures/capgo-app"
# tests/dashboard.rs starts chromedriver itself, on a free port (scripts/setup.sh installs it).
export UPDRAFT_TEST_CHROMEDRIVER UPDRAFT_TEST_CHROMIUM

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --all-targets --locked "$@"

# The SAM deployment: lint template.yaml, cross-build the arm64 Lambda with `sam build` (a cold
# build takes 5-10 min on 2 cores) and check the bootstrap. UPDRAFT_SKIP_SAM_CHECK=1 skips it.
if [ "${UPDRAFT_SKIP_SAM_CHECK:-0}" != 1 ]; then
  bash scripts/sam-check.sh
fi
