#!/usr/bin/env bash
# Runs Runway's main job locally: installs what is missing, builds the
# workspace, and runs `runway-sandbox demo` against a real control plane.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash sandbox/scripts/install-deps.sh
cargo build --quiet -p runway-sandbox -p runway-controller
exec "${CARGO_TARGET_DIR:-target}/debug/runway-sandbox" demo "$@"
