#!/usr/bin/env bash
# Runs Runway's main job locally: installs what is missing, builds the
# workspace, and runs `runway-sandbox demo` against a real control plane and
# a real node (runner pods run as containers; `--player` leaves the node out).
set -euo pipefail
cd "$(dirname "$0")/../.."
bash sandbox/scripts/install-deps.sh
cargo build --quiet -p runway-sandbox -p runway-controller -p runway-agent
exec "${CARGO_TARGET_DIR:-target}/debug/runway-sandbox" demo "$@"
