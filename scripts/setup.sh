#!/usr/bin/env bash
# Installs everything the test suite needs, once, into a tools folder that later runs (and other
# clones on this machine) reuse: a Python venv with moto's server, s3s-fs (an S3 that verifies
# presigned signatures), and the Capgo CLI for the fixture app. Source it to get the PATH.
#   UPDRAFT_TOOLS  where tools go (default ~/.cache/updraft-tools)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tools=${UPDRAFT_TOOLS:-$HOME/.cache/updraft-tools}
mkdir -p "$tools/bin"
say() { printf '[setup] %s\n' "$*" >&2; }

# Python tools: moto (DynamoDB + S3 emulator).
venv=$tools/venv
if [ ! -x "$venv/bin/moto_server" ]; then
  say "creating $venv with moto[server]"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check --upgrade pip
  "$venv/bin/pip" install --quiet --disable-pip-version-check "moto[server]>=5.1,<6"
fi

# s3s-fs: the only emulator here that checks SigV4 presigned URLs and their expiry.
if [ ! -x "$tools/bin/s3s-fs" ]; then
  say "building s3s-fs 0.14.1 (about 3 minutes, once)"
  cargo install s3s-fs --version 0.14.1 --locked --features binary --root "$tools" --quiet
fi

# The real Capgo CLI, for the fixture app the tests zip with it.
fixture=$repo/tests/fixtures/capgo-app
if [ ! -x "$fixture/node_modules/.bin/capgo" ]; then
  say "installing the Capgo CLI into tests/fixtures/capgo-app"
  (cd "$fixture" && npm ci --no-audit --no-fund --loglevel=error)
fi

export PATH="$tools/bin:$venv/bin:$PATH"
export UPDRAFT_TOOLS=$tools
