#!/usr/bin/env bash
# Installs everything the test suite needs, once, into a tools folder that later runs (and other
# clones on this machine) reuse: a Python venv with moto's server and the SAM toolchain (SAM CLI,
# cargo-lambda, zig), the arm64 rust target, s3s-fs (an S3 that verifies presigned signatures),
# and the Capgo CLI for the fixture app. Source it to get the PATH.
#   UPDRAFT_TOOLS  where tools go (default ~/.cache/updraft-tools)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tools=${UPDRAFT_TOOLS:-$HOME/.cache/updraft-tools}
mkdir -p "$tools/bin"
say() { printf '[setup] %s\n' "$*" >&2; }

# Python tools, one venv: moto (DynamoDB + S3 emulator), and for scripts/sam-check.sh the SAM CLI,
# cargo-lambda (what `sam build` runs for BuildMethod rust-cargolambda) and ziglang (the linker
# cargo-lambda uses to cross-build the arm64 bootstrap). What is already there is reused; when
# something is missing, every pin goes to one pip run so the resolver sees them all.
venv=$tools/venv
if [ ! -x "$venv/bin/python3" ]; then
  say "creating $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check --upgrade pip
fi
pins=("moto[server]>=5.1,<6" "cargo-lambda>=1.9,<2" "ziglang>=0.17,<0.18" "aws-sam-cli>=1.170,<2")
if [ ! -x "$venv/bin/moto_server" ] || [ ! -x "$venv/bin/cargo-lambda" ] || [ ! -x "$venv/bin/sam" ] ||
  ! "$venv/bin/python3" -c 'import ziglang' 2>/dev/null; then
  say "installing into $venv: ${pins[*]} (aws-sam-cli takes about 90 s, once)"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "${pins[@]}"
fi

# The arm64 target `sam build` cross-compiles the Lambda for. cargo-lambda would add it by itself,
# but here a toolchain that cannot be fetched fails early and says so.
installed_targets=$(rustup target list --installed)
if ! grep -qx aarch64-unknown-linux-gnu <<<"$installed_targets"; then
  say "adding the rust target aarch64-unknown-linux-gnu"
  rustup target add aarch64-unknown-linux-gnu
fi

# s3s-fs: the only emulator here that checks SigV4 presigned URLs and their expiry.
if [ ! -x "$tools/bin/s3s-fs" ]; then
  say "building s3s-fs 0.14.1 (about 3 minutes, once)"
  cargo install s3s-fs --version 0.14.1 --locked --features binary --root "$tools" --quiet
fi

# Headless Chromium and its WebDriver, for the dashboard's browser tests (tests/dashboard.rs).
if ! command -v chromedriver >/dev/null 2>&1 || ! command -v chromium >/dev/null 2>&1; then
  say "installing chromium and chromium-driver (Debian packages)"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium chromium-driver >/dev/null
fi

# The real Capgo CLI, for the fixture app the tests zip with it.
fixture=$repo/tests/fixtures/capgo-app
if [ ! -x "$fixture/node_modules/.bin/capgo" ]; then
  say "installing the Capgo CLI into tests/fixtures/capgo-app"
  # `npm install`, guided by the committed lock file: `npm ci` refuses this lock because npm 11
  # leaves the CLI's optional helpers for other platforms out of it.
  (cd "$fixture" && npm install --no-audit --no-fund --loglevel=error)
fi

export PATH="$tools/bin:$venv/bin:$PATH"
export UPDRAFT_TOOLS=$tools
UPDRAFT_TEST_CHROMEDRIVER=$(command -v chromedriver)
UPDRAFT_TEST_CHROMIUM=$(command -v chromium)
export UPDRAFT_TEST_CHROMEDRIVER UPDRAFT_TEST_CHROMIUM
