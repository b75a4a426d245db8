#!/usr/bin/env bash
# Checks the SAM deployment without an AWS account: the Lambda's dependencies hold no legacy
# HTTPS client, lints template.yaml (`sam validate --lint`, offline, no credentials),
# cross-builds the Lambda with `sam build` (cargo-lambda + zig, arm64), and checks that the
# bootstrap it produced is an aarch64 ELF executable and the built template keeps its bounds. The first build is a
# cold arm64 release build: 5-10 minutes on 2 cores; later ones reuse target/.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
note() { printf '[sam-check] %s\n' "$*" >&2; }
fail() { note "FAIL: $*"; exit 1; }

# `sam build` runs `cargo lambda`, which must be on PATH (the tools venv's bin dir).
if ! command -v sam >/dev/null 2>&1 || ! command -v cargo-lambda >/dev/null 2>&1; then
  # shellcheck source=scripts/setup.sh
  source scripts/setup.sh
fi
# Validation needs a region but no credentials; nothing here talks to AWS.
export AWS_DEFAULT_REGION=us-east-1 SAM_CLI_TELEMETRY=0 AWS_EC2_METADATA_DISABLED=true

# The function's logical id in template.yaml: `sam build` writes .aws-sam/build/<id>/bootstrap.
function_id=UpdraftFunction

# The Lambda's dependency graph (the arm64 target, normal dependencies) must not hold the AWS
# SDK's legacy HTTPS client: Cargo.toml builds the aws-* crates with default-features = false.
note "no legacy HTTPS client in the Lambda build (hyper 0.14, rustls 0.21, hyper-rustls 0.24)"
for spec in hyper@0.14 rustls@0.21 hyper-rustls@0.24; do
  if cargo tree --locked --target aarch64-unknown-linux-gnu -e normal -i "$spec" >/dev/null 2>&1; then
    fail "the Lambda build depends on $spec (cargo tree --target aarch64-unknown-linux-gnu -i $spec)"
  fi
done

note "sam validate --lint"
sam validate --lint --template-file template.yaml

note "sam build (cargo lambda build --release, arm64)"
started=$(date +%s)
sam build --template-file template.yaml
build_secs=$(($(date +%s) - started))

# The template sam build wrote keeps the bounds of the public surface.
built=.aws-sam/build/template.yaml
[ -f "$built" ] || fail "$built was not written"
grep -q 'ReservedConcurrentExecutions' "$built" || fail "$built lost ReservedConcurrentExecutions"
grep -q 'context.identity.sourceIp' "$built" || fail "$built lost the access log format with sourceIp"

bootstrap=.aws-sam/build/$function_id/bootstrap
[ -f "$bootstrap" ] || fail "$bootstrap was not built"
# ELF header: magic 7f 45 4c 46, class 2 (64-bit), data 1 (little endian), e_type 2 or 3
# (executable, or position-independent executable), e_machine 183 (EM_AARCH64).
read -r -a ident <<<"$(od -An -v -tu1 -N20 "$bootstrap" | tr '\n' ' ')"
[ "${#ident[@]}" -eq 20 ] || fail "$bootstrap is shorter than an ELF header"
[ "${ident[0]} ${ident[1]} ${ident[2]} ${ident[3]}" = "127 69 76 70" ] || fail "$bootstrap is not an ELF file"
[ "${ident[4]}" = 2 ] || fail "$bootstrap is not a 64-bit ELF (class ${ident[4]})"
[ "${ident[5]}" = 1 ] || fail "$bootstrap is not little-endian (data ${ident[5]})"
e_type=$((ident[16] + 256 * ident[17]))
[ "$e_type" = 2 ] || [ "$e_type" = 3 ] || fail "$bootstrap is not an executable (e_type $e_type)"
e_machine=$((ident[18] + 256 * ident[19]))
[ "$e_machine" = 183 ] || fail "$bootstrap is not aarch64 (e_machine $e_machine; 62 is x86-64)"
[ -x "$bootstrap" ] || fail "$bootstrap is not executable"

size=$(stat -c %s "$bootstrap")
if command -v file >/dev/null 2>&1; then
  note "$(file -b "$bootstrap")"
fi
note "OK: $bootstrap is an aarch64 ELF executable, $size bytes ($((size / 1024)) KiB); sam build took ${build_secs} s"
