#!/usr/bin/env bash
# make bench: the Worker (workerd via Miniflare, queue + ledger on), a DIY relay (Node http +
# Meta's Node SDK, one Graph POST per beacon, and the same batched every 50 ms) and the runtime's
# floor (a JS Worker answering 204, in its own workerd) under the same wrk load against the same
# Graph stand-in, then `capi-edge hash` against the SDK's normalizeAndHash on the same rows.
# Prints one side-by-side table with ratios (bench/run.mjs). Not a test.
#   BENCH_RUNS=3 (medians of 3), BENCH_SECONDS=15 (per wrk run), BENCH_CONCURRENCY=8,64
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
if ! command -v wrk >/dev/null; then
  [ "$(id -u)" = 0 ] || { echo "wrk is missing: apt-get install wrk"; exit 1; }
  (apt-get install -y -qq wrk || (apt-get update -qq && apt-get install -y -qq wrk)) >/dev/null
fi
# Bench-only npm dependencies (Meta's SDK), pinned by bench/package-lock.json; kept out of the
# root package.json so `make test` never installs them. Reinstalled only when the lock changes.
if ! cmp -s bench/package-lock.json bench/node_modules/.installed-from-lock 2>/dev/null; then
  echo "[bench] npm ci in bench/ (facebook-nodejs-business-sdk)"
  (cd bench && npm ci --no-audit --no-fund --loglevel=error)
  cp bench/package-lock.json bench/node_modules/.installed-from-lock
fi
cargo build -q --profile native -p capi-edge
[ -f build/worker/index.js ] || { echo "build/worker is missing: make build"; exit 1; }
mkdir -p build/bench
exec node bench/run.mjs
