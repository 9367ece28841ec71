#!/usr/bin/env bash
# Runs all of Runway's checks and tests, installing what is missing first:
#   format, clippy (warnings are errors), every Rust test (unit and
#   integration tests against the real local control plane), then prints
#   one summary line "N passed, N failed".
# Usage: bash sandbox/scripts/test.sh [extra args for cargo test]
set -euo pipefail
cd "$(dirname "$0")/../.."

bash sandbox/scripts/install-deps.sh

echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings

echo "== cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --no-fail-fast "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e

# Sum the harness's "test result:" lines into one summary line.
read -r passed failed < <(awk '/^test result:/ {
    for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i }
  } END { print p + 0, f + 0 }' "$log")
if (( rc != 0 && failed == 0 )); then
  failed=1   # a build error or a crashed test binary is a failure too
fi
echo
echo "${passed} passed, ${failed} failed"
exit "$rc"
