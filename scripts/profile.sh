#!/usr/bin/env bash
# make profile: a CPU profile of the Worker under beacon load (bench/profile.mjs). Builds the
# shim, the Worker (build/worker unchanged, plus build/worker-names with the wasm name section
# so the profile shows Rust function names) and the sandbox CLI, then runs the profile.
# Not a test. Options: PROFILE_BEACONS, PROFILE_CONCURRENCY, PROFILE_INTERVAL_US (see the script).
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
bash scripts/build-shim.sh
CAPI_WORKER_NAMES_DIR=build/worker-names bash scripts/build-worker.sh
cargo build -q --profile native -p capi-edge
mkdir -p build/profile
# Its own process group, bounded in time (PROFILE_DEADLINE_SECONDS); killed as a group on exit.
setsid node bench/profile.mjs >build/profile/report.txt 2>&1 &
pid=$!
trap 'kill -- -$pid 2>/dev/null || true' EXIT INT TERM
tail -n +1 -f --pid=$pid build/profile/report.txt
wait $pid
