#!/usr/bin/env bash
# make dev: the Conversions API sandbox + the Worker in the real workerd (wrangler dev) with the
# demo storefront, on 127.0.0.1. Ctrl-C stops everything (whole process groups).
#
# `make dev` has built already, so wrangler is told not to build again (CAPI_PREBUILT, read by
# [build] in wrangler.toml); it reloads the Worker whenever build/worker changes. This script
# watches the sources and reruns the build scripts on every save (their unchanged steps are
# skipped; wasm-opt is left out, CAPI_BUILD_FAST), so an edit reaches the running Worker in the
# time cargo needs.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
WORKER_PORT=${WORKER_PORT:-8787}
SANDBOX_PORT=${SANDBOX_PORT:-8790}
PIXEL_ID=${PIXEL_ID:-1234567890}
SANDBOX="http://127.0.0.1:$SANDBOX_PORT"

pids=()
cleanup() { for p in "${pids[@]}"; do kill -- "-$p" 2>/dev/null || true; done; }
trap cleanup EXIT INT TERM

setsid target/native/capi-edge sandbox --listen "127.0.0.1:$SANDBOX_PORT" &
pids+=($!)
CAPI_PREBUILT=1 setsid wrangler dev --ip 127.0.0.1 --port "$WORKER_PORT" --log-level warn \
  --var "PIXEL_ID:$PIXEL_ID" --var "META_ACCESS_TOKEN:dev-token" --var "META_GRAPH_URL:$SANDBOX" \
  --var "DEMO_STOREFRONT:on" --var "CUSTOMER_DATA:hashed" &
pids+=($!)

# Polls the sources once a second (no watcher to install); a save during a build is caught by
# the next round, since the marker is touched before building.
watch_and_rebuild() {
  local marker="$ROOT/build/.stamps/dev-sources"
  mkdir -p "$(dirname "$marker")" && touch "$marker"
  while sleep 1; do
    [ -n "$(find Cargo.toml Cargo.lock rules core worker pixel-shim \( -path core/fuzz -o -path pixel-shim/pkg \) -prune \
      -o -type f -newer "$marker" -print -quit 2>/dev/null)" ] || continue
    touch "$marker"
    echo "[dev] sources changed: rebuilding the shim and the Worker"
    if bash scripts/build-shim.sh && CAPI_BUILD_FAST=1 bash scripts/build-worker.sh; then
      echo "[dev] rebuilt: wrangler reloads the Worker"
    else
      echo "[dev] build failed: fix it and save again (the running Worker is the last good build)"
    fi
  done
}
setsid bash -c "$(declare -f watch_and_rebuild); cd '$ROOT'; watch_and_rebuild" &
pids+=($!)

for _ in $(seq 1 120); do
  curl -fsS "http://127.0.0.1:$WORKER_PORT/t/health" >/dev/null 2>&1 && break
  sleep 1
done
cat <<MSG

  capi-edge is running (real workerd via wrangler dev):
    demo storefront   http://127.0.0.1:$WORKER_PORT/
    sandbox (Meta)    $SANDBOX/          ← browser + server copies pair up here
    event inspector   $SANDBOX/_sandbox/ ← each copy as received, why one stayed alone
    health            http://127.0.0.1:$WORKER_PORT/t/health

  Data controls are ON for this demo (CUSTOMER_DATA=hashed): the sandbox shows the hashed
  email/phone Meta would get. A deployment's default is off (no contact information sent).

  Click "Add to cart" on the storefront and watch the sandbox. Ctrl-C to stop.

MSG
wait
